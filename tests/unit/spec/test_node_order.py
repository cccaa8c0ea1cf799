"""One node ordering for haoscar: ClusterShell's (node list, node delete, the next free node for a MAC)."""

from __future__ import annotations

from haoscar.spec.nodes import expand_nodeset, node_order, sorted_nodes


def test_numbers_sort_as_numbers_and_patterns_as_clustershell_groups_them() -> None:
    names = ["node10", "rack1-n10", "node2", "head1", "rack1-n2", "node1"]
    assert sorted_nodes(names) == ["head1", "node1", "node2", "node10", "rack1-n2", "rack1-n10"]


def test_the_order_is_the_one_of_a_clustershell_node_set() -> None:
    expanded = expand_nodeset("node[1-3,10,20-21]")
    assert sorted_nodes(reversed(expanded)) == expanded


def test_a_name_given_twice_is_kept_twice() -> None:
    assert sorted_nodes(["node2", "node10", "node2"]) == ["node2", "node2", "node10"]


def test_names_that_are_not_one_node_follow_in_string_order() -> None:
    names = ["node[1-2]", "node3", "a,b", "", "node1"]
    assert sorted_nodes(names) == ["node1", "node3", "", "a,b", "node[1-2]"]


def test_node_order_ranks_every_distinct_name() -> None:
    rank = node_order(["node10", "node9", "node10"])
    assert rank == {"node9": 0, "node10": 1}
