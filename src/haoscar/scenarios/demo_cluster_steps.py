"""The steps of ``haoscar demo --cluster`` (scenarios/demo_cluster_setup.py runs them in order).

Each step is a function of the act's ``ClusterDemo`` returning one line of what it observed, or raising
``StepFailed``. What an administrator does is a haoscar command run inside a head (``ClusterDemo.haoscar``); what
the lab does stands for hardware and for what the installer leaves on a node (daemons started, sshd, a power loss).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from haoscar.lab.lab import Lab
from haoscar.lab.nfs_mounts import describe
from haoscar.provision.installer_build import build_installer
from haoscar.scenarios.cluster_lab import HOST_STATE_DIR, haoscar_on
from haoscar.scenarios.demo_steps import StepFailed, Steps
from haoscar.scenarios.ha_lab import HaLab, dump_spec, start_ha, wait_until
from haoscar.scenarios.ipmi_lab import ipmi_fencing
from haoscar.scenarios.real_node import CACHE, RealNode
from haoscar.scenarios.slurm_lab import SlurmLab, start_slurm
from haoscar.spec.models import ClusterSpec

PRIVATE_ALIAS = "198.18.0.3"
VM_NODE, VM_IP, VM_MAC = "node03", "198.18.0.103", "52:54:00:5e:de:03"
IMAGE_NAME = "oscarimage"
# HA timings for a 2-core machine that also emulates a VM in software (TCG takes a whole core for minutes) while
# other work runs: with the lab's 0.8 s witness lease a busy moment costs the active head its lease and the cluster
# its services (seen: three demotions during one VM install). Still 10x faster than HA-OSCAR 2.0's 2 s / 30 s.
# Replication's full pass keeps its default (600 s): NFS writes through handles are watched (replication/fanwatch.py).
TIMINGS: dict[str, Any] = {"heartbeat_interval": 0.5, "dead_time": 3.0, "lease_s": 3.0}
# The namespace nodes' /home over the lab's userspace NFS client (Lab.mount_nfs), so cluster test's /home and MPI
# rows and the user's file run on every compute node. Off (those rows on the VM only, whose kernel mounts /home
# itself) is for a machine where that client cannot run; a client that ends mid-act is described after the failed
# step (nfs_mounts.describe: its exit status or signal and its log).
NAMESPACE_HOME = True
INSTALLER_CACHE = CACHE / "installer"  # the installer's kernel, shared with the install tests
USER, USER_UID = "demo", 3000
USER_FILE = "before-the-crash.txt"  # in the demo user's home, written before the crash, read after it
USER_TEXT = "written by demo on node03 before the head crashed"


@dataclass
class ClusterDemo:
    """What the act built and saw; the steps take it and fill it."""

    lab: Lab
    spec: ClusterSpec
    work: Path
    console: Console
    steps: Steps
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    ha: HaLab | None = None
    slurm: SlurmLab | None = None
    active: str = ""
    standby: str = ""
    vm: concurrent.futures.Future[RealNode] | None = None
    node: RealNode | None = None
    crashed_at: float | None = None  # monotonic
    home_mounted: bool = False  # the namespace nodes' /home clients were started
    observed: dict[str, Any] = field(default_factory=dict)

    @property
    def computes(self) -> list[str]:
        """The compute nodes that are lab hosts (namespaces); the VM is ``VM_NODE``."""
        return [host for host, record in self.lab.hosts.items() if record.role == "compute"]

    @property
    def heads(self) -> list[str]:
        return [self.spec.heads.primary.hostname, self.spec.heads.standby.hostname]

    def state(self, head: str) -> Path:
        return self.lab.host_dir(head) / HOST_STATE_DIR.lstrip("/")

    def run(self, host: str, *argv: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        return haoscar_on(self.lab, host, *argv, timeout=timeout)

    def haoscar(self, host: str, *argv: str, timeout: float = 180.0) -> str:
        """A haoscar command run inside ``host``, as its administrator would; its output, or StepFailed."""
        done = self.run(host, *argv, timeout=timeout)
        if done.returncode != 0:
            raise StepFailed(f"haoscar {' '.join(argv)} on {host} exited {done.returncode}: {tail(done)}")
        return str(done.stdout)

    def on_vm(self, command: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """``command`` as root on the VM over ssh with the cluster key, from the head that is active now."""
        assert self.node is not None
        head = self.standby if self.crashed_at is not None else self.active
        return self.node.ssh(command, via=head, timeout=timeout)

    def to_dict(self) -> dict[str, Any]:
        return {**self.steps.to_dict(), "old_head": self.active, "new_head": self.standby, **self.observed}


def tail(done: Any, lines: int = 6) -> str:
    text = f"{done.stdout or ''}{done.stderr or ''}".strip().splitlines()
    return " | ".join(text[-lines:]) or "no output"


def short(data: Any, limit: int = 300) -> str:
    text = json.dumps(data, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def heads_line(demo: ClusterDemo) -> str:
    """Both heads as the HA daemons and the lab see them: shown after a failed step (a head fenced by its peer
    under load explains many later failures)."""
    seen = []
    for head in demo.heads:
        status = demo.ha.status(head, timeout=1.0) if demo.ha is not None else None
        fence = ((status or {}).get("fencing") or {}).get("last")
        state = (status or {}).get("state", "no answer")
        fenced = f", last fence {short(fence)}" if fence else ""
        seen.append(f"{head}: lab {demo.lab.host(head).state}, HA {state}{fenced}")
    line = "   heads now: " + "; ".join(seen)
    # the namespace nodes' /home clients: a /home row that failed because one of them ended says how it ended
    mounts = [_home_client(demo, host) for host in demo.computes if demo.home_mounted]
    return "\n".join([line, *mounts])


def _home_client(demo: ClusterDemo, host: str) -> str:
    try:
        return f"   /home client of {describe(demo.lab, host, '/home')}"
    except Exception as exc:  # shown after a failure: it must not hide that failure
        return f"   /home client of {host}: {exc}"


# --- set-up ------------------------------------------------------------------------------------------------------


def start_slurm_step(demo: ClusterDemo) -> str:
    """munged on every host and slurmd on the namespace compute nodes, as their installed systems start them;
    slurm.conf and the munge key from ``commands.slurm.sync``. slurmctld is the HA service of the active head."""
    (demo.work / "cluster.yaml").write_text(dump_spec(demo.spec))
    run = start_slurm(demo.lab, demo.spec, demo.work / "cluster.yaml", demo.work / "slurm")
    demo.slurm = run

    def stop() -> None:
        run.stop()
        run.env.close()

    demo.stack.callback(stop)
    return f"munged on every host, slurmd on {', '.join(demo.computes)}, slurm.conf and the munge key pushed"


def start_ha_step(demo: ClusterDemo) -> str:
    """Both heads' daemons with replication and fence_ipmilan; the roles are read, not assumed."""
    fencing = ipmi_fencing(demo.lab, demo.spec)
    ha = start_ha(
        demo.lab, demo.spec, fencing=fencing, wait=False, replication=True, replication_ack_timeout_s=1.0, **TIMINGS
    )
    demo.ha = ha
    demo.stack.callback(ha.stop)

    def states() -> dict[str, str]:
        return {head: str((ha.status(head, timeout=0.5) or {}).get("state")) for head in demo.heads}

    if not wait_until(lambda: sorted(states().values()) == ["active", "standby"], 40, 0.2):
        raise StepFailed(f"no active and standby head within 40 s: {states()}")
    demo.active = next(head for head, state in states().items() if state == "active")
    demo.standby = next(head for head in demo.heads if head != demo.active)
    services = ", ".join(s.name for s in demo.spec.ha.services)
    return (
        f"{demo.active} active, {demo.standby} standby; {services} behind the private alias {PRIVATE_ALIAS}; "
        f"replication on; fencing {fencing.agent} through the heads' BMCs"
    )


