"""A short, JSON-friendly description of a valid spec."""

from __future__ import annotations

from typing import Any

from ClusterShell.NodeSet import NodeSet

from haoscar.spec.models import ClusterSpec
from haoscar.spec.nodes import all_nodes, client_nodes, group_label


def spec_summary(spec: ClusterSpec) -> dict[str, Any]:
    groups = []
    for index, group in enumerate(spec.clients):
        nodes = list(client_nodes(spec, group, index))
        groups.append(
            {
                "name": group_label(group, index),
                "image": group.image,
                "count": len(nodes),
                "nodeset": str(NodeSet.fromlist([node.name for node in nodes])),
                "first": f"{nodes[0].name} {nodes[0].interfaces[0].ip}",
                "last": f"{nodes[-1].name} {nodes[-1].interfaces[0].ip}",
            }
        )
    return {
        "cluster": spec.cluster.name,
        "domain": spec.cluster.domain,
        "networks": {
            name: str(net.subnet)
            for name, net in (
                ("private", spec.networks.private),
                ("public", spec.networks.public),
                ("heartbeat", spec.networks.heartbeat),
            )
            if net is not None
        },
        "heads": {"primary": spec.heads.primary.hostname, "standby": spec.heads.standby.hostname},
        "alias_ip": str(spec.heads.primary.alias_ip),
        "private_alias_ip": str(spec.heads.primary.private_alias_ip) if spec.heads.primary.private_alias_ip else None,
        "nodes": len(all_nodes(spec)),
        "client_groups": groups,
        "images": [image.name for image in spec.images],
        "ha": {
            "heartbeat_interval": spec.ha.heartbeat_interval,
            "dead_time": spec.ha.dead_time,
            "failback": spec.ha.failback,
            "witness": spec.ha.witness.hostname if spec.ha.witness else None,
            "fencing": spec.ha.fencing.method,
        },
    }
