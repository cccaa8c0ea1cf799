"""The CLI prints a command's FieldError in its own words: each field as its flag (``start_ip`` as ``--start-ip``),
or as the word a command gives it (``--bind`` for ``binds``, a positional argument); exit status 2, no traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from haoscar.cli.render import flags, user_error
from haoscar.errors import FieldError, ref

Cli = Callable[..., tuple[int, str, str]]  # the fixtures of tests/unit/conftest.py
Dump = Callable[[str], list[str]]

ADD = ["node", "add", "--image", "oscarimage"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([*ADD, "--base-name", "cn", "--count", "0", "--start-ip", "198.18.0.150"],
         "error: --count 0: define at least 1 client"),
        ([*ADD, "--base-name", "cn", "--count", "2", "--start-ip", "198.18.0.999"],
         "error: --start-ip: '198.18.0.999' is not an IPv4 address; write four numbers 0-255 separated by dots, "
         "e.g. 198.18.0.10"),
        ([*ADD, "--base-name", "cn", "--count", "2", "--start-ip", "198.18.0.101"],
         "error: --start-ip 198.18.0.101: addresses already in use: 198.18.0.101 (node01), 198.18.0.102 (node02); "
         "start the range at a free address"),
        ([*ADD, "--base-name", "node", "--count", "2", "--padding", "2", "--start-ip", "198.18.0.150"],
         "error: node names already defined: node[01-02]; pick another --base-name or --start-number, or delete them "
         "first with `haoscar node delete`"),
        ([*ADD, "--nodeset", "cn[1-2]", "--count", "2", "--start-ip", "198.18.0.150"],
         "error: give either --nodeset or --base-name with --count, not both"),
        (["node", "set", "node02", "--ip", "198.18.0.1"],
         "error: --ip 198.18.0.1 is already used by node head1; pick a free address"),
        (["node", "set", "node[01-02]", "--ip", "198.18.0.50"],
         "error: --mac and --ip set one node's address; 'node[01-02]' names 2 nodes"),
        (["node", "set", "node02"], "error: nothing to change; give --image, --mac, --ip, --boot-mode or --domain"),
    ],
)  # fmt: skip
def test_field_errors_print_the_flags_as_before(
    state: str, haoscar: Cli, dump: Dump, argv: list[str], expected: str
) -> None:
    before = dump(state)
    code, _, err = haoscar("--state-dir", state, *argv)
    assert (code, err) == (2, expected + "\n")
    assert dump(state) == before


def test_standby_add_prints_its_flags(state: str, haoscar: Cli) -> None:
    assert haoscar("--state-dir", state, "node", "delete", "head2", "--yes")[0] == 0
    code, _, err = haoscar(
        "--state-dir", state, "standby", "add", "--alias-ip", "198.19.0.10", "--local-ip", "198.18.0.101"
    )
    assert (code, err) == (2, "error: --local-ip 198.18.0.101 is already used by node node01\n")
    code, _, err = haoscar(
        "--state-dir", state, "standby", "add", "--alias-ip", "198.19.0.10", "--local-ip", "198.18.0.2",
        "--public-ip", "198.19.0.10",
    )  # fmt: skip
    assert (code, err) == (2, "error: --public-ip must differ from --alias-ip: the alias moves between the heads\n")


def test_a_field_with_another_word_on_the_command_line_prints_that_word(tmp_path: Path, haoscar: Cli) -> None:
    # netboot serve's request field is `binds`, its option `--bind`.
    code, _, err = haoscar("--state-dir", str(tmp_path), "netboot", "serve", "--bind", "nowhere")
    assert (code, err) == (
        2,
        "error: --bind 'nowhere' is not an IP address; give the head's private IP, e.g. 198.18.0.1\n",
    )
    # lab link's `state` is the positional STATE: not an option --state.
    code, _, err = haoscar("--state-dir", str(tmp_path), "lab", "link", "head1", "eth0", "sideways")
    assert (code, err) == (2, "error: state 'sideways': say up or down\n")


def test_flags_names_fields_for_the_renderer_and_inner_blocks_win(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(FieldError) as caught, flags(nodeset="NODESET", count="--how-many"), flags(count="-n"):
        raise FieldError("nodeset", f"{ref('nodeset')} names 2 nodes; give {ref('count')} or {ref('ip')}", sep=None)
    user_error(caught.value)
    assert capsys.readouterr().err == "error: NODESET names 2 nodes; give -n or --ip\n"
    assert str(caught.value) == "--nodeset names 2 nodes; give --count or --ip"  # the error itself is unchanged


def test_a_message_that_named_its_field_bare_prints_the_flag_on_the_command_line(tmp_path: Path, haoscar: Cli) -> None:
    spec = str(tmp_path / "missing.yaml")
    code, _, err = haoscar("repl", "run", "--node", "head1", "--spec", spec, "--role", "sourc")
    assert (code, err) == (
        2,
        "error: --role: 'sourc' is not a role; use source (the active head) or target (the standby)\n",
    )
    code, _, err = haoscar("repl", "run", "--node", "head1", "--spec", spec, "--role", "source", "--catch-up")
    assert code == 2
    assert (
        err == "error: --catch-up: catching up is for a returning head, which runs as target; drop it or use target\n"
    )