def cluster_key_step(demo: ClusterDemo) -> str:
    """haoscar's ssh key pair (``STATE/ssh``) is the cluster's: the standby has the active head's, as a standby
    cloned from the primary does (its state directory is not a replicated tree), so whichever head is active
    reaches the nodes. sshd on both heads and the namespace nodes authorizes it for root (and users' own keys)."""
    from haoscar.scenarios.users_lab import user_sshds

    key = demo.haoscar(demo.active, "image", "ssh-key").strip().splitlines()[-1]
    source, target = demo.state(demo.active) / "ssh", demo.state(demo.standby) / "ssh"
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in ("id_ed25519", "id_ed25519.pub"):
        shutil.copy2(source / name, target / name)
    hosts = [*demo.heads, *demo.computes]
    demo.stack.enter_context(user_sshds(demo.lab, hosts, [key]))
    return f"{key.split()[0]} key of {demo.active} on both heads; sshd on {', '.join(hosts)} accepts it"


def image_step(demo: ClusterDemo) -> str:
    """The real image (``image build``: debootstrap, cached) in the primary's store and each head's installer
    (the netboot tree is not replicated), before HA starts: replication's first pass then brings the image to the
    standby, and the heavy copy does not compete with the heartbeats of a running pair."""
    from haoscar.scenarios.real_node import built_image_root, prepare_head

    root = built_image_root()
    primary, standby = demo.heads
    prepare_head(demo.lab, primary, root)
    build_installer(demo.state(standby), cache_dir=INSTALLER_CACHE)
    size = subprocess.run(["du", "-sh", str(root)], capture_output=True, text=True, check=False).stdout.split()
    return f"image oscarimage ({size[0] if size else '?'}, debootstrap) in {primary}'s store; installers on both heads"


