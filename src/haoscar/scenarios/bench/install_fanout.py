"""``haoscar bench install-fanout``: N lab hosts pull their image at once, through the installer's own fetch path,
beside N parallel rsyncs of the same tree in the same run (issue 15, provisioning at scale).

A lab with a head and N light compute hosts on the private network, each host with its node's address and MAC
from the spec. The head's database holds the cluster (``spec apply``), the netboot files are rendered, the image
is a synthetic tree (``install_fetch.synthetic_tree``: many small files and a few large ones) imported into the
image store, and the boot server runs as ``haoscar netboot serve`` in the head host. Each host asks for its iPXE
script from its own address (the boot server mints its install token there, as for a real node), then runs the
installer's ``network`` and ``pull_image`` under busybox sh; all hosts start on one signal. Then the same hosts
pull the same tree from an rsync daemon on the head (``rsync -aH --numeric-ids rsync://HEAD/image/``), again all
at once. Reported per system: aggregate MB/s (N x tree bytes / wall time from the signal to the last node's end),
the slowest node's time, and the server's CPU (its process and waited-for children: tar streams, rsync's
per-connection processes) over that wall time; every node's tree is compared file by file with the source.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import haoscar
from haoscar.commands.apply import apply_spec
from haoscar.commands.wiring import open_cluster_database
from haoscar.errors import UserError
from haoscar.lab.lab import Lab
from haoscar.provision.bootserver_limits import BootLimits
from haoscar.provision.images import ImageStore
from haoscar.provision.netboot_sync import netboot_sync
from haoscar.scenarios.bench.install_fetch import (
    RSYNC_ARGS,
    Entry,
    RsyncDaemon,
    TreeFacts,
    busybox_path,
    cpu_seconds,
    differences,
    installer_script,
    manifest,
    rsync_script,
    run_together,
    summary,
    synthetic_tree,
)
from haoscar.scenarios.bench.shipped import git_commit
from haoscar.spec import ClusterSpec

HEAD, HEAD_IP, PORT, IMAGE = "head1", "198.18.0.1", 8470, "benchimage"
HEAD_STATE = "/var/lib/haoscar"
MAX_NODES = 500


def fanout_spec(nodes: int) -> ClusterSpec:
    """Two heads (the spec needs both; only head1 serves) and ``nodes`` compute clients with MACs."""
    if not 1 <= nodes <= MAX_NODES:
        raise UserError(f"nodes: {nodes} is out of range; give 1-{MAX_NODES}")
    names = [f"node{i:03d}" for i in range(1, nodes + 1)]
    head = {
        "private_interface": "eth0",
        "public_interface": "eth1",
        "netmask": "255.255.252.0",
        "alias_ip": "198.19.0.10",
    }
    return ClusterSpec.model_validate(
        {
            "cluster": {"name": "fanout"},
            "networks": {"private": {"subnet": "198.18.0.0/22"}, "public": {"subnet": "198.19.0.0/24"}},
            "heads": {
                "primary": {**head, "hostname": HEAD, "private_ip": HEAD_IP, "public_ip": "198.19.0.11"},
                "standby": {**head, "hostname": "head2", "private_ip": "198.18.0.2", "public_ip": "198.19.0.12"},
            },
            "clients": [{"image": IMAGE, "base_name": "node", "count": nodes, "padding": 3, "start_ip": "198.18.1.1",
                         "netmask": "255.255.252.0",
                         "macs": {n: f"52:54:00:fa:{i >> 8:02x}:{i & 0xFF:02x}" for i, n in enumerate(names, 1)}}],
        }
    )  # fmt: skip


def _node_macs(spec: ClusterSpec) -> dict[str, str]:
    return dict(spec.clients[0].macs)


def _prepare_head(lab: Lab, spec: ClusterSpec, tree: Path) -> Path:
    """The image in the head's store (imported first, as `image import` before `spec apply`), the cluster in its
    database, its netboot files; returns the image's root."""
    state = lab.host_dir(HEAD) / HEAD_STATE.lstrip("/")
    store = ImageStore(state)
    store.import_tree(IMAGE, tree)
    db = open_cluster_database(state)
    try:
        apply_spec(db, spec)
        netboot_sync(db, state, reload=False)
    finally:
        db.close()
    return store.current_root(IMAGE)


