"""``python -m haoscar.ha.services.netboot_render STATE_DIR INTERFACE``: the HA ``dnsmasq`` resource's render step.

A full ``netboot sync`` (dnsmasq.conf, hosts.d, iPXE scripts, TFTP files) from the database under ``STATE_DIR`` for
the head's private ``INTERFACE``, without signalling anything: the resource starts dnsmasq right after. It runs as a
process of its own so that the HA daemon never imports SQLAlchemy (docs/ha.md). Exit 2 with one line on stderr when
there is nothing to render from.
"""

from __future__ import annotations

import sys
from pathlib import Path

from haoscar.errors import UserError


def render(state_dir: Path, interface: str) -> str:
    from haoscar.db.session import open_database
    from haoscar.provision.netboot_sync import netboot_sync

    if not (state_dir / "haoscar.db").exists():
        raise UserError(
            f"no cluster database in {state_dir}; apply the cluster spec on the active head (haoscar spec apply FILE)"
        )
    # Read only: on a standby taking over this is the replicated database; nothing here may write it.
    db = open_database(state_dir, upgrade=False)
    try:
        report = netboot_sync(db, state_dir, interface=interface, reload=False)
    finally:
        db.close()
    return f"{report.nodes} nodes, {report.written} files written, {report.removed} removed"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m haoscar.ha.services.netboot_render STATE_DIR INTERFACE", file=sys.stderr)
        return 2
    try:
        print(render(Path(argv[0]), argv[1]))
    except UserError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except Exception as exc:  # a database that cannot be read: one line, the resource reports it
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