def vm_install_step(demo: ClusterDemo) -> str:
    """A qemu VM network-installs as ``VM_NODE`` from the active head, in the background while the next steps
    run (under TCG an install and a first boot take minutes)."""
    from haoscar.scenarios.real_node import install_real_node

    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="demo-vm")
    demo.vm = pool.submit(
        install_real_node, demo.lab, demo.active, node=VM_NODE, ip=VM_IP, mac=VM_MAC, work_dir=demo.work
    )
    demo.stack.callback(_stop_vm, demo)
    demo.stack.callback(pool.shutdown, wait=False, cancel_futures=True)
    return f"{VM_NODE} ({VM_MAC}) network-booting: iPXE, dnsmasq and the boot server on {PRIVATE_ALIAS}"


def _stop_vm(demo: ClusterDemo) -> None:
    if demo.node is not None:
        demo.node.stop()
    elif demo.vm is not None and demo.vm.done() and demo.vm.exception() is None:
        demo.vm.result().stop()


def vm_joined_step(demo: ClusterDemo) -> str:
    assert demo.vm is not None
    try:
        node = demo.vm.result(timeout=1200)
    except concurrent.futures.TimeoutError:
        raise StepFailed(f"{VM_NODE} did not install and boot within 20 min") from None
    demo.node = node
    demo.observed["vm"] = {"install_s": round(node.install_s, 1), "boot_s": round(node.boot_s, 1)}
    host = node.ssh("hostname").stdout.strip()
    if host != VM_NODE:
        raise StepFailed(f"the VM answers ssh as {host!r}, not {VM_NODE}")
    return f"{VM_NODE} installed in {node.install_s:.0f} s, booted from its disk, ssh as root in {node.boot_s:.0f} s"


def user_add_step(demo: ClusterDemo) -> str:
    """``haoscar user add`` on the active head: the account in the database, the home on the export, pushed to
    the heads and the installed nodes."""
    done = demo.run(demo.active, "user", "add", USER, "--uid", str(USER_UID), "--comment", "Demo User", "--json")
    if done.returncode not in (0, 1) or not done.stdout.strip():
        raise StepFailed(f"haoscar user add exited {done.returncode}: {tail(done)}")
    report = json.loads(done.stdout)
    demo.observed["user_add"] = report
    hosts = report["sync"]["hosts"]
    reached = sorted(h for h, r in hosts.items() if r["ok"])
    missed = {h: r["error"] for h, r in hosts.items() if not r["ok"]}
    # The VM is still installing: unreachable, as a node being installed is; it gets the account at the sync.
    installing = missed.get(VM_NODE, "").startswith("unreachable")
    if set(missed) - {VM_NODE} or (missed and not installing):
        raise StepFailed(f"user {USER} pushed to {', '.join(reached)}; not to {short(missed)}")
    later = f"; {VM_NODE} is installing (unreachable): the sync after its join brings it" if missed else ""
    return f"user {USER} (uid {report['user']['uid']}), home {report['user']['home']}; on {', '.join(reached)}{later}"


