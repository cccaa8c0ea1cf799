"""Where the wizard is comes from the cluster: each step's state after each step is done, and the same current step
(and the same drafts) for a new browser after a "reload" or a crash."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from webtest import Browser, make_ctx, run_console
from wizardtest import FakeWire, apply_lab_spec, field_errors, import_image, submit, typed_value

from haoscar.commands import macs, netboot, wizard_facts, wizard_steps
from haoscar.commands import wizard_form_defs as form_defs
from haoscar.commands.env import Env
from haoscar.commands.nodes import NodeRow
from haoscar.commands.wizard import STEPS, progress
from haoscar.commands.wizard_facts import ClusterFacts, ServerTool
from haoscar.provision.dhcp_packet import build_frame, build_request
from haoscar.provision.install_progress import record_done, record_progress
from haoscar.provision.installer_build import INSTALLER_DIR, KERNEL_NAME
from haoscar.provision.netboot_files import NetbootPaths
from haoscar.web import wizard as web_wizard


@pytest.fixture(autouse=True)
def present_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    """The head's tools as one that every machine has: the server step then depends on the spec only."""
    monkeypatch.setattr(wizard_facts, "SERVER_TOOLS", (ServerTool("sh", "dash", "a shell"),))


def states(state_dir: Path) -> dict[str, str]:
    with Env(state_dir) as env:
        return {s.step.key: s.state for s in progress(env).steps}


def test_a_missing_tool_keeps_the_server_step_current(console_state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wizard_facts, "SERVER_TOOLS", (ServerTool("no-such-program-w2", "nothing", "a test"),))
    apply_lab_spec(console_state)
    with Env(console_state) as env:
        wizard = progress(env)
    assert wizard.current == "server"
    assert wizard.steps[0].note == "missing: no-such-program-w2"


def test_each_step_is_done_once_the_cluster_is_so(console_state: Path) -> None:
    state = console_state
    assert states(state)["server"] == "current"  # no spec yet
    apply_lab_spec(state)  # heads, networks, node01-02 and the standby head2 defined
    assert states(state) == {"server": "done", "packages": "current", "image": "todo", "clients": "done",
                             "standby": "done", "macs": "todo", "dhcp": "todo", "netboot": "todo",
                             "install": "todo", "complete": "todo", "test": "todo"}  # fmt: skip
    with Env(state) as env:
        wizard_steps.select_packages(env, wizard_steps.SelectPackages(["htop"]))
    assert (states(state)["packages"], states(state)["image"]) == ("done", "current")
    import_image(state, "oscarimage")
    assert (states(state)["image"], states(state)["macs"]) == ("done", "current")
    pairs = [("node01", "52:54:00:ee:00:01"), ("node02", "52:54:00:ee:00:02"), ("head2", "52:54:00:ee:00:03")]
    with Env(state) as env:
        for node, mac in pairs[:2]:
            macs.assign(env, macs.AssignMac(node, mac))
    assert states(state)["macs"] == "current"  # the standby head still has no MAC
    with Env(state) as env:
        macs.assign(env, macs.AssignMac(*pairs[2]))
    assert (states(state)["macs"], states(state)["dhcp"]) == ("done", "current")  # dnsmasq does not run here
    with Env(state) as env:
        netboot.sync(env, netboot.SyncNetboot())
    assert states(state)["netboot"] == "todo"  # the boot scripts are there, the installer is not
    installer = NetbootPaths.under(state).boot_dir / INSTALLER_DIR
    installer.mkdir(parents=True)
    (installer / KERNEL_NAME).write_bytes(b"kernel")
    assert states(state)["netboot"] == "done"
    with Env(state) as env:
        record_progress(env.database, state, pairs[0][1], "image", 40)
        assert states(state)["install"] == "todo"
        record_done(env.database, state, pairs[0][1])
        record_progress(env.database, state, pairs[1][1], "image", 10)
        record_done(env.database, state, pairs[1][1])
    assert states(state)["install"] == "done"


def _facts(**changes: object) -> ClusterFacts:
    node = NodeRow("node01", "compute", "n", "oscarimage", "cluster.local", "eth0", "10.0.0.1", "52:54:00:00:00:01",
                   "netboot", "installed", False)  # fmt: skip
    standby = NodeRow("head2", "standby", "heads", "serverimage", "cluster.local", "eth0", "10.0.0.2",
                      "52:54:00:00:00:02", "netboot", "installed", False)  # fmt: skip
    base: dict[str, object] = {"spec_applied": True, "images": ["oscarimage"], "compute": [node], "standby": standby,
                               "dhcp_running": True, "installer_built": True,
                               "install_counts": {"installed": 1}}  # fmt: skip
    return ClusterFacts(**{**base, **changes})  # type: ignore[arg-type]


