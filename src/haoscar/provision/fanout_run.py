"""The ClusterShell run of ``provision.fanout``, in a small process of its own: ``python -m
haoscar.provision.fanout_run`` reads one JSON request on stdin and writes every node's outcome as JSON on stdout.

Why a process: ClusterShell starts each ssh with ``os.fork()``, and forking the haoscar process (SQLAlchemy,
pydantic, Typer loaded: ~100 MB) took 20-45 ms a node here against well under 1 ms for this one, which imports
only ClusterShell: for 200 nodes, seconds of the run. Nothing of haoscar is imported here, so it stays small.

Request: ``{"op": "shell"|"copy"|"local", "nodes": [...], "command": str, "source": str, "dest": str, "preserve": bool,
"fanout": int, "connect_timeout": float, "command_timeout": float, "ssh_options": str}``.
Answer: ``{NODE: {"stdout": [lines], "stderr": [lines], "rc": int|null, "timed_out": bool}}``. ``local`` runs
``command`` here once per node, ``%h`` replaced by the node's name (ClusterShell's exec worker, ``clush -R exec``).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from ClusterShell.Event import EventHandler
from ClusterShell.NodeSet import RESOLVER_NOGROUP, NodeSet
from ClusterShell.Task import task_self


class _Collector(EventHandler):  # type: ignore[misc]  # ClusterShell has no type hints
    def __init__(self, nodes: list[str]) -> None:
        super().__init__()
        self.outcomes: dict[str, dict[str, Any]] = {
            node: {"stdout": [], "stderr": [], "rc": None, "timed_out": False} for node in nodes
        }

    def ev_read(self, worker: Any, node: str, sname: str, msg: bytes) -> None:
        self.outcomes[node]["stderr" if sname == "stderr" else "stdout"].append(msg.decode("utf-8", errors="replace"))

    def ev_hup(self, worker: Any, node: str, rc: int) -> None:
        self.outcomes[node]["rc"] = rc


def run(request: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One ClusterShell task: the command (or the copy) on every node of the request."""
    task = task_self()
    task.set_info("fanout", int(request["fanout"]))
    # ClusterShell passes it to ssh as whole seconds (-oConnectTimeout=%d): round up, never down to "none".
    task.set_info("connect_timeout", max(1, math.ceil(float(request["connect_timeout"]))))
    task.set_info("ssh_options", request["ssh_options"])
    task.set_info("scp_options", request["ssh_options"])
    # Outputs are collected per node by the handler; the task's own message trees would only cost memory.
    task.set_default("stdout_msgtree", False)
    task.set_default("stderr_msgtree", False)
    nodes = list(request["nodes"])
    collector = _Collector(nodes)
    common = {
        "nodes": NodeSet.fromlist(nodes, resolver=RESOLVER_NOGROUP),
        "handler": collector,
        "timeout": float(request["command_timeout"]) or None,
        "stderr": True,
        "tree": False,
    }
    if request["op"] == "copy":
        worker = task.copy(request["source"], request["dest"], preserve=bool(request["preserve"]), **common)
    else:
        remote = request["op"] != "local"
        worker = task.shell(request["command"], stdin=False, remote=remote, **common)
    task.run()
    for node in worker.iter_keys_timeout():
        collector.outcomes[str(node)]["timed_out"] = True
    return collector.outcomes


def main() -> None:
    json.dump(run(json.load(sys.stdin)), sys.stdout)


if __name__ == "__main__":
    main()
