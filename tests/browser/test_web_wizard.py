"""The installation wizard in Chromium, on a lab cluster whose heads run HA, replication, the netboot services and the
console: its first step with the keyboard alone, bad input in every form (the CLI's message next to the field), and
a full run from an empty cluster (no image, no client) to a qemu VM installed over the network, its MAC appearing
live and assigned by a click, its install progress shown live.

One lab and one VM install for the module; the tests run in file order (the full run comes last).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browserkit import entered_off_loop, log_in, off_loop, shoot
from playwright.sync_api import Page, expect

from haoscar.provision.installer_kernel import META_PACKAGE
from haoscar.scenarios.install_vm import Vm
from haoscar.scenarios.lab_fixtures import unique_lab_name
from haoscar.scenarios.web_lab import (
    TINY_TREE,
    WebLab,
    console_spec,
    network_vm,
    prepare_wizard,
    web_lab,
)

pytestmark = [pytest.mark.browser, pytest.mark.lab, pytest.mark.vm]

VM_MAC = "52:54:00:5e:0c:31"
NODE, NODE_IP = "node01", "198.18.0.101"
INSTALL_TIMEOUT_S = 300.0


@pytest.fixture(scope="module")
def weblab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebLab]:
    if os.geteuid() != 0:
        pytest.fail("browser tests need root (the console runs in a lab)")
    state = tmp_path_factory.mktemp("wizardlab")
    with entered_off_loop(web_lab(state, unique_lab_name("wz"), console_spec(clients=False))) as running:
        prepare_wizard(running)
        yield running


def _normal(text: str) -> str:
    return " ".join(text.split())


def _cli(weblab: WebLab, line: str) -> tuple[int, str]:
    """Run the page's "Equivalent command" on the active head, as it is shown; its exit status and output."""
    assert line.startswith("haoscar "), line
    define = f'haoscar() {{ {sys.executable} -m haoscar --state-dir /var/lib/haoscar "$@"; }}; {line}'
    done = weblab.lab.exec(weblab.active(), ["sh", "-c", define], check=False, timeout=120)
    return done.returncode, _normal(done.stdout + done.stderr)


def _states(page: Page, weblab: WebLab) -> dict[str, str]:
    reply = page.evaluate("async (u) => (await fetch(u)).json()", weblab.url + "/api/wizard")
    return {step["key"]: step["state"] for step in reply["steps"]}


def _wait_job(page: Page, timeout_s: float = 180.0) -> str:
    """The step's job ends (the page follows it live): its final state."""
    expect(page.locator("#job-state")).to_be_visible()  # a job was started
    expect(page.locator("#job-state")).not_to_have_text("running", timeout=timeout_s * 1000)
    return page.locator("#job-state").inner_text().strip()


def test_the_first_step_with_the_keyboard_alone(page: Page, weblab: WebLab, request: pytest.FixtureRequest) -> None:
    log_in(page, weblab)
    page.goto(weblab.url + "/wizard/server")
    shoot(page, request, "wizard-server")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")  # past the navigation: the step's content and its form follow
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "file":
            break
    assert page.evaluate("document.activeElement.id") == "file", "Tab never reached the spec file field"
    page.keyboard.type("/etc/haoscar/cluster.yaml")
    page.keyboard.press("Enter")  # submits the form: a real <button type=submit> is its default
    assert _wait_job(page) == "done", page.locator("#job").inner_text()
    expect(page.locator("#step-state-server")).to_contain_text("done")
    shoot(page, request, "wizard-server-done")


@dataclass(frozen=True)
class Bad:
    """A form given one bad value: ``field`` must show the CLI's message for it."""

    step: str
    form: str
    field: str
    value: str
    others: tuple[tuple[str, str], ...] = ()
    query: str = ""


