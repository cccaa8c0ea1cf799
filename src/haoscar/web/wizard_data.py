"""What a wizard page shows besides its forms, read through the commands (one worker-thread call per page)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from haoscar.commands import dhcp, images, install, macs
from haoscar.commands.env import Env
from haoscar.commands.wizard import WizardProgress, progress
from haoscar.commands.wizard_facts import nodes_without_mac, tool_rows
from haoscar.commands.wizard_steps import Draft, draft
from haoscar.errors import UserError


@dataclass(frozen=True)
class StepData:
    progress: WizardProgress
    draft: Draft | None
    extra: dict[str, Any] = field(default_factory=dict)


def sighting_rows(env: Env) -> list[dict[str, object]]:
    """Unknown MACs in order of arrival (``mac list``), as the page and the live stream show them."""
    return [s.as_dict() for s in macs.list_sightings(env)]


def free_nodes(env: Env) -> list[str]:
    """Nodes without a MAC in the order ``assign-all`` gives them MACs."""
    return nodes_without_mac(env)


def install_rows(env: Env) -> list[dict[str, Any]]:
    """Every node's install state and live numbers (``install monitor --once``)."""
    return [row.as_dict() for row in install.snapshot(env, install.MonitorInstalls()).rows]


def _extra(env: Env, step: str, wizard: WizardProgress) -> dict[str, Any]:
    facts = wizard.facts
    if step == "server":
        return {"tools": [row.as_dict() for row in tool_rows()]}
    if step in ("packages", "image", "clients", "standby"):
        listed = images.image_list(env, images.ListImages()).images
        keys = ("name", "current", "ip_assignment", "post_install", "source")
        extra: dict[str, Any] = {"images": [{k: getattr(i, k) for k in keys} for i in listed]}
        extra["selected"] = facts.packages_selected or []
        extra["nodes"] = [n.as_dict() for n in [*facts.compute, *([facts.standby] if facts.standby else [])]]
        return extra
    if step == "macs":
        return {"sightings": sighting_rows(env), "free": free_nodes(env)}
    if step == "dhcp":
        try:
            status = dhcp.status(env)
        except (UserError, OSError) as exc:
            return {"dhcp": None, "dhcp_error": str(exc)}
        return {"dhcp": {"running": status.running, "pid": status.pid, "interface": status.interface,
                         "leases": len(status.leases)}}  # fmt: skip
    if step == "install":
        return {"installs": install_rows(env)}
    return {}


def step_data(env: Env, step: str) -> StepData:
    wizard = progress(env)
    return StepData(wizard, draft(env, step), _extra(env, step, wizard))
