"""``haoscar bench exec``: the CLI side of ``haoscar.scenarios.bench.exec`` (parse, call, render)."""

from __future__ import annotations

from typing import Annotated

import typer

from haoscar.cli.bench_save import NoteOption, OutOption, SaveOption, keep
from haoscar.cli.groups import bench_app
from haoscar.cli.render import err_console, print_json


@bench_app.command("exec")
def bench_exec(
    *,
    nodes: Annotated[int, typer.Option("--nodes", min=1, max=3000, help="Lab hosts running sshd.")] = 200,
    runs: Annotated[int, typer.Option("--runs", min=1, max=20, help="Rounds of haoscar exec then clush.")] = 3,
    fanout: Annotated[int, typer.Option("--fanout", min=1, max=4096, help="ssh at once, for both.")] = 64,
    as_json: Annotated[bool, typer.Option("--json", help="Print only JSON (it is printed either way).")] = False,
    save: SaveOption = False,
    out: OutOption = None,
    note: NoteOption = None,
) -> None:
    """`haoscar exec @compute -- hostname` on N lab hosts running sshd, cold (a login per node) and warm (over the
    connections the cold run left), and `clush -w NODES hostname` on the same hosts in the same run (plain; and with
    haoscar's ssh configuration, cold and warm); prints JSON: "seconds" is the warm exec, "clush_seconds" plain
    clush (floor: 1.5x clush, 5 s), every other figure beside them (docs/exec.md)."""
    from haoscar.lab import require_root
    from haoscar.scenarios.bench.exec import run_exec_bench

    require_root("`haoscar bench exec`")
    with err_console.status("bench exec", spinner="dots") as status:
        result = run_exec_bench(nodes, runs, fanout, lambda m: status.update(f"bench exec: {m}"))
        keep("exec", result, save, out, note)
    print_json(result)


def register(app: typer.Typer) -> None:
    """The command registers itself on ``bench_app`` at import; nothing to add to the root."""