BAD_INPUT = (
    Bad("server", "apply", "file", "/etc/haoscar/no-such-spec.yaml"),
    Bad("packages", "packages", "packages", "Not_A_Package!", (("image", "oscarimage"),)),
    Bad("image", "build", "suite", "no such suite", query="?form=build"),
    Bad("image", "fetch", "ssh_port", "70000", (("golden_client", "head1"),), query="?form=fetch"),
    Bad("image", "import", "directory", "/srv/no-such-tree", query="?form=import"),
    Bad("clients", "clients", "start_ip", "198.18.0.300", (("base_name", "node"), ("count", "1"))),
    Bad("standby", "standby", "local_ip", "198.18.0.300", (("alias_ip", "198.19.0.10"),)),
    Bad("macs", "collect", "interface", "nosuch0", (("timeout", "1"),)),
    Bad("macs", "assign", "mac", "52:54:00:zz:00:01", (("node", "head2"),)),
    Bad("macs", "assign_all", "nodeset", "node[01-"),
    Bad("dhcp", "dhcp", "quarantine", "198.18.0.200"),
    Bad("netboot", "netboot", "nodeset", "node[01-"),
    Bad("netboot", "installer", "kernel_package", "linux-image-no-such-kernel"),
    Bad("install", "install_settings", "stall_timeout", "-5"),
    Bad("complete", "complete", "spec", "/etc/haoscar/no-such-spec.yaml"),
    Bad("test", "test", "sync_nodes", "node[01-", (("nodes", "head1"),)),
)


def test_bad_input_in_every_form_shows_the_cli_message(
    page: Page, weblab: WebLab, request: pytest.FixtureRequest
) -> None:
    log_in(page, weblab)
    before = _states(page, weblab)
    for bad in BAD_INPUT:
        page.goto(f"{weblab.url}/wizard/{bad.step}{bad.query}")
        form = page.locator(f"#form-{bad.form}")
        for name, value in ((bad.field, bad.value), *bad.others):
            form.locator(f"#{name}").fill(value)
        form.locator(f"#submit-{bad.form}").click()
        error = page.locator(f"#{bad.field}-error")
        expect(error).to_be_visible()
        shown = _normal(error.inner_text())
        expect(page.locator(f"#{bad.field}")).to_have_attribute("aria-invalid", "true")
        expect(page.locator(f"#errors-{bad.form}")).to_have_attribute("role", "alert")
        line = page.locator(f"#cli-{bad.form}").inner_text().strip()
        assert bad.value in line, f"{bad.form}: the equivalent command {line!r} lacks the value typed"
        status, said = _cli(weblab, line)
        assert status == 2, f"{line}: exit {status}: {said}"
        assert shown in said, f"{bad.form}.{bad.field}: page says {shown!r}; `{line}` says {said!r}"
        shoot(page, request, f"bad-{bad.form}")
    assert _states(page, weblab) == before, "a refused form changed the cluster"


def _assign_click(page: Page, mac: str, node: str) -> None:
    dom = mac.replace(":", "-")
    row = page.locator(f"#mac-{dom}")
    expect(row).to_be_visible(timeout=120_000)  # pushed live: no reload
    rows = page.locator("#sightings-body tr").all_inner_texts()
    assert len(rows) == 1, f"other MACs collected too: {rows}"
    page.select_option(f"#assign-node-{dom}", node)  # offered among the nodes without a MAC
    page.locator(f"#assign-{dom}").click()
    expect(row).to_have_count(0, timeout=30_000)  # no longer an unknown MAC