def _start_bootserver(lab: Lab, log: Path, probe_host: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "haoscar", "--state-dir", HEAD_STATE, "netboot", "serve", "--bind", HEAD_IP,
            "--port", str(PORT)]  # fmt: skip
    with log.open("wb") as out:
        server = lab.popen(HEAD, argv, stdout=out, stderr=out)
    wait = f"for i in $(seq 100); do wget -q -O /dev/null http://{HEAD_IP}:{PORT}/boot.ipxe && exit 0; sleep 0.2; done"
    if lab.exec(probe_host, ["busybox", "sh", "-c", wait + "; exit 1"], timeout=60, check=False).returncode != 0:
        server.terminate()
        raise UserError(f"the boot server did not answer: {log.read_text()[-500:]}")
    return server


def _round(
    lab: Lab, *, scripts: dict[str, str], server_pid: int, nbytes: int, expected: dict[str, Entry], targets: Path
) -> dict[str, Any]:
    """One transfer round: every host at once; the server's CPU over the round; every tree verified, then removed."""
    before = cpu_seconds(server_pid)
    pulls, wall = run_together(lab, scripts)
    time.sleep(0.5)  # a child the server has not reaped yet is not in its children's CPU time
    after = cpu_seconds(server_pid)
    own, children = after[0] - before[0], after[1] - before[1]
    result = summary(pulls, wall, nbytes)
    bad: dict[str, list[str]] = {}
    for host in scripts:
        problems = differences(expected, targets / host)
        if problems:
            bad[host] = problems
        shutil.rmtree(targets / host, ignore_errors=True)
    result.update(
        {
            "nodes_verified": len(scripts) - len(bad),
            "unverified": bad,
            "per_node_s": {h: None if p.seconds is None else round(p.seconds, 3) for h, p in pulls.items()},
            "server_cpu_s": round(own + children, 2),
            "server_own_cpu_s": round(own, 2),
            "server_children_cpu_s": round(children, 2),
            "server_cpu_pct_of_one_core": round(100 * (own + children) / wall, 1) if wall > 0 else None,
            "server_cpu_ms_per_mb": _per_mb(own + children, result["nodes_done"] * nbytes),
            "clients_cpu_ms_per_mb": _per_mb(result["clients_cpu_s"], result["nodes_done"] * nbytes),
        }
    )
    return result


def _per_mb(seconds: float | None, nbytes: int) -> float | None:
    return round(seconds * 1000 / (nbytes / 1e6), 2) if seconds is not None and nbytes else None


def _config(nodes: int, facts: TreeFacts, targets: Path, lab_up_s: float) -> dict[str, Any]:
    rsync = subprocess.run(["rsync", "--version"], capture_output=True, text=True, check=False).stdout.split("\n")[0]
    return {
        "nodes": nodes,
        "image": facts.as_dict(),
        "haoscar_path": "the installer's own fetch: install.sh (HAOSCAR_LIB=1) under busybox sh, `network` (plan by "
        "MAC) and `pull_image` (tar stream over HTTP from `haoscar netboot serve`, unpacked and SHA-256-checked "
        "against the plan, progress reported to the head); install token from the node's iPXE script asked for "
        "from its own address",
        "rsync_path": f"rsync daemon on the head (rsync://), clients run `rsync {RSYNC_ARGS}`, as SystemImager's "
        f"nodes pulled; {rsync}",
        "bootserver_limits": BootLimits().as_dict(),
        "targets": f"each host unpacks into its own directory under {targets} "
        f"({'tmpfs' if str(targets).startswith('/dev/shm') else 'disk'}: {nodes} real nodes write {nodes} disks, "
        "here they would share one)",
        "timing": "client side: from one start signal to each host's own end; aggregate = nodes x image bytes / "
        "wall time to the last host",
        "server_cpu": "utime + stime of the server process and its waited-for children over the round's wall time",
        "clients_cpu": "user + system CPU of each host's script and its tools (the shell's `times`), summed",
        "bound": "the lab's hosts share this machine's cores with the server, so the aggregate is bounded by the "
        "clients' CPU too (clients_cpu_s), which real nodes each bring their own of; server_cpu_ms_per_mb is the "
        "figure that carries over to a real head",
        "lab_up_s": round(lab_up_s, 2),
        "cores": os.cpu_count(),
        "haoscar_version": haoscar.__version__,
        "git_commit": git_commit(),
    }


