"""``haoscar demo --cluster`` (issue 12): OSCAR's *Complete Cluster Setup* then *Test Cluster Setup* on a lab
cluster, then a crash of the active head, then the test again against the new head.

The cluster: two heads running the HA daemon with replication and real fencing (``fence_ipmilan`` through each
head's simulated BMC, scenarios/ipmi_lab.py), a witness, the private alias with the head's services behind it
(dnsmasq, the boot server, slurmctld, the time server, the NFS-Ganesha export of /home); compute nodes in namespaces
running sshd, munged and slurmd; and a compute node that is a qemu VM network-installed from the real Debian image
(``image build``: debootstrap), which joins by itself (hostname, address, cluster key, /home over NFS, time, slurmd).
Every step an administrator takes is a haoscar command run inside a head; the lab only plays the hardware (hosts,
links, power, a crash) and what an installed system starts by itself on the namespace nodes.

Each step is shown as it runs and recorded (``demo_steps.Steps``); the act ends with a summary table. What a user
observes is returned as the act's checks and, whole, as the ``ClusterDemo`` (the cluster tests' rows before and
after the crash, the heads, the failover, the VM's times), which the CLI prints with ``--json``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from haoscar.lab.lab import Lab
from haoscar.scenarios import demo_cluster_steps as s
from haoscar.scenarios.demo import Act, ActResult, Check
from haoscar.scenarios.demo_cluster_steps import (
    IMAGE_NAME,
    PRIVATE_ALIAS,
    USER,
    USER_UID,
    VM_NODE,
    ClusterDemo,
)
from haoscar.scenarios.demo_cluster_steps import NAMESPACE_HOME as HOME
from haoscar.scenarios.demo_steps import ActStopped, StepFailed, Steps
from haoscar.scenarios.ipmi_lab import with_bmcs
from haoscar.scenarios.nfs_lab import nfs_service
from haoscar.spec.models import ClusterSpec

SERVICES: list[dict[str, Any]] = [
    {"name": "dhcp", "kind": "dnsmasq", "interval": 0.5},
    {"name": "boot", "kind": "bootserver", "interval": 0.5},
    {"name": "slurmctld", "kind": "slurmctld", "interval": 0.5, "timeout": 20},
    {"name": "ntp", "kind": "chrony", "interval": 1, "timeout": 10},
    nfs_service(),
]
TITLE = "The complete cluster: set up, tested, a head crash, tested again against the new head"
SETUP = "Cluster set up"
TEST_BEFORE = "haoscar cluster test, before the crash"
TEST_AFTER = "haoscar cluster test, on the new head"
CRASH = "Crash of the active head"
NEW_HEAD = "The new head is active"
HOME_BACK = f"/home back on {VM_NODE} after the crash"
FILE_AFTER = "The user's file, written before the crash, read after it"
JOINED = f"{VM_NODE} joined the cluster (the real image's checks)"
NODE_SYNC = f"haoscar node sync {VM_NODE} from the new head"

Plan = list[tuple[str, Callable[[], str], bool]]


def lab_spec(spec: ClusterSpec) -> ClusterSpec:
    """The lab ``demo --cluster`` brings up: ``spec`` with a simulated BMC per head (real fencing needs them)."""
    return with_bmcs(spec)


def cluster_spec(spec: ClusterSpec) -> ClusterSpec:
    """What the heads run: the private alias on both heads, the head services behind it, and one more compute
    node than the lab has hosts for (``VM_NODE``, the VM)."""
    raw = spec.model_dump(mode="json", exclude_none=True)
    for head in raw["heads"].values():
        head["private_alias_ip"] = PRIVATE_ALIAS
    raw["ha"]["services"] = SERVICES
    raw["clients"][0]["count"] += 1
    return ClusterSpec.model_validate(raw)


# --- the VM's own checks (scenarios/real_node_checks.py, node_sync_check.py) ----------------------------------


def join_checks_step(demo: ClusterDemo) -> str:
    """What the VM shows of its join (scenarios/real_node_checks.py): the cluster key and no other, its name and
    address from the database, time from the alias, /home over NFSv4 from the alias with the user's uid and root
    squashed, the stale-handle watcher, the cluster's user."""
    from haoscar.scenarios.real_node_checks import JoinCheckFailed, check_joined

    assert demo.node is not None
    try:
        seen = check_joined(demo.node, alias=PRIVATE_ALIAS, user=USER, uid=USER_UID)
    except JoinCheckFailed as exc:
        raise StepFailed(str(exc)[:1000]) from None
    demo.observed["vm_joined"] = seen
    return (
        f"{VM_NODE}: root takes the cluster key only; {seen['address']} as in the database; time from "
        f"{PRIVATE_ALIAS}, synchronised; /home {seen['home']}, {USER}'s writes as uid {USER_UID}, root squashed, "
        f"haoscar-nfs-watch active; {USER} in passwd and group"
    )


def node_sync_step(demo: ClusterDemo) -> str:
    """``haoscar node sync`` of the VM from the new head (scenarios/node_sync_check.py): a new version of its image
    made in the new head's store (replicated from the old head's), a dry run listing it, the sync, the node's own
    files kept, ``node list`` showing the new version."""
    from haoscar.scenarios.node_sync_check import NodeSyncCheckFailed, check_node_sync

    assert demo.node is not None
    try:
        seen = check_node_sync(demo.node, head=demo.standby)
    except NodeSyncCheckFailed as exc:
        raise StepFailed(str(exc)[:1500]) from None
    demo.observed["node_sync"] = seen
    return (
        f"{VM_NODE} synced from {demo.standby} to {IMAGE_NAME} version {seen['version']} in {seen['sync_s']:.0f} s "
        f"(dry run {seen['dry_run_s']:.0f} s); kept its {seen['kept']}"
    )


