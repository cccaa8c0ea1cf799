"""The wizard's steps that are more than one existing command: each composes the commands the CLI runs for the
same thing, in the same order, with the same checks (so the messages are the CLI's).

- ``select_packages``: the packages chosen for the client image (OSCAR's Select / Configure packages), checked as
  ``pkg install`` checks them; applied at once to an image that exists (``pkg install --image-only``), else kept
  for the image build.
- ``apply_spec`` / ``define_clients``: ``spec apply`` / ``node add`` and the cluster sync the CLI runs after them.
- ``complete_installation``: ``haoscar install complete``.
- ``setup_test``: ``haoscar cluster sync`` then ``haoscar cluster test``; the outcome is kept for the wizard.
- drafts: a step's typed values kept server-side when its submission failed (a crash loses nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from haoscar.commands.apply import ApplyReport, ApplySpec, spec_apply
from haoscar.commands.cluster_sync import SyncReport, SyncRequest, cluster_sync, resync_after_node_change
from haoscar.commands.cluster_test import ClusterTestReport, ClusterTestRequest, cluster_test
from haoscar.commands.cluster_test import request_problems as test_problems
from haoscar.commands.env import Env
from haoscar.commands.exec import resolve_targets
from haoscar.commands.install_complete import CompleteResult
from haoscar.commands.macs import Assigned, AssignMac, assign
from haoscar.commands.nodes import DefineClients, DefineResult, node_add
from haoscar.commands.packages import PackagesReport, PackagesRequest, pkg_install
from haoscar.commands.wizard_facts import PACKAGES_KEY, TEST_KEY
from haoscar.db.models import Setting
from haoscar.errors import FieldError, UserError
from haoscar.provision.image_packages import check_packages
from haoscar.provision.netboot_macs import checked_mac

__all__ = [
    "CompleteInstallation",
    "Draft",
    "PackagesSelected",
    "SelectPackages",
    "SetupTest",
    "SetupTestOutcome",
    "apply_spec",
    "assign_mac",
    "clear_draft",
    "complete_installation",
    "define_clients",
    "draft",
    "save_draft",
    "select_packages",
    "setup_test",
]

DRAFT_PREFIX = "wizard.draft."


def _put(env: Env, key: str, value: object) -> None:
    with env.database.session() as session:
        row = session.get(Setting, key)
        if row is None:
            session.add(Setting(key=key, value=value))
        else:
            row.value = value


# ------------------------------------------------------------------------------------------------- packages


@dataclass(frozen=True)
class SelectPackages:
    packages: list[str]
    image: str | None = None  # an existing image to install them into now (None: keep them for the build)


@dataclass(frozen=True)
class PackagesSelected:
    packages: list[str]
    applied: PackagesReport | None = None


def select_packages(env: Env, request: SelectPackages) -> PackagesSelected:
    """Check the names (as ``pkg install`` does), install them into ``image`` if given, and remember them."""
    packages = check_packages("packages", request.packages)
    applied = None
    if request.image is not None:
        applied = pkg_install(env, PackagesRequest(packages, image=request.image, image_only=True))
    _put(env, PACKAGES_KEY, packages)
    return PackagesSelected(packages, applied)


# ------------------------------------------------------------------------------------------- Assign MAC


def assign_mac(env: Env, request: AssignMac) -> Assigned:
    """``haoscar mac assign NODE MAC``; a MAC that is none is refused next to its field first, by the checker the
    assignment itself uses (``checked_mac``: the same words the CLI prints after ``mac assign:``)."""
    checked_mac(request.mac, "mac")
    return assign(env, request)


# --------------------------------------------------------------------------------- changes that resync nodes


def apply_spec(env: Env, request: ApplySpec) -> ApplyReport:
    """``haoscar spec apply FILE``: then, when nodes changed, the cluster sync the CLI runs (never failing)."""
    report = spec_apply(env, request)
    if report.added or report.changed or report.removed:
        _resync(env)
    return report


def define_clients(env: Env, request: DefineClients) -> DefineResult:
    """``haoscar node add``: then the cluster sync the CLI runs after a node change."""
    result = node_add(env, request)
    _resync(env)
    return result


def _resync(env: Env) -> None:
    try:
        report = resync_after_node_change(env)
    except Exception as exc:  # as the CLI: the nodes changed all the same; the sync is a warning
        env.progress(f"cluster sync after the node change failed ({exc}); run `haoscar cluster sync`")
        return
    if report is not None and report.failed:
        env.progress(f"cluster sync after the node change: {', '.join(report.failed)} not reached")


# ------------------------------------------------------------------------------------- Complete Installation


@dataclass(frozen=True)
class CompleteInstallation:
    """``haoscar install complete`` with its options and defaults."""

    spec: Path
    ssh_user: str = "root"
    ssh_port: int = 22
    start_command: str = ""
    wait: float = 60.0


def complete_installation(env: Env, request: CompleteInstallation) -> CompleteResult:
    """HA-OSCAR's Complete Installation, as ``haoscar install complete`` runs it (the standby marked up when ready)."""
    from haoscar.commands.install_complete import SYSTEMD_START, http_status, ssh_transports
    from haoscar.commands.install_complete import complete_installation as complete
    from haoscar.commands.standby_clone import mark_up
    from haoscar.spec import load_spec

    # The CLI's option ranges (typer's min/max), in its words.
    if not 1 <= request.ssh_port <= 65535:
        raise FieldError("ssh_port", f"{request.ssh_port} is not in the range 1<=x<=65535.", sep=": ")
    if request.wait < 1:
        raise FieldError("wait", f"{request.wait:g} is not in the range x>=1.", sep=": ")
    try:
        cluster = load_spec(request.spec)
        text = request.spec.read_bytes()
    except FieldError:
        raise
    except UserError as exc:  # the file is what is wrong: its problems go next to it (words unchanged)
        raise FieldError("spec", str(exc), sep=None) from exc
    except OSError as exc:
        raise FieldError("spec", f"cannot read {request.spec}: {exc.strerror}", sep=": ") from exc
    doors = ssh_transports(cluster, env.state_dir, request.ssh_user, request.ssh_port)
    result = complete(
        cluster,
        text,
        doors,
        status=http_status(cluster.ha.status_port),
        start_command=request.start_command or SYSTEMD_START,
        wait_s=request.wait,
        progress=env.progress,
    )
    if result.ready:
        mark_up(env.state_dir, cluster.heads.standby.hostname)
    return result


