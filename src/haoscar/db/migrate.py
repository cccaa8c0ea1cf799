"""Running Alembic from inside the package: no alembic.ini, the scripts are found through importlib.resources."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine


def alembic_config(engine: Engine | None = None) -> Config:
    """An Alembic config pointing at ``haoscar/db/migrations``; with an engine, env.py migrates through it."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("haoscar.db") / "migrations"))
    if engine is not None:
        config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
        config.attributes["engine"] = engine
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None
    head: str | None

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def schema_status(engine: Engine) -> SchemaStatus:
    return SchemaStatus(current=current_revision(engine), head=head_revision())


def upgrade_to_head(engine: Engine) -> str | None:
    """Run every pending migration; a database already at head costs one query and no writes."""
    head = head_revision()
    if current_revision(engine) != head:
        command.upgrade(alembic_config(engine), "head")
    return head
