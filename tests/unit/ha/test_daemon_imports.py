"""The long-running daemon imports only what it uses: no SQLAlchemy, no CLI (Typer, Rich), no pyroute2; its memory
budget is 80 MB (docs/benchmarks.md), and these cost about 35 MB."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
import haoscar.ha.__main__, haoscar.ha.runner
heavy = sorted({m.split('.')[0] for m in sys.modules} & {"sqlalchemy", "typer", "rich", "click", "alembic",
                                                          "pyroute2", "smtplib", "http"})
print(json.dumps(heavy))
"""


def test_the_daemon_entry_point_loads_no_database_layer_no_cli_no_pyroute2_and_no_mail_client() -> None:
    # pyroute2 (~160 modules) and smtplib / urllib.request (alerts, loaded when one is sent) cost ~10 MB idle.
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout) == []


def test_a_wrong_spec_path_is_a_user_error_from_the_lean_entry_point() -> None:
    argv = [sys.executable, "-m", "haoscar.ha", "run", "--node", "head1", "--spec", "/nonexistent/cluster.yaml"]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "cluster.yaml" in done.stderr and "Traceback" not in done.stderr