# ---------------------------------------------------------------------------------- Test Cluster Setup


@dataclass(frozen=True)
class SetupTest:
    """``cluster sync NODES`` then ``cluster test NODES``; the test's options as ``ClusterTestRequest``."""

    test: ClusterTestRequest = field(default_factory=ClusterTestRequest)
    sync_nodes: str | None = None  # None: both heads and every node


@dataclass(frozen=True)
class SetupTestOutcome:
    sync: SyncReport
    test: ClusterTestReport

    @property
    def ok(self) -> bool:
        return not self.sync.failed and self.test.ok


def setup_test(env: Env, request: SetupTest) -> SetupTestOutcome:
    """Complete Cluster Setup (cluster sync) and Test Cluster Setup (cluster test); the outcome is remembered."""
    # Bad test input is refused before the sync changes anything on the hosts (the test's own checks, its words).
    problems = test_problems(request.test)
    if len(problems) == 1:
        raise FieldError(problems[0].field, problems[0].detail, sep=problems[0].sep)
    if problems:
        raise FieldError.several(problems, f"{len(problems)} problems; nothing was run")
    resolve_targets(env, request.test.nodes)
    try:
        sync = cluster_sync(env, SyncRequest(nodes=request.sync_nodes))
    except FieldError as exc:  # its node set is this request's sync_nodes
        raise FieldError("sync_nodes", exc.problems[0].detail, sep=exc.problems[0].sep) from exc
    except UserError as exc:
        raise FieldError("sync_nodes", str(exc), sep=None) from exc
    report = cluster_test(env, request.test)
    outcome = SetupTestOutcome(sync, report)
    _put(env, TEST_KEY, {"ok": outcome.ok, "failed": len(report.failed), "sync_failed": sync.failed})
    return outcome


# ---------------------------------------------------------------------------------------------------- drafts


def _draft_key(step: str) -> str:
    return DRAFT_PREFIX + step


def save_draft(env: Env, step: str, form: str, values: dict[str, str], problems: dict[str, list[str]]) -> None:
    """Keep what was typed into a step's form (``form``: which of its forms) after a failed submission, with the
    problems shown next to the fields, so that a reload or another browser shows them again."""
    _put(env, _draft_key(step), {"form": form, "values": dict(values), "problems": problems})


@dataclass(frozen=True)
class Draft:
    form: str
    values: dict[str, str]
    problems: dict[str, list[str]]


def draft(env: Env, step: str) -> Draft | None:
    """The step's draft, or None."""
    with env.database.session(readonly=True) as session:
        row = session.get(Setting, _draft_key(step))
        if row is None or not isinstance(row.value, dict):
            return None
        values = row.value.get("values") or {}
        problems = row.value.get("problems") or {}
        return Draft(
            str(row.value.get("form", "")),
            {str(k): str(v) for k, v in values.items()},
            {str(k): [str(line) for line in v] for k, v in problems.items()},
        )


def clear_draft(env: Env, step: str) -> None:
    """Forget the step's draft (its submission succeeded)."""
    with env.database.session() as session:
        row = session.get(Setting, _draft_key(step))
        if row is not None:
            session.delete(row)