def mount_home_step(demo: ClusterDemo) -> str:
    """The namespace nodes mount /home from the private alias, as their fstab would (their kernel has no NFS
    client here: a userspace NFSv4 client over FUSE, lab/nfs_mounts.py); the VM's own kernel mounts it itself."""
    for host in demo.computes:
        demo.lab.mount_nfs(host, PRIVATE_ALIAS, "/home", "/home")
        demo.home_mounted = True
        # unmounted while a head still serves it (the stack unwinds before HA stops): a client of a dead server
        # waits for it, and so would the unmount
        demo.stack.callback(_unmount_home, demo, host)
    probe = ["findmnt", "-n", "-o", "FSTYPE", "/home"]
    # the last line: the mount on top (the host's private /home directory is a bind mount under it)
    seen = {host: (demo.lab.exec(host, probe, check=False).stdout.split() or ["-"])[-1] for host in demo.computes}
    if any(not fstype.startswith("fuse") for fstype in seen.values()):
        raise StepFailed(f"/home from {PRIVATE_ALIAS} is not mounted everywhere: {seen}")
    kind = next(iter(seen.values()))
    return f"{PRIVATE_ALIAS}:/home on {', '.join(demo.computes)} (NFSv4, a userspace client: {kind})"


def cluster_sync_step(demo: ClusterDemo) -> str:
    """``haoscar cluster sync``: accounts, /etc/hosts, known hosts and root's key on both heads and every node."""
    done = demo.run(demo.active, "cluster", "sync", "--json")
    if not done.stdout.strip():
        raise StepFailed(f"haoscar cluster sync exited {done.returncode}: {tail(done)}")
    report = json.loads(done.stdout)
    demo.observed["cluster_sync"] = report
    if done.returncode != 0:
        raise StepFailed(f"cluster sync failed on {report['failed']}: {short(report['hosts'])}")
    changed = {host: r["changes"] for host, r in report["hosts"].items() if r["changes"]}
    what = "; ".join(f"{host}: {', '.join(c)}" for host, c in changed.items()) or "nothing to change"
    return f"{len(report['hosts'])} hosts current in {report['seconds']:.1f} s ({what})"


def cluster_test_runs(demo: ClusterDemo) -> list[list[str]]:
    """The ``cluster test`` arguments the act runs: every check on every compute node; without the namespace
    nodes' /home (``NAMESPACE_HOME``), every check on the VM and those that need no /home on the namespace nodes."""
    if NAMESPACE_HOME:
        return [["@compute", "--user", USER]]
    without_home = [arg for check in ("resolve", "time", "slurm") for arg in ("--check", check)]
    return [[VM_NODE, "--user", USER], [",".join(demo.computes), *without_home]]


def cluster_test_step(demo: ClusterDemo, key: str, head: str) -> str:
    """``haoscar cluster test --json`` on ``head``: every row must pass."""
    reports, failed, seen = [], [], []
    for args in cluster_test_runs(demo):
        done = demo.run(head, "cluster", "test", *args, "--json", timeout=400)
        if not done.stdout.strip():
            raise StepFailed(f"haoscar cluster test {' '.join(args)} exited {done.returncode}: {tail(done)}")
        report = json.loads(done.stdout)
        reports.append(report)
        failed += [f"{r['check']}@{r['node']}: {r['reason']}" for r in report["rows"] if not r["ok"]]
        if done.returncode != 0 and not failed:
            failed.append(f"exit {done.returncode}")
        seen.append(f"{', '.join(report['checks'])} on {report['nodes']}")
    rows = [row for report in reports for row in report["rows"]]
    demo.observed[key] = {"ok": not failed, "runs": reports, "rows": rows}
    if failed:
        raise StepFailed(f"{len(failed)} of {len(rows)} rows failed: {'; '.join(failed)[:600]}")
    return f"{len(rows)} rows pass: {'; '.join(seen)}"


def user_file_step(demo: ClusterDemo) -> str:
    """The demo user writes a file in its home from the VM (the kernel's NFS client, /home from the alias)."""
    assert demo.node is not None
    command = f"su - {USER} -c {shlex.quote(f'echo {shlex.quote(USER_TEXT)} > ~/{USER_FILE} && sync')}"
    done = demo.on_vm(command)
    if done.returncode != 0:
        raise StepFailed(f"writing ~{USER}/{USER_FILE} on {VM_NODE}: {tail(done)}")
    return f"~{USER}/{USER_FILE} written on {VM_NODE} over NFS"


# --- the crash and after -------------------------------------------------------------------------------------------