def run_bench(nodes: int) -> dict[str, Any]:
    """Build the lab, measure haoscar then rsync, always take the lab down."""
    from haoscar.scenarios.lab_fixtures import unique_lab_name

    spec = fanout_spec(nodes)
    work = Path(tempfile.mkdtemp(prefix="haoscar-bench-fanout-"))
    targets = Path(tempfile.mkdtemp(prefix="haoscar-fanout-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    load_before = os.getloadavg()
    started = time.monotonic()
    lab = Lab.up(spec, unique_lab_name("if"), work / "labstate")
    lab_up_s = time.monotonic() - started
    server: subprocess.Popen[bytes] | None = None
    daemon: RsyncDaemon | None = None
    try:
        facts = synthetic_tree(work / "tree")
        root = _prepare_head(lab, spec, work / "tree")
        expected = manifest(root)  # also reads the tree into the page cache for both systems
        macs = _node_macs(spec)
        server = _start_bootserver(lab, work / "bootserver.log", next(iter(macs)))
        path = busybox_path(work / "bin")
        url = f"http://{HEAD_IP}:{PORT}"
        scripts = {h: f"export PATH={path}\n" + installer_script(url, m, targets / h) for h, m in macs.items()}
        haoscar_round = _round(
            lab, scripts=scripts, server_pid=server.pid, nbytes=facts.bytes, expected=expected, targets=targets
        )
        daemon = RsyncDaemon(lab, HEAD, HEAD_IP, root, work)
        daemon.wait_ready(lab, next(iter(macs)))
        scripts = {h: rsync_script(daemon.url, targets / h) for h in macs}
        rsync_round = _round(
            lab, scripts=scripts, server_pid=daemon.proc.pid, nbytes=facts.bytes, expected=expected, targets=targets
        )
    finally:
        for proc in (server, daemon.proc if daemon else None):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        lab.down()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(targets, ignore_errors=True)
    config = _config(nodes, facts, targets, lab_up_s)
    return _report(nodes, facts=facts, ours=haoscar_round, rsync=rsync_round, config=config, load_before=load_before)


def _report(
    nodes: int,
    *,
    facts: TreeFacts,
    ours: dict[str, Any],
    rsync: dict[str, Any],
    config: dict[str, Any],
    load_before: tuple[float, float, float],
) -> dict[str, Any]:
    def ratio(a: Any, b: Any) -> float | None:
        return round(a / b, 3) if isinstance(a, float | int) and isinstance(b, float | int) and b else None

    return {
        "nodes": nodes,
        "image_mb": round(facts.bytes / 1e6, 2),
        "image_files": facts.files,
        "haoscar_aggregate_mb_per_s": ours["aggregate_mb_per_s"],
        "haoscar_slowest_node_s": ours["slowest_node_s"],
        "haoscar_server_cpu_pct": ours["server_cpu_pct_of_one_core"],
        "haoscar_server_cpu_ms_per_mb": ours["server_cpu_ms_per_mb"],
        "rsync_aggregate_mb_per_s": rsync["aggregate_mb_per_s"],
        "rsync_slowest_node_s": rsync["slowest_node_s"],
        "rsync_server_cpu_pct": rsync["server_cpu_pct_of_one_core"],
        "rsync_server_cpu_ms_per_mb": rsync["server_cpu_ms_per_mb"],
        "haoscar_vs_rsync_throughput": ratio(ours["aggregate_mb_per_s"], rsync["aggregate_mb_per_s"]),
        "all_nodes_verified": ours["nodes_verified"] == nodes and rsync["nodes_verified"] == nodes,
        "haoscar": ours,
        "rsync": rsync,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "config": config,
    }
