"""One line saying what a wizard form's command did, from its report (the CLI prints the same facts)."""

from __future__ import annotations

from typing import Any


def _image(request: Any, result: Any) -> str:
    return f"image {request.name} version {result.version}: {result.files} entries"


def _assigned(_request: Any, result: Any) -> str:
    pairs = ", ".join(f"{a.node}={a.mac}" for a in result.assignments)
    return f"{len(result.assignments)} MAC(s) assigned" + (f": {pairs}" if pairs else "")


def _collect(_request: Any, result: Any) -> str:
    new = len([s for s in result.sightings if s.new])
    return f"{new} new MAC(s), {result.known} request(s) from known nodes, {len(result.assigned)} bound to nodes"


def _setup_test(_request: Any, result: Any) -> str:
    sync = (
        "cluster sync: all hosts"
        if not result.sync.failed
        else f"cluster sync failed on {', '.join(result.sync.failed)}"
    )
    test = result.test
    verdict = "all passed" if test.ok else f"{len(test.failed)} of {len(test.rows)} failed"
    return f"{sync}; cluster test of {test.nodes}: {verdict}"


SUMMARIES: dict[str, Any] = {
    "apply": lambda _q, r: (
        f"spec applied: {len(r.added)} added, {len(r.changed)} changed, {len(r.unchanged)} unchanged"
    ),
    "packages": lambda _q, r: (
        f"packages selected: {', '.join(r.packages)}"
        + (f"; image {r.applied.image} version {r.applied.version}" if r.applied else "")
    ),
    "build": _image,
    "fetch": _image,
    "import": _image,
    "clients": lambda _q, r: (
        f"defined {len(r.names)} clients {r.nodeset} in group {r.group}, {r.first_ip} - {r.last_ip}"
    ),
    "standby": lambda _q, r: f"standby head {r.node.name} defined ({r.node.ip}, alias {r.alias_ip})",
    "collect": _collect,
    "assign": _assigned,
    "assign_all": _assigned,
    "dhcp": lambda _q, r: f"dnsmasq {r.action} (pid {r.pid})",
    "netboot": lambda _q, r: "network boot files written",
    "installer": lambda _q, r: "installer built",
    "install_settings": lambda _q, r: f"stall timeout {r.stall_timeout:g} s, token lifetime {r.token_ttl:g} s",
    "complete": lambda _q, r: "the heads are ready" if r.ready else "the heads are not ready yet",
    "test": _setup_test,
}


def summary(form: str, request: Any, result: Any) -> str:
    """What the form's command did (its request for the names, its report for the rest)."""
    try:
        return str(SUMMARIES[form](request, result))
    except (KeyError, AttributeError, TypeError):
        return "done"