def in_sync_step(demo: ClusterDemo) -> str:
    """The standby may take over only with a current copy (replication nothing pending, the witness's mark
    dropped): an administrator checks ``haoscar ha status`` before pulling a plug, and so does the demo."""
    from haoscar.scenarios.demo_cluster import in_sync

    assert demo.ha is not None
    ha = demo.ha
    started = time.monotonic()
    copy = demo.lab.host_dir(demo.standby) / "home" / USER / USER_FILE
    if not wait_until(lambda: copy.exists() and copy.read_text().strip() == USER_TEXT, 90, 0.2):
        raise StepFailed(f"~{USER}/{USER_FILE} did not reach {demo.standby}'s disk within 90 s")
    arrived = time.monotonic() - started
    demo.observed["user_file_replicated_s"] = round(arrived, 1)
    if not wait_until(lambda: in_sync(ha, demo.active), 180, 0.2):
        repl = (ha.status(demo.active, timeout=1.0) or {}).get("replication") or {}
        raise StepFailed(f"{demo.standby} not in sync within 180 s: {short(repl)}")
    return (
        f"the user's file on {demo.standby}'s disk {arrived:.1f} s after it was written; "
        "nothing pending, the witness's mark dropped"
    )


def crash_step(demo: ClusterDemo) -> str:
    """A power loss of the active head (every process killed, links down, as ``haoscar lab crash``); the standby
    takes over the aliases and the services."""
    assert demo.ha is not None
    ha, old, new = demo.ha, demo.active, demo.standby
    crashed = time.monotonic()
    demo.lab.crash(old)
    demo.crashed_at = crashed
    try:
        status = ha.wait_for(new, "active", 40)
    except TimeoutError:
        last = ha.status(new, timeout=1.0) or {}
        seen = f"{last.get('state')}, {last.get('warnings')}"
        raise StepFailed(f"{new} not active 40 s after the crash: {seen}") from None
    took_ms = round((time.monotonic() - crashed) * 1000)
    if demo.node is not None:
        demo.node.head = new  # the admin's ssh to the VM goes from the head that is active now
    demo.observed["failover_ms"] = took_ms
    demo.observed["active_after"] = new
    fence = (status.get("fencing") or {}).get("last")
    demo.observed["fence"] = fence
    fenced = f"; fenced {fence['target']} ({'ok' if fence['ok'] else 'FAILED'})" if fence else "; no fence needed"
    return f"{old} crashed; {new} active {took_ms} ms later{fenced}"


def new_head_step(demo: ClusterDemo) -> str:
    """The HA status of the new head, read with ``haoscar ha status --json`` inside it."""
    out = demo.haoscar(demo.standby, "ha", "status", "--json", timeout=30)
    local = json.loads(out).get("local") or {}
    state, held = local.get("state"), (local.get("vip") or {}).get("held")
    demo.observed["new_head_state"] = state
    if state != "active" or not held:
        raise StepFailed(f"haoscar ha status on {demo.standby}: {state}, VIP held: {held}")
    running = [r["name"] for r in local.get("resources", []) if r.get("state") == "running"]
    return f"haoscar ha status on {demo.standby}: {state}, holds the aliases, runs {', '.join(running)}"


def node_list_step(demo: ClusterDemo) -> str:
    """``haoscar node list --json`` on the new head: its replicated database knows the VM as installed, with the
    image version it runs (written on the old head while it installed)."""
    rows = {row["name"]: row for row in json.loads(demo.haoscar(demo.standby, "node", "list", "--json"))}
    vm = rows.get(VM_NODE) or {}
    demo.observed["vm_row_after"] = vm
    if vm.get("install_state") != "installed":
        raise StepFailed(f"node list on {demo.standby}: {VM_NODE} is {vm.get('install_state')!r}, not installed")
    version = vm.get("image_version")
    return f"{len(rows)} nodes; {VM_NODE} installed, {vm.get('image')} version {version}, MAC {vm.get('mac')}"


def vm_home_back_step(demo: ClusterDemo) -> str:
    """The VM's /home after the crash: its hard NFS mount's file handles were the old head's, the new head's export
    is another file system (as on two real heads; the lab gives each head a /home of its own), so the node sees
    ESTALE and its watcher (haoscar-nfs-watch, docs/nfs.md) remounts. Measured: how long after the crash /home
    answers again on the node, and that it then shows a file the new head wrote. Nobody touches the node."""
    crashed = demo.crashed_at or time.monotonic()
    if not wait_until(lambda: demo.on_vm("timeout 10 stat -t /home/.", timeout=30).returncode == 0, 180, 1.0):
        raise StepFailed(f"/home on {VM_NODE} did not answer within 180 s of the crash")
    marker = f".haoscar-demo-after-crash-{int(crashed)}"
    (demo.lab.host_dir(demo.standby) / "home" / marker).write_text(demo.standby)
    if not wait_until(lambda: demo.on_vm(f"cat /home/{marker}").stdout.strip() == demo.standby, 120, 1.0):
        mounts = demo.on_vm("findmnt -n /home; journalctl -u haoscar-nfs-watch -n 5 --no-pager").stdout
        raise StepFailed(f"/home on {VM_NODE} does not show {demo.standby}'s export within 120 s: {mounts.strip()}")
    took = time.monotonic() - crashed
    demo.observed["vm_home_back_s"] = round(took, 1)
    watch = demo.on_vm("journalctl -u haoscar-nfs-watch --no-pager -o cat | tail -n 3").stdout.strip()
    demo.observed["vm_home_watch_log"] = watch
    said = f"; haoscar-nfs-watch: {watch.splitlines()[-1]}" if watch else ""
    return f"/home on {VM_NODE} shows {demo.standby}'s export {took:.1f} s after the crash, by itself{said}"


