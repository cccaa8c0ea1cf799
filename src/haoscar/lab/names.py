"""Names of the things a lab creates, chosen so that two labs never collide and ``down`` can find its own.

Lab names are ``[a-z0-9-]`` and host names are too, so ``_`` separates them unambiguously: every network
namespace of lab ``x`` starts with ``hl_x_`` and no other lab's does.
"""

from __future__ import annotations

import re

from haoscar.errors import UserError

MAX_LAB_NAME = 12
_LAB_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
NETNS_DIR = "/run/netns"
NFT_TABLE = "haoscar_lab"


def check_lab_name(name: str) -> str:
    if len(name) > MAX_LAB_NAME or not _LAB_NAME.match(name):
        raise UserError(
            f"{name!r} is not a valid lab name; use 1-{MAX_LAB_NAME} lower-case letters, digits and '-', "
            "not starting or ending with '-' (e.g. lab, demo, t1)"
        )
    return name


def netns_prefix(lab: str) -> str:
    return f"hl_{lab}_"


def host_netns(lab: str, host: str) -> str:
    return f"{netns_prefix(lab)}{host}"


def switch_netns(lab: str) -> str:
    # Host names cannot start with '_', so this never equals a host's namespace.
    return f"{netns_prefix(lab)}_switch"


def bridge_name(network: str) -> str:
    """The bridge of a network inside the lab's own switch namespace (so no lab name is needed)."""
    return f"br-{network}"[:15]


def switch_port(index: int, iface_index: int) -> str:
    """The switch-side end of a host's veth: short and unique inside the switch namespace, <= 15 chars."""
    return f"p{index}i{iface_index}"