def _node(weblab: WebLab, name: str) -> dict[str, Any]:
    done = weblab.haoscar("node", "list", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(done.stdout)
    rows = rows["nodes"] if isinstance(rows, dict) else rows
    return next(r for r in rows if r["name"] == name)


def test_a_full_wizard_run_installs_a_vm(
    page: Page, weblab: WebLab, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    log_in(page, weblab)
    page.goto(weblab.url + "/wizard")
    shoot(page, request, "wizard-overview-empty")
    # Build or fetch an image: import the tree on the head, an image that powers the node off once installed
    page.goto(weblab.url + "/wizard/image?form=import")
    page.fill("#name", "oscarimage")
    page.fill("#directory", TINY_TREE)
    page.select_option("#post_install", "shutdown")
    page.click("#submit-import")
    assert _wait_job(page) == "done", page.locator("#job").inner_text()
    shoot(page, request, "wizard-image")
    # Define clients: one node, node01, at the first compute address
    page.goto(weblab.url + "/wizard/clients")
    expect(page.locator("#image")).to_have_value("oscarimage")
    for name, value in (("base_name", "node"), ("count", "1"), ("padding", "2"), ("start_ip", NODE_IP)):
        page.fill(f"#{name}", value)
    page.click("#submit-clients")
    expect(page.locator("#step-state-clients")).to_contain_text("done")
    shoot(page, request, "wizard-clients")
    # Collect and assign MACs: the VM network-boots, its MAC shows up live, a click gives it to node01
    vm = off_loop(network_vm, weblab, VM_MAC, tmp_path)
    try:
        _run_install(page, weblab, vm, request)
    except BaseException:
        print(f"--- serial log ---\n{vm.log_tail(60)}")
        raise
    finally:
        vm.kill()


def _run_install(page: Page, weblab: WebLab, vm: Vm, request: pytest.FixtureRequest) -> None:
    page.goto(weblab.url + "/wizard/macs")
    page.fill("#interface", "eth0")  # every field typed: a refused form's draft (the test above) fills them
    page.fill("#timeout", "180")
    page.fill("#count", "1")
    page.click("#submit-collect")
    expect(page.locator("#job-state")).to_have_text("running")
    vm.start("n")
    expect(page.locator(f"#mac-{VM_MAC.replace(':', '-')}")).to_be_visible(timeout=120_000)  # pushed live
    _wait_job(page)  # the collection stops after one new MAC; then the step takes another form
    _assign_click(page, VM_MAC, NODE)
    shoot(page, request, "wizard-macs")
    assert _node(weblab, NODE)["mac"] == VM_MAC
    # the standby head's MAC, typed into Assign MAC to Node (it boots from its own disk, it never asks for DHCP)
    standby = weblab.other(weblab.active())
    standby_mac = weblab.lab.exec(standby, ["cat", "/sys/class/net/eth0/address"]).stdout.strip()
    page.goto(weblab.url + "/wizard/macs")
    page.fill("#node", standby)
    page.fill("#mac", standby_mac)
    page.click("#submit-assign")
    expect(page.locator("#step-state-macs")).to_contain_text("done")
    # Configure DHCP, set up network boot: the installer and every node's boot script
    page.goto(weblab.url + "/wizard/dhcp")
    if "done" not in page.locator("#step-state-dhcp").inner_text():
        page.click("#submit-dhcp")
        expect(page.locator("#step-state-dhcp")).to_contain_text("done")
    shoot(page, request, "wizard-dhcp")
    page.goto(weblab.url + "/wizard/netboot")
    page.fill("#kernel_package", META_PACKAGE)
    page.click("#submit-installer")
    assert _wait_job(page, 300) == "done", page.locator("#job").inner_text()
    page.fill("#nodeset", "")
    page.click("#submit-netboot")
    expect(page.locator("#step-state-netboot")).to_contain_text("done")
    shoot(page, request, "wizard-netboot")
    # Monitor the install: the node is powered on again (network boot first) and installs, live on the page
    page.goto(weblab.url + "/wizard/install")
    row = page.locator(f"#install-{NODE}")
    expect(row).to_have_count(0)  # not installing yet
    vm.kill()
    vm.start("n")
    expect(row).to_be_visible(timeout=120_000)  # the row appears live, no reload
    expect(row.locator("td.stage")).not_to_have_text("-", timeout=120_000)  # and its stage
    percent = page.locator(f"#progress-{NODE}")
    expect(percent).to_have_attribute("value", re.compile(r"\d"), timeout=120_000)
    shoot(page, request, "wizard-install-progress")
    seen: set[int] = set()  # the bar's values while the VM installs, the page never reloaded
    deadline = time.monotonic() + INSTALL_TIMEOUT_S
    while vm.running() and time.monotonic() < deadline:
        value = percent.get_attribute("value")
        if value is not None and value.isdigit():
            seen.add(int(value))
        page.wait_for_timeout(500)
    assert vm.wait(10) is not None, f"no power-off within {INSTALL_TIMEOUT_S:.0f} s"
    expect(row.locator("td.state")).to_have_text("installed", timeout=30_000)
    expect(percent).to_have_attribute("value", "100")
    assert any(0 < value < 100 for value in seen), f"no progress shown between 0 and 100 %: {sorted(seen)}"
    shoot(page, request, "wizard-installed")
    page.reload()  # the steps' list is drawn by the server
    expect(page.locator("#step-state-install")).to_contain_text("done")
    expect(page.locator("#step-state-complete")).to_contain_text("current step")
    assert _node(weblab, NODE)["install_state"] == "installed"
    assert "haoscar.server=http://198.18.0.3:8470" in vm.log.read_text(errors="replace")
