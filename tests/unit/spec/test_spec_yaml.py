"""Malformed YAML and odd documents: one clear FILE:LINE problem each, never an exception."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from spec_cases import BASE, edit, line_of, problem_list, problems

from haoscar.errors import UserError
from haoscar.spec import SpecError, check_text, load_spec


@pytest.mark.parametrize(
    ("text", "line", "phrase"),
    [
        ("cluster:\n  name: [a, b\nnetworks: {}\n", 3, "expected ',' or ']'"),
        ("cluster:\n\tname: lab\n", 2, "indent with spaces, not tabs"),
        ("cluster:\n  name: lab: cluster\n", 2, "must be quoted"),
        ("cluster:\n  name: 'lab\n", 3, "unexpected end of stream"),
        ("cluster: {name: lab}\n---\nnetworks: {}\n", 2, "remove the second '---'"),
        ("cluster:\n  name: *lab\n", 2, "define the anchor"),
        ("cluster: !!python/object:os.system x\n", 1, "remove the '!' tag"),
    ],
    ids=["unclosed-flow", "tab", "colon-in-value", "unclosed-quote", "two-documents", "undefined-alias", "tag"],
)
def test_malformed_yaml_is_one_problem_at_its_line(text: str, line: int, phrase: str) -> None:
    found = problems(text)
    assert len(found) == 1
    assert found[0].startswith(f"cluster.yaml:{line}: (file): YAML syntax error: ")
    assert phrase in found[0]


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("", "holds no YAML document"),
        ("# only a comment\n", "holds no YAML document"),
        ("- cluster\n- networks\n", "holds a list"),
        ("just words\n", "holds 'just words'"),
    ],
    ids=["empty", "comment-only", "list", "scalar"],
)
def test_a_file_that_is_not_a_mapping_says_what_a_spec_is(text: str, phrase: str) -> None:
    found = problems(text)
    assert len(found) == 1
    assert found[0].startswith("cluster.yaml:1: (top level): ")
    assert phrase in found[0] and "a mapping with the keys cluster, networks and heads" in found[0]


def test_duplicate_key_is_reported_at_the_second_one() -> None:
    text = edit(BASE, ("    hostname: head2\n", "    hostname: head2\n    hostname: head3\n"))
    found = problems(text)
    assert found == [
        f"cluster.yaml:{line_of(text, 'hostname: head3')}: heads.standby.hostname: key 'hostname' "
        "appears twice; keep one (the first one is used)"
    ]


def test_problems_are_sorted_by_line_and_each_reported_once() -> None:
    text = edit(
        BASE,
        ("    count: 4", "    count: -4"),
        ("  name: labcluster", "  name: Lab"),
        ("198.19.0.12", "198.19.0.999"),
    )
    found = problem_list(text)
    assert [p.line for p in found] == sorted(p.line for p in found)
    assert [p.path for p in found] == ["cluster.name", "heads.standby.public_ip", "clients[0].count"]
    assert len(set(found)) == len(found)


def test_yaml_1_1_surprises_are_plain_values() -> None:
    """A MAC is not a base-60 number, 010 is ten, and 'no' is a name, not false."""
    text = edit(
        BASE,
        ("52:54:00:aa:00:02", "52:54:00:12:34:56"),
        ("    count: 4", "    count: 010"),
        ("  name: labcluster", "  name: no"),
    )
    spec, found = check_text(text)
    assert found == [] and spec is not None
    assert spec.heads.standby.private_mac == "52:54:00:12:34:56"
    assert spec.clients[0].count == 10
    assert spec.cluster.name == "no"


def test_macs_are_stored_lower_case_with_colons() -> None:
    spec, _ = check_text(
        edit(BASE, ("52:54:00:aa:00:02", "52-54-00-AA-00-0F"), ("52:54:00:bb:00:01", "52:54:00:BB:00:01"))
    )
    assert spec is not None
    assert spec.heads.standby.private_mac == "52:54:00:aa:00:0f"
    assert spec.clients[0].macs == {"node01": "52:54:00:bb:00:01"}


def test_netmask_as_prefix_is_stored_dotted() -> None:
    spec, _ = check_text(
        edit(
            BASE,
            ("    start_ip: 198.18.0.100\n    netmask: 255.255.255.0", "    start_ip: 198.18.0.100\n    netmask: 24"),
        )
    )
    assert spec is not None
    assert str(spec.clients[0].netmask) == "255.255.255.0"


def _scalar_paths(node: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in _scalar_paths(value, (*path, key))]
    if isinstance(node, list):
        return [p for i, value in enumerate(node) for p in _scalar_paths(value, (*path, i))]
    return [path]


def _replaced(node: object, path: tuple[object, ...], value: object) -> object:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        return {k: (_replaced(v, rest, value) if k == head else v) for k, v in node.items()}
    assert isinstance(node, list)
    return [(_replaced(v, rest, value) if i == head else v) for i, v in enumerate(node)]


@pytest.mark.parametrize("value", [["x"], {"x": 1}, None, "é"], ids=["list", "mapping", "null", "word"])
def test_any_value_of_the_wrong_kind_anywhere_gives_problems_not_an_exception(value: object) -> None:
    data = yaml.safe_load(BASE)
    for path in _scalar_paths(data):
        text = yaml.safe_dump(_replaced(data, path, value), sort_keys=False)
        spec, found = check_text(text)
        if found:
            assert spec is None
            assert all(p.line >= 1 and p.message for p in found)


def test_load_spec_raises_one_user_error_with_every_problem(tmp_path: Path) -> None:
    spec_file = tmp_path / "cluster.yaml"
    spec_file.write_text(edit(BASE, ("  name: labcluster", "  name: Lab"), ("    count: 4", "    count: x")))
    with pytest.raises(SpecError) as caught:
        load_spec(spec_file)
    assert caught.value.exit_code == 2
    assert caught.value.message == f"{spec_file}: 2 problems found; fix them and validate again"
    assert [line.split(": ")[1] for line in caught.value.details] == ["cluster.name", "clients[0].count"]


@pytest.mark.parametrize("kind", ["missing", "directory", "binary"])
def test_load_spec_of_an_unreadable_file_is_a_user_error(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "cluster.yaml"
    if kind == "directory":
        target.mkdir()
    elif kind == "binary":
        target.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UserError) as caught:
        load_spec(target)
    assert str(target) in caught.value.message
    assert {"missing": "no such file", "directory": "is a directory", "binary": "is not UTF-8"}[
        kind
    ] in caught.value.message
