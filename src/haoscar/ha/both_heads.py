"""``haoscar ha status`` shows both heads: the local daemon's status (control socket) beside the peer's own
status, fetched read-only over HTTP from one of its cluster addresses with a short timeout.

The peer's view of itself is worth more than our view of the peer: its lease, resources, restart counts, dropped
packets and last failover are only known there. When the peer does not answer, the result says so and why.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

PEER_TIMEOUT_S = 1.0


def _get(url: str, timeout: float) -> dict[str, Any]:
    with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=timeout) as response:
        data = json.loads(response.read() or b"{}")
    if not isinstance(data, dict) or "state" not in data:
        raise ValueError(f"{url} did not answer with a head's status")
    return data


def fetch_peer(urls: list[str], timeout: float = PEER_TIMEOUT_S) -> dict[str, Any]:
    """The peer's status from the first of ``urls`` that answers (all asked at once, so one dead network costs
    nothing); ``{"reachable": False, "error": ...}`` when none does within ``timeout``."""
    if not urls:
        return {"reachable": False, "error": "the local daemon names no address of the peer"}
    errors: dict[str, str] = {}
    pool = ThreadPoolExecutor(max_workers=len(urls), thread_name_prefix="haoscar-peer-status")
    try:
        pending: dict[Future[dict[str, Any]], str] = {pool.submit(_get, url, timeout): url for url in urls}
        while pending:
            done, _ = wait(pending, timeout=timeout + 0.5, return_when=FIRST_COMPLETED)
            if not done:
                break
            for future in done:
                url = pending.pop(future)
                try:
                    status = future.result()
                except (OSError, ValueError, urllib.error.URLError) as exc:
                    errors[url] = str(getattr(exc, "reason", None) or exc or type(exc).__name__)
                    continue
                return {**status, "reachable": True, "url": url}
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    for url in urls:
        errors.setdefault(url, f"no answer within {timeout:g} s")
    return {"reachable": False, "error": "; ".join(f"{url}: {why}" for url, why in errors.items())}


def both_heads(local: dict[str, Any], timeout: float = PEER_TIMEOUT_S) -> dict[str, Any]:
    """``{"local": <this head's status>, "peer": <the peer's status, or why it could not be read>}``."""
    peer_seen = local.get("peer", {})
    peer = fetch_peer(list(peer_seen.get("status_urls", [])), timeout)
    peer.setdefault("node", peer_seen.get("node"))
    return {"local": local, "peer": peer}
