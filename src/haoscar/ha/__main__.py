"""``python -m haoscar.ha run --node NAME --spec FILE [--state-dir DIR] [--key-file FILE]``: the daemon's lean
entry point.

``haoscar ha run`` checks its options with the full CLI (Typer, Rich, every command's help) and then replaces
itself with this entry point (``exec``, same pid), so that the long-running daemon does not carry the CLI's
memory: about 10 MB of an 80 MB budget (docs/benchmarks.md). Only what the daemon uses at run time is imported.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path


def argv_for(node: str, spec: Path, state_dir: Path, key_file: Path | None) -> list[str]:
    """The command line that runs the daemon through this entry point."""
    argv = [sys.executable, "-m", "haoscar.ha", "run", "--node", node, "--spec", str(spec), "--state-dir"]
    argv.append(str(state_dir))
    if key_file is not None:
        argv += ["--key-file", str(key_file)]
    return argv


def exec_daemon(node: str, spec: Path, state_dir: Path, key_file: Path | None) -> None:
    """Replace this process with the lean daemon (same pid: supervisors and labs keep tracking it)."""
    sys.stdout.flush()
    sys.stderr.flush()
    argv = argv_for(node, spec.absolute(), state_dir.absolute(), key_file.absolute() if key_file else None)
    os.execv(argv[0], argv)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m haoscar.ha", description="Run one head's HA daemon.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the HA daemon of one head in the foreground")
    run.add_argument("--node", required=True, help="this head: its host name, or primary / standby")
    run.add_argument("--spec", required=True, type=Path, help="the cluster spec")
    run.add_argument("--state-dir", type=Path, default=Path(os.environ.get("HAOSCAR_STATE_DIR", "/var/lib/haoscar")))
    run.add_argument("--key-file", type=Path, default=None, help="overrides ha.key_file")
    args = parser.parse_args(argv)

    from haoscar.errors import UserError
    from haoscar.ha.runner import run_head
    from haoscar.spec.loader import load_spec

    try:
        spec = load_spec(args.spec)
        asyncio.run(run_head(spec, args.node, args.state_dir, args.key_file))
    except UserError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        for line in exc.details:
            print(line, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
