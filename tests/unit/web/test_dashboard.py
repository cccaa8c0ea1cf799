"""The dashboard (web/dashboard.py, web/api.py) through the real console app: both heads from a fake HA pair
(the real control-socket protocol and the peer's HTTP status), the timeline from recorded HA events, the nodes of
the lab spec, and the switchover behind its confirmation."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import pytest
from fake_ha import FakeHa, head_status
from webtest import Browser, add_admin, make_ctx, run_console

from haoscar.commands import macs
from haoscar.commands.audit import AuditQuery, audit_list
from haoscar.commands.env import Env
from haoscar.commands.exec import resolve_targets
from haoscar.commands.nodes import ListNodes, node_list
from haoscar.errors import FieldError, UserError
from haoscar.events import events_path
from haoscar.provision.install_progress import record_progress
from haoscar.web.context import WebContext

EVENTS = Path(__file__).parents[1] / "commands" / "data" / "ha_events" / "crash_switchover_head2.jsonl"
CRASH = {"kind": "failover", "cause": "takeover", "reason": "the peer is silent on every network", "took_s": 3.403,
         "since_dead_s": 0.052, "wall": 1796331561.269968}  # fmt: skip


@pytest.fixture
def dash_state(state: str) -> Path:
    """The lab spec's cluster (head1, head2, node01, node02) with an admin, and head2's recorded HA events."""
    path = Path(state)
    add_admin(path)
    events_path(path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(EVENTS, events_path(path))
    return path


@pytest.fixture
def ctx(dash_state: Path) -> WebContext:
    return make_ctx(dash_state)


def heads_pair(state: Path) -> FakeHa:
    local = head_status("head2", "head1", "active", role="standby", last_failover=CRASH,
                        received={"private": 1000, "public": 1000, "heartbeat": 900})  # fmt: skip
    peer = head_status("head1", "head2", "standby", warnings=["replication <b>catching</b> up & more"])
    return FakeHa(state, local, peer)


def text_of(page: str, element_id: str) -> str:
    """The text inside the element with this id (its tags dropped, entities decoded)."""
    found = re.search(rf'<(\w+)[^>]*\bid="{re.escape(element_id)}"[^>]*>(.*?)</\1>', page, re.S)
    assert found, f"no element #{element_id}"
    return html.unescape(re.sub(r"<[^>]+>", " ", found.group(2))).strip()


def test_the_dashboard_shows_both_heads_the_last_failover_and_the_timeline(ctx: WebContext, dash_state: Path) -> None:
    async def scenario(b: Browser) -> None:
        await b.login()
        async with heads_pair(dash_state):
            page = await b.get("/dashboard")
            assert page.status == 200, b.text
            assert text_of(b.text, "head-head2-role") == "active"
            assert text_of(b.text, "head-head1-role") == "standby"
            assert text_of(b.text, "active-head") == "head2"
            assert text_of(b.text, "head-head2-vip") == "yes"
            assert "holder head2" in text_of(b.text, "head-head2-lease")
            assert text_of(b.text, "head-head2-replication-lag") == "0.25"
            heartbeat = text_of(b.text, "head-head2-net-heartbeat")
            assert "900" in heartbeat and "10.0 %" in heartbeat  # 100 of 1000 missed on this network
            assert "0.0 %" in text_of(b.text, "head-head2-net-private")
            assert "running" in text_of(b.text, "head-head2-res-dhcp")
            assert text_of(b.text, "last-failover-ms") == "3403"
            assert text_of(b.text, "last-failover-kind") == "failover"
            assert text_of(b.text, "last-failover-node") == "head2"
            assert 'id="switchover-button"' in b.text and 'src="/static/dashboard.js"' in b.text
            # the timeline: head2's failovers with their measured times, and the refusal
            failovers = b.text.split('id="failovers-body"')[1].split("</tbody>")[0]
            assert "3403 ms" in failovers and "854 ms" in failovers and "253 ms" in failovers
            assert "replication.refused" in b.text.split('id="refusals-body"')[1].split("</tbody>")[0]
            # the peer's text is escaped, never markup
            assert "replication &lt;b&gt;catching&lt;/b&gt; up &amp; more" in b.text

    run_console(ctx, scenario)


def test_the_api_gives_the_same_as_json(ctx: WebContext, dash_state: Path) -> None:
    async def scenario(b: Browser) -> None:
        anonymous = await b.get("/api/dashboard")
        assert anonymous.status == 401
        await b.login()
        async with heads_pair(dash_state):
            response = await b.get("/api/dashboard")
            assert response.status == 200 and response.content_type == "application/json"
            data = json.loads(b.text)
            assert data["active"] == "head2" and [h["name"] for h in data["heads"]] == ["head2", "head1"]
            loss = {n["name"]: n["loss"] for n in data["heads"][0]["networks"]}
            assert loss == {"private": 0.0, "public": 0.0, "heartbeat": 0.1}
            assert data["last_failover"]["took_ms"] == 3403.0 and data["last_failover"]["steps_ms"]["services_up"]
            assert [f["took_ms"] for f in data["timeline"]["failovers"]] == [3403.0, 854.0]
            timeline = await b.get("/api/timeline?limit=5")
            assert timeline.status == 200 and len(json.loads(b.text)["events"]) == 5
            bad = await b.get("/api/timeline?limit=many")
            assert bad.status == 400 and json.loads(b.text) == {"errors": {"limit": ["'many' is not a whole number"]}}
        refused = await b.post("/api/dashboard")
        assert refused.status == 405  # GET only

    run_console(ctx, scenario)


def test_without_an_ha_daemon_the_dashboard_says_why(ctx: WebContext) -> None:
    async def scenario(b: Browser) -> None:
        await b.login()
        page = await b.get("/dashboard")
        assert page.status == 200
        assert "no HA daemon answers" in text_of(b.text, "heads-error")
        assert text_of(b.text, "last-failover-ms") == "3403"  # from the event store alone

    run_console(ctx, scenario)


def _cli_message(state: Path, nodeset: str) -> str:
    with Env(state) as env, pytest.raises(UserError) as caught:
        node_list(env, ListNodes(nodeset))
    return str(caught.value)


def _exec_detail(state: Path, nodes: str) -> str:
    with Env(state) as env, pytest.raises(FieldError) as caught:
        resolve_targets(env, nodes)
    return caught.value.detail


def test_the_nodes_table_filters_by_node_set_and_group(ctx: WebContext) -> None:
    def names(page: str) -> list[str]:
        return re.findall(r'<tr id="node-([a-z0-9]+)">', page)

    async def scenario(b: Browser) -> None:
        await b.login()
        await b.get("/nodes")
        assert names(b.text) == ["head1", "head2", "node01", "node02"]
        assert "oscarimage" in b.text and "defined" in b.text
        await b.get("/nodes?nodeset=node[02-02]")
        assert names(b.text) == ["node02"]
        await b.get("/nodes?nodeset=%40compute")
        assert names(b.text) == ["node01", "node02"] and 'value="@compute"' in b.text
        api = await b.get("/api/nodes?nodeset=%40compute")
        data = json.loads(b.text)
        assert api.status == 200 and [n["name"] for n in data["nodes"]] == ["node01", "node02"]
        assert data["by_state"] == {"defined": 2}

    run_console(ctx, scenario)


@pytest.mark.parametrize("nodeset", ["node[", "node99", "@nosuchgroup"])
def test_a_bad_node_set_shows_the_clis_message_next_to_the_field(
    ctx: WebContext, dash_state: Path, nodeset: str
) -> None:
    if nodeset.startswith("@"):
        expected = _exec_detail(dash_state, nodeset)  # what `haoscar exec` says of a group (after "--nodes: ")
        assert expected.startswith("unknown group @nosuchgroup; the groups are @compute")
    else:
        expected = _cli_message(dash_state, nodeset)  # what `haoscar node list NODESET` prints after "error: "

    async def scenario(b: Browser) -> None:
        await b.login()
        page = await b.get("/nodes", params={"nodeset": nodeset})
        assert page.status == 400
        assert text_of(b.text, "nodeset-error").startswith(expected), b.text
        assert 'aria-invalid="true"' in b.text and "nodeset-error" in b.text.split('id="nodeset"')[1].split(">")[0]
        assert 'id="nodes"' not in b.text  # no table for a filter that could not be used
        api = await b.get("/api/nodes", params={"nodeset": nodeset})
        assert api.status == 400 and json.loads(b.text)["errors"]["nodeset"][0].startswith(expected)

    run_console(ctx, scenario)


def test_switchover_needs_the_confirmation_and_the_csrf_token(ctx: WebContext, dash_state: Path) -> None:
    async def scenario(b: Browser) -> None:
        await b.login()
        async with heads_pair(dash_state) as ha:
            confirm = await b.get("/dashboard/switchover")
            assert confirm.status == 200 and 'id="switchover-confirm"' in b.text
            assert "head2" in text_of(b.text, "switchover-plan") and "head1" in text_of(b.text, "switchover-plan")
            assert "switchover" not in ha.requests  # showing the confirmation changes nothing
            forged = await b.post("/dashboard/switchover", {"confirm": "switchover"}, csrf=False)
            assert forged.status == 403 and "switchover" not in ha.requests
            unconfirmed = await b.post("/dashboard/switchover", {})
            assert unconfirmed.status == 303 and unconfirmed.headers["Location"] == "/dashboard/switchover"
            assert "switchover" not in ha.requests
            await b.get("/dashboard/switchover")
            done = await b.post("/dashboard/switchover", {"confirm": "switchover"})
            assert done.status == 200 and ha.requests.count("switchover") == 1
            assert text_of(b.text, "switchover-outcome") == "handing the role over to head1"
            ha.replies["switchover"] = {"ok": False, "error": "head1 is not a healthy standby; switchover refused"}
            await b.get("/dashboard/switchover")
            refused = await b.post("/dashboard/switchover", {"confirm": "switchover"})
            assert refused.status == 409
            assert "head1 is not a healthy standby; switchover refused" in text_of(b.text, "switchover-error")
        audit = await b.get("/api/audit?action=ha.switchover")
        assert audit.status == 200
        assert [(e["admin"], e["outcome"]) for e in json.loads(b.text)] == [("admin", "ok"), ("admin", "error")]
        with Env(dash_state) as env:
            rows = audit_list(env, AuditQuery(action="ha.switchover"))
        assert [(r.admin, r.outcome) for r in rows] == [("admin", "ok"), ("admin", "error")]
        assert "not a healthy standby" in rows[1].message

    run_console(ctx, scenario)


def test_the_events_page_lists_the_newest_events_first(ctx: WebContext) -> None:
    async def scenario(b: Browser) -> None:
        await b.login()
        page = await b.get("/events")
        assert page.status == 200
        body = b.text.split('id="events-body"')[1].split("</tbody>")[0]
        assert body.index("failover") < body.index("daemon.start")  # the daemon started before it failed over

    run_console(ctx, scenario)


def test_an_installing_node_shows_its_stage_and_progress(ctx: WebContext, dash_state: Path) -> None:
    mac = "52:54:00:12:34:01"
    with Env(dash_state) as env:
        macs.assign(env, macs.AssignMac("node01", mac))
        record_progress(env.database, dash_state, mac, "image", 40)

    async def scenario(b: Browser) -> None:
        await b.login()
        await b.get("/nodes")
        row = text_of(b.text, "node-node01")
        assert "installing" in row and "image" in row and "40 %" in row
        assert '<progress max="100" value="40"' in b.text
        assert "1 installing" in text_of(b.text, "nodes-count")
        await b.get("/api/nodes?nodeset=node01")
        (node,) = json.loads(b.text)["nodes"]
        assert (node["install_state"], node["stage"], node["percent"], node["mac"]) == ("installing", "image", 40, mac)
        installs = await b.get("/api/installs")
        data = json.loads(b.text)
        assert installs.status == 200 and data["installing"] == 1
        assert [(n["node"], n["stage"], n["percent"]) for n in data["nodes"] if n["node"] == "node01"] == [
            ("node01", "image", 40)
        ]

    run_console(ctx, scenario)