def plan(demo: ClusterDemo) -> Plan:
    """(what, step, essential) in order: set up, test, crash, test again."""
    return [
        ("Slurm: munged everywhere, slurmd on the namespace nodes", lambda: s.start_slurm_step(demo), True),
        ("The real image and the installer on the heads", lambda: s.image_step(demo), True),
        ("HA on both heads: services, replication, BMC fencing", lambda: s.start_ha_step(demo), True),
        (f"{VM_NODE}: a VM installs the real image (background)", lambda: s.vm_install_step(demo), True),
        # before sshd starts: its logins see the host's mounts as they were when it started
        *([("/home from the alias on the namespace nodes", lambda: s.mount_home_step(demo), False)] if HOME else []),
        ("The cluster key on both heads, sshd on every host", lambda: s.cluster_key_step(demo), True),
        ("haoscar user add", lambda: s.user_add_step(demo), False),
        (f"{VM_NODE} joined: installed, booted, ssh with the key", lambda: s.vm_joined_step(demo), True),
        ("haoscar cluster sync", lambda: s.cluster_sync_step(demo), False),
        (JOINED, lambda: join_checks_step(demo), False),
        ("A Slurm job on every compute node", lambda: s.slurm_job_step(demo, demo.active), False),
        (TEST_BEFORE, lambda: s.cluster_test_step(demo, "test_before", demo.active), False),
        ("The demo user writes a file in its home", lambda: s.user_file_step(demo), False),
        ("The standby's copy is current", lambda: s.in_sync_step(demo), True),
        (CRASH, lambda: s.crash_step(demo), True),
        (NEW_HEAD, lambda: s.new_head_step(demo), False),
        ("haoscar node list on the new head", lambda: s.node_list_step(demo), False),
        *([("/home back on the namespace nodes", lambda: s.nodes_home_back_step(demo), False)] if HOME else []),
        (HOME_BACK, lambda: s.vm_home_back_step(demo), False),
        (TEST_AFTER, lambda: s.cluster_test_step(demo, "test_after", demo.standby), False),
        (FILE_AFTER, lambda: s.user_file_after_step(demo), False),
        (NODE_SYNC, lambda: node_sync_step(demo), False),
    ]


SETUP_STEPS = 9 if HOME else 8  # the steps before the first test


def checks_of(demo: ClusterDemo) -> list[Check]:
    """What a user observes, as the demo's checks: the set-up complete, the test before and after the crash, the
    new head active, the user's data. A step that did not run is a failed check ("not run")."""
    results = {r.name: r for r in demo.steps.results}
    old, new = demo.active or "head", demo.standby or "standby"

    def check(what: str, step: str, source: str, target: str) -> Check:
        result = results.get(step)
        observed = result is not None and result.ok
        return Check(what, source, target, PRIVATE_ALIAS, True, observed, result.detail if result else "not run")

    setup = demo.steps.results[:SETUP_STEPS]
    done = len(setup) == SETUP_STEPS and all(r.ok for r in setup)
    failed = "; ".join(f"{r.name}: {r.detail}" for r in setup if not r.ok) or f"{len(setup)} steps ran"
    return [
        Check("the cluster is set up completely", old, "cluster", PRIVATE_ALIAS, True, done,
              "every step passed" if done else failed),
        check("the VM installed from the real image joined the cluster", JOINED, old, VM_NODE),
        check("cluster test passes before the crash", TEST_BEFORE, old, "compute"),
        check("the standby takes over after the crash", CRASH, old, new),
        check("the new head reports itself active", NEW_HEAD, new, new),
        check("cluster test passes against the new head", TEST_AFTER, new, "compute"),
        check("the user's file survives the crash", FILE_AFTER, new, VM_NODE),
        check("a new image version reaches the VM from the new head", NODE_SYNC, new, VM_NODE),
    ]  # fmt: skip


def cluster_setup_act(console: Console, seen: list[ClusterDemo] | None = None) -> Act:
    """The act of ``haoscar demo --cluster``; each run's ``ClusterDemo`` is appended to ``seen`` (the CLI's JSON and
    the test read it)."""

    def run(lab: Lab, spec: ClusterSpec) -> ActResult:
        demo = run_cluster_setup(lab, spec, console)
        if seen is not None:
            seen.append(demo)
        return ActResult(TITLE, checks_of(demo))

    return Act(TITLE, run)


def run_cluster_setup(lab: Lab, spec: ClusterSpec, console: Console) -> ClusterDemo:
    """Run every step of the act on ``lab`` (brought up from ``lab_spec``); stops what it started, restores the
    crashed head, and prints the summary table whatever happened."""
    work = Path(tempfile.mkdtemp(prefix="hcs", dir="/tmp"))
    demo = ClusterDemo(lab, cluster_spec(spec), work, console, Steps(console))
    steps = plan(demo)
    try:
        with demo.stack:
            for index, (name, step, essential) in enumerate(steps):
                try:
                    if not demo.steps.run(name, step, essential=essential):
                        console.print(s.heads_line(demo), markup=False, highlight=False)
                except ActStopped:
                    console.print(s.heads_line(demo), markup=False, highlight=False)
                    demo.steps.skip([later for later, _, _ in steps[index + 1 :]])
                    break
    finally:
        for head in demo.heads:
            if lab.host(head).state == "crashed":
                lab.restore(head)
        shutil.rmtree(work, ignore_errors=True)
    console.print(demo.steps.table("Complete and test the cluster: summary"))
    return demo
