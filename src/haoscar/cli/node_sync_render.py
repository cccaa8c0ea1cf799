"""How ``haoscar node sync`` prints its report: with ``--dry-run`` the paths that would change, nodes with the same
list folded under one node set (``~`` changed, ``+`` new, ``-`` deleted), then one row per way nodes ended. Paths a
node sent (what it would delete) are network text: every one passes through ``wire_text``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from haoscar.cli.render import console, print_json, table
from haoscar.cli.wire_text import wire_text

if TYPE_CHECKING:
    from haoscar.commands.node_sync import NodeSyncReport

_RULE = "-" * 15


def _listing(report: NodeSyncReport) -> None:
    for nodes, changes in report.change_lists():
        counts = changes.counts()
        head = f"{nodes}: {counts['changed']} changed, {counts['new']} new, {counts['deleted']} deleted"
        console.print(f"{_RULE}\n{wire_text(head)}\n{_RULE}", highlight=False)
        for mark, paths in (("~", changes.changed), ("+", changes.new), ("-", changes.deleted)):
            for path in paths:
                console.print(f"{mark} {wire_text(path)}", highlight=False, soft_wrap=True)


def render_sync(report: NodeSyncReport, as_json: bool) -> None:
    """The report as JSON, or the dry run's listing and the summary table."""
    if as_json:
        print_json(report.as_dict())
        return
    if report.dry_run:
        _listing(report)
    verb = "would sync" if report.dry_run else "synced"
    failed = len(report.failed)
    title = f"{len(report.results)} nodes in {report.seconds:.1f} s: " + (
        f"{failed} failed" if failed else f"all {verb}"
    )
    rows = [
        (wire_text(nodes), image, status, counts["changed"], counts["new"], counts["deleted"], wire_text(reason))
        for nodes, image, status, counts, reason in report.summary()
    ]
    columns = ["nodes", "image", "status", "changed", "new", "deleted", "reason"]
    console.print(table(title, columns, rows, keys=["nodes"], drop=["deleted", "new", "changed", "image"]))