def _unmount_home(demo: ClusterDemo, host: str) -> None:
    try:
        demo.lab.unmount_nfs(host, "/home")
    except Exception as exc:  # the lab's teardown still ends the client; say why it was left to it
        demo.console.print(f"   /home on {host} not unmounted: {exc}", markup=False, highlight=False)


def nodes_home_back_step(demo: ClusterDemo) -> str:
    """The namespace nodes' NFS client reconnects to the alias by itself (the new head's export): how long after
    the crash the user lists their home on each (as the user: root is squashed and the home is the user's own)."""
    crashed = demo.crashed_at or time.monotonic()
    back: dict[str, float] = {}
    probe = ["runuser", "-u", USER, "--", "timeout", "10", "ls", f"/home/{USER}"]
    for host in demo.computes:
        if not wait_until(lambda h=host: demo.lab.exec(h, probe, check=False).returncode == 0, 240, 0.5):
            raise StepFailed(f"/home/{USER} on {host} did not answer within 240 s of the crash")
        back[host] = round(time.monotonic() - crashed, 1)
    demo.observed["nodes_home_back_s"] = back
    return "; ".join(f"{host} after {seconds:.1f} s" for host, seconds in back.items()) + " (reconnected, no remount)"


def user_file_after_step(demo: ClusterDemo) -> str:
    """The user reads the file written before the crash, as itself, on every compute node: the namespace nodes'
    clients reconnected to the new head's export (fresh lookups: its replicated copy), the VM through its mount."""
    assert demo.node is not None
    read = f"su - {USER} -c 'cat ~/{USER_FILE}'"
    hosts = demo.computes if NAMESPACE_HOME else []
    seen = {host: demo.lab.exec(host, ["sh", "-c", read], check=False, timeout=60) for host in hosts}
    seen[VM_NODE] = demo.on_vm(read)
    demo.observed["user_file_after"] = {host: done.stdout.strip() for host, done in seen.items()}
    wrong = {
        host: tail(done) for host, done in seen.items() if done.returncode != 0 or done.stdout.strip() != USER_TEXT
    }
    if wrong:
        raise StepFailed(f"~{USER}/{USER_FILE} after the crash: {short(wrong)}")
    return f"~{USER}/{USER_FILE} reads back as {USER} on {', '.join(seen)} from {demo.standby}'s export"


def slurm_job_step(demo: ClusterDemo, head: str) -> str:
    """``srun`` on every compute node that runs slurmd, from ``head`` through the controller on the alias."""
    assert demo.slurm is not None
    run = demo.slurm
    nodes = [*demo.computes, *([VM_NODE] if demo.node is not None else [])]
    listed = ",".join(nodes)

    def idle() -> bool:
        done = run.client(head, f"timeout 5 sinfo -h -N -n {listed} -o '%N %t'", timeout=15)
        return sum(1 for line in done.stdout.splitlines() if line.split()[1:] == ["idle"]) >= len(nodes)

    if not wait_until(idle, 120, 0.5):
        raise StepFailed(f"{listed} not all idle in slurmctld within 120 s ({head})")
    done = run.client(head, f"timeout 90 srun -w {listed} -N {len(nodes)} -l hostname", timeout=120)
    names = sorted(line.split(":", 1)[-1].strip() for line in done.stdout.splitlines() if line.strip())
    if done.returncode != 0 or names != sorted(nodes):
        raise StepFailed(f"srun -N {len(nodes)} hostname: exit {done.returncode}, {tail(done)}")
    return f"srun -N {len(nodes)} hostname from {head} through the alias: {', '.join(names)}"
