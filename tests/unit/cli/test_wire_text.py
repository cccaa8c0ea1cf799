"""Text chosen by whoever sends a packet (DHCP host names, user classes, installer stage messages) is shown as it
is in the live views: Rich markup in it is not markup, control characters do not reach the terminal."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.live import Live

from haoscar.cli.install import InstallBars, install_label
from haoscar.cli.mac import CollectView
from haoscar.cli.wire_text import wire_text
from haoscar.commands.install import InstallRow, InstallSnapshot
from haoscar.commands.macs import Seen
from haoscar.provision.dhcp_packet import DhcpRequest

HOSTILE = "evil[/x][bold]\x1b[2J\x07"
SHOWN = "evil[/x][bold]?[2J?"


def _console(terminal: bool) -> Console:
    return Console(record=True, width=200, force_terminal=terminal, color_system=None, file=io.StringIO())


def test_wire_text_escapes_markup_and_replaces_control_characters() -> None:
    assert wire_text(HOSTILE) == "evil\\[/x]\\[bold]?[2J?"
    assert wire_text(None) == wire_text("") == "-"


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "pipe"])
def test_collect_view_shows_a_hostile_host_name_as_text(terminal: bool) -> None:
    view = CollectView("MACs seen on eth0")
    request = DhcpRequest("52:54:00:aa:00:01", "DISCOVER", user_class="[/]iPXE", hostname=HOSTILE)
    console = _console(terminal)
    with Live(view.render(), console=console, auto_refresh=False) as live:
        view.add(Seen(request, new=True, seen_count=1))
        live.update(view.render(), refresh=True)
        view.add(Seen(DhcpRequest("52:54:00:aa:00:01", "REQUEST", hostname="[/x]again"), new=False, seen_count=2))
        live.update(view.render(), refresh=True)
    out = console.export_text()
    assert "[/x]again" in out and "[/]iPXE" in out
    assert "\x1b" not in out and "\x07" not in out
    assert view.rows == [("1", "52:54:00:aa:00:01", "REQUEST", "-", "\\[/]iPXE", "\\[/x]again", "2", "-")]


def test_install_monitor_shows_hostile_stage_and_failure_text() -> None:
    failed = InstallRow("node01", "failed", detail=HOSTILE)
    installing = InstallRow("node02", "installing", "", stage="[/image]", percent=40, mb_per_s=12.5, elapsed_s=3)
    console = _console(True)
    view = InstallBars(console)
    with view.bars:
        view.update(InstallSnapshot([failed, installing]))
    out = console.export_text()
    assert f"failed: {SHOWN}" in out
    assert "[/image] 12.5 MB/s 3 s" in out
    assert install_label(failed) == "[red]failed: evil\\[/x]\\[bold]?[2J?[/]"