def test_complete_and_test_steps_follow_the_standby_and_the_last_test() -> None:
    done = {step.key: step.done for step in STEPS}
    facts = _facts()
    assert [key for key, rule in done.items() if not rule(facts)] == ["complete", "test"]
    up = _facts(standby=NodeRow("head2", "standby", "heads", "serverimage", "cluster.local", "eth0", "10.0.0.2",
                                "52:54:00:00:00:02", "netboot", "up", False))  # fmt: skip
    assert done["complete"](up) and not done["test"](up)
    assert done["test"](_facts(last_test_ok=True)) and not done["test"](_facts(last_test_ok=False))
    failed = _facts(compute=[*facts.compute, NodeRow("node02", "compute", "n", "oscarimage", "cluster.local", "eth0",
                                                     "10.0.0.3", None, "netboot", "failed", False)],
                    without_mac=["node02"])  # fmt: skip
    assert not done["install"](failed) and not done["macs"](failed)


def test_a_new_browser_resumes_at_the_same_step_with_the_typed_values(console_state: Path) -> None:
    apply_lab_spec(console_state)
    import_image(console_state, "oscarimage")
    ctx = make_ctx(console_state)
    bad = {"form": "clients", "image": "oscarimage", "base_name": "rack", "count": "0", "start_ip": "198.18.0.70"}

    async def first(b: Browser) -> str:
        await b.login()
        await b.get("/wizard/clients")
        page = await submit(b, "clients", bad)
        assert page.status == 422
        await b.get("/wizard")
        return b.text

    async def second(b: Browser) -> None:  # another browser, after the first one crashed: no client state at all
        await b.login()
        await b.get("/wizard")
        assert 'href="/wizard/macs" id="continue"' in b.text
        wizard = await (await b.client.get("/api/wizard")).json()
        assert wizard["current"] == "macs"
        await b.get("/wizard/clients")
        assert typed_value(b.text, "base_name") == "rack" and typed_value(b.text, "count") == "0"
        assert field_errors(b.text) == {"count": "0: define at least 1 client"}
        good = {**bad, "count": "1"}
        assert (await submit(b, "clients", good)).status == 200
        assert field_errors(b.text) == {} and typed_value(b.text, "base_name") == "oscarnode"

    overview = run_console(ctx, first)
    assert 'href="/wizard/macs" id="continue"' in overview
    run_console(ctx, second)
    with Env(console_state) as env:
        assert wizard_steps.draft(env, "clients") is None


def test_a_long_job_runs_on_while_short_forms_go_through(console_state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MAC collection (a long job) keeps running while MACs are assigned by click; a second collection waits."""
    apply_lab_spec(console_state)
    listening = threading.Event()
    release = threading.Event()

    def slow_collect(env: Env, request: macs.CollectMacs) -> macs.CollectResult:
        env.meter(50.0, f"listening on {request.interface}")
        listening.set()
        release.wait(60)
        return macs.CollectResult(request.interface)

    original = form_defs.form_named("collect")
    assert original is not None
    collect = replace(original, command=slow_collect)
    monkeypatch.setattr(web_wizard, "form_named", lambda k: collect if k == "collect" else form_defs.form_named(k))
    with Env(console_state) as env:  # one machine asked for DHCP before
        wire = FakeWire([build_frame(build_request("52:54:00:ef:00:01", 1), "52:54:00:ef:00:01")])
        macs.collect(env, macs.CollectMacs("eth0", timeout=5), source=wire)

    async def scenario(b: Browser) -> None:
        await b.login()
        await b.get("/wizard/macs")
        first = await b.post("/wizard/macs", {"form": "collect", "interface": "eth0", "timeout": "60"})
        assert first.status == 303 and listening.is_set()
        second = await b.post("/wizard/macs", {"form": "collect", "interface": "eth0", "timeout": "60"})
        assert second.status == 409 and "Collect MAC Address is still running" in b.text
        assigned = await b.post("/wizard/macs", {"form": "assign", "node": "node01", "mac": "52:54:00:ef:00:01"})
        assert assigned.status == 303
        await b.get("/wizard/macs")
        assert "1 MAC(s) assigned: node01=52:54:00:ef:00:01" in b.text
        assert 'id="background-job"' in b.text and "listening on eth0" in b.text
        job = await (await b.client.get("/api/wizard/macs/job")).json()
        assert (job["form"], job["state"], job["percent"]) == ("collect", "running", 50.0)
        release.set()
        while (await (await b.client.get("/api/wizard/macs/job")).json())["state"] == "running":
            await asyncio.sleep(0.1)
        await b.get("/wizard/macs")
        assert 'id="background-job"' not in b.text

    run_console(make_ctx(console_state), scenario)
