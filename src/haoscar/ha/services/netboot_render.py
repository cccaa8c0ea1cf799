"""``python -m haoscar.ha.services.netboot_render STATE_DIR INTERFACE``: the HA ``dnsmasq`` resource's render step.

A full ``netboot sync`` (dnsmasq.conf, hosts.d, iPXE scripts, TFTP files) from the database under ``STATE_DIR`` for
the head's private ``INTERFACE``, without signalling anything: the resource starts dnsmasq right after. It runs as a
process of its own so that the HA daemon never imports SQLAlchemy (docs/ha.md). Exit 2 with one line on stderr when
there is nothing to render from.

``--warm STATE_DIR``: started ahead of need on every head (``DnsmasqService``), it imports what rendering needs and
then renders once per line read on stdin (the interface), answering one JSON line; it ends at EOF (the daemon died
or stopped). A takeover then pays for the render itself (tens of ms), not for starting Python and SQLAlchemy
(~0.7 s measured in the lab).
"""

from __future__ import annotations

import json
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


def serve_warm(state_dir: Path) -> int:
    # imported now, not at the takeover
    import haoscar.db.session
    import haoscar.provision.netboot_sync  # noqa: F401

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        try:
            answer = {"ok": True, "message": render(state_dir, line.strip())}
        except UserError as exc:
            answer = {"ok": False, "error": exc.message}
        except Exception as exc:  # reported by the resource; the next render may work (a database mid-copy)
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--warm":
        return serve_warm(Path(argv[1]))
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
