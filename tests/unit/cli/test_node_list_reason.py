"""`haoscar node list` shows why an installation failed: `failed: STAGE: REASON`."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from haoscar.cli.main import run
from haoscar.commands.apply import apply_spec
from haoscar.db.session import open_database
from haoscar.provision.install_progress import record_failed
from haoscar.provision.netboot_macs import assign_macs
from haoscar.spec import check_text

MAC = "52:54:00:5e:00:07"


def test_failed_node_shows_stage_and_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from haoscar.cli.render import console

    monkeypatch.setattr(console, "width", 250)  # a wide terminal: the reason is not cut short
    spec, problems = check_text((resources.files("haoscar") / "data" / "lab.yaml").read_text(), "lab.yaml")
    assert spec is not None, problems
    db = open_database(tmp_path)
    try:
        apply_spec(db, spec)
        assign_macs(db, [("node01", MAC, "test")])
        record_failed(db, tmp_path, MAC, "disk", "disk too small: /dev/vda has 16 MiB, image oscarimage needs 84 MiB")
    finally:
        db.close()
    for argv, check in (
        (["node", "list", "node[01-02]", "--json"], "json"),
        (["node", "list", "node[01-02]"], "table"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            run(["--state-dir", str(tmp_path), *argv])
        assert exit_info.value.code in (0, None)
        out = capsys.readouterr().out
        if check == "json":
            rows = {row["name"]: row for row in json.loads(out)}
            assert rows["node01"]["install_state"] == "failed"
            assert rows["node01"]["install_detail"].startswith("disk: disk too small: /dev/vda has 16 MiB")
            assert rows["node02"]["install_detail"] == ""
        else:
            assert "failed: disk: disk too small" in " ".join(out.split())
