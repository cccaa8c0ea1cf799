"""Tables a person can use at any width (issue 14, item 5): names, addresses and MACs are never cut; a pipe gets
plain aligned columns without box drawing, one field per column."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
from rich.console import Console

from haoscar.cli.main import run
from haoscar.cli.node import node_table
from haoscar.cli.render import table
from haoscar.commands.apply import apply_spec
from haoscar.commands.env import Env
from haoscar.commands.nodes import DefineClients, ListNodes, NodeList, SetNodes, node_add, node_list, node_set
from haoscar.spec import check_text

BOX = re.compile("[\u2500-\u257f]")  # Rich's box-drawing characters
LONG = "hapcompute-rack07n"  # names as long as a real site's, the kind that came out as `hapcos…`


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The lab spec applied, plus long-named clients with MACs."""
    directory = tmp_path_factory.mktemp("state")
    spec, problems = check_text((resources.files("haoscar") / "data" / "lab.yaml").read_text(), "lab.yaml")
    assert spec is not None, problems
    with Env(state_dir=directory) as env:
        apply_spec(env.database, spec)
        request = DefineClients(image="oscarimage", start_ip="198.18.0.200", base_name=LONG, count=3, padding=3)
        node_add(env, request)
        for number in range(1, 4):
            node_set(env, SetNodes(f"{LONG}{number:03d}", mac=f"52:54:00:12:34:{number:02x}"))
    yield directory


@pytest.fixture
def listing(state: Path) -> NodeList:
    with Env(state_dir=state) as env:
        return node_list(env, ListNodes())


def rendered(renderable: object, width: int) -> str:
    out = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    out.print(renderable)
    text = out.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(text, str)
    return text


def words(text: str) -> set[str]:
    return set(BOX.sub(" ", text).split())


@pytest.mark.parametrize("width", [80, 40])
def test_node_list_keeps_every_full_name_ip_and_mac(listing: NodeList, width: int) -> None:
    shown = words(rendered(node_table(listing), width))
    assert len(listing.rows) == 7
    for row in listing.rows:
        assert row.name in shown, (width, row.name)
        assert row.ip in shown, (width, row.ip)
        if row.mac:
            assert row.mac in shown, (width, row.mac)
    assert f"{LONG}003" in shown and "52:54:00:12:34:03" in shown


def test_no_width_cuts_a_key_column(listing: NodeList) -> None:
    for width in range(30, 161, 7):  # below 30 a 21-character name cannot fit on a line at all
        text = rendered(node_table(listing), width)
        assert "…" not in text, width
        shown = words(text)
        assert all(row.name in shown and row.ip in shown for row in listing.rows), width
        assert all(line.rstrip() == line.rstrip()[:width] for line in text.splitlines()), width


def test_a_narrow_terminal_says_which_columns_it_left_out(listing: NodeList) -> None:
    text = rendered(node_table(listing), 80)
    assert "left out" in text and "boot mode" in text.split("left out")[1]
    assert "--json" in text
    # A wide terminal shows every column and needs no note.
    wide = rendered(node_table(listing), 200)
    assert "left out" not in wide and "install state" in wide and "boot mode" in wide


def test_piped_node_list_is_plain_columns(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(["--state-dir", str(state), "node", "list"])
    assert exit_info.value.code in (0, None)
    out = capsys.readouterr().out
    assert not BOX.search(out), out
    lines = out.splitlines()
    assert lines[0] == "7 nodes"
    header, *rows = lines[1:]
    assert header.split() == [
        "name", "role", "group", "image", "version", "private-IP", "MAC", "boot-mode", "install-state"
    ]  # fmt: skip
    assert len(rows) == 7
    assert {len(row.split()) for row in rows} == {9}
    fields = {row.split()[0]: row.split() for row in rows}
    assert fields[f"{LONG}002"][5:7] == ["198.18.0.201", "52:54:00:12:34:02"]
    assert fields["head1"][6] == "-"  # an empty cell is a dash, so awk's fields stay in their columns
    assert fields["head1"][4] == "-"  # no version known yet


def test_records_when_not_even_the_key_columns_fit() -> None:
    rows = [("a-rather-long-host-name-01", "198.18.0.101", "52:54:00:aa:bb:01", "x" * 50)]
    text = rendered(table("hosts", ["host", "IP", "MAC", "detail"], rows), 30)
    shown = words(text)
    assert {"a-rather-long-host-name-01", "198.18.0.101", "52:54:00:aa:bb:01"} <= shown
    assert "x" * 50 in "".join(text.split())  # folded across lines, not cut
