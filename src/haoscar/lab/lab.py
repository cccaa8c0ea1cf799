"""``Lab``: a named virtual cluster of small containers on bridged networks, with fault injection.

Each host is a network namespace (named, so ``ip netns`` and pyroute2 find it) plus mount, UTS and PID namespaces
held by a tiny init (``hostinit.py``). The host's private directories under ``state_dir/labs/NAME/hosts/HOST/`` are
bound over /home, /etc/haoscar, /var/lib/haoscar, /srv and /run inside it; /etc, /usr, /var/lib... are copy-on-write
overlays of the machine's (lab/hostfs.py). One switch namespace holds a bridge per
network; veth pairs connect hosts to bridges. The layout is saved as JSON, so any process can ``Lab.open`` it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from haoscar.errors import NeedsRoot, NotFound, UserError
from haoscar.lab import bmc, faults, hostfs, netlink, nfs_mounts, procs
from haoscar.lab.hostfs import PRIVATE_DIRS
from haoscar.lab.layout import LabHost, LabInterface, LabLayout, Partition, Role, layout_from_spec
from haoscar.lab.names import NETNS_DIR, check_lab_name, netns_prefix
from haoscar.lab.nsenter import ns_inode, popen_in, reap_spawned
from haoscar.lab.status import LabStatus, lab_status
from haoscar.spec import ClusterSpec, load_spec

INIT_READY_TIMEOUT = 30.0
_HOSTINIT = Path(__file__).with_name("hostinit.py")


def require_root(what: str = "the lab") -> None:
    if os.geteuid() != 0:
        raise NeedsRoot(f"{what} needs root (network namespaces, netlink, mounts); run it as root, e.g. with sudo")


def labs_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "labs"


def known_labs(state_dir: Path) -> list[str]:
    base = labs_dir(state_dir)
    return sorted(p.parent.name for p in base.glob("*/lab.json")) if base.is_dir() else []


def _system_python() -> str:
    # The init needs only the standard library; the system interpreter starts faster than a venv's.
    return "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


class Lab:
    """A running lab. Create one with ``Lab.up``; reach an existing one with ``Lab.open``."""

    def __init__(self, layout: LabLayout, state_dir: Path) -> None:
        self.layout = layout
        self.state_dir = Path(state_dir)
        self.dir = labs_dir(self.state_dir) / layout.name
        self._starters: dict[str, subprocess.Popen[bytes]] = {}

    # --- life cycle --------------------------------------------------------------------------------------------
    @classmethod
    def up(cls, spec: ClusterSpec | Path | str, name: str = "lab", state_dir: Path | str | None = None) -> Lab:
        """Build the lab of ``spec`` (a spec or a spec file) and start every host. On failure nothing is left."""
        require_root()
        check_lab_name(name)
        state = Path(state_dir) if state_dir is not None else _default_state_dir()
        cluster = spec if isinstance(spec, ClusterSpec) else load_spec(spec)
        layout = layout_from_spec(cluster, name)
        lab = cls(layout, state)
        if (lab.dir / "lab.json").exists() or netlink.list_netns(netns_prefix(name)):
            raise UserError(f"lab {name} is already up; run `haoscar lab down --name {name}` first or pick --name")
        lab.dir.mkdir(parents=True, exist_ok=True)
        with lab._lock():
            layout.save(lab._layout_file)  # from now on `down` can find whatever exists
            try:
                lab._build(list(layout.hosts.values()))
            except BaseException:
                lab._teardown()
                raise
            layout.save(lab._layout_file)
        return lab

    @classmethod
    def open(cls, name: str, state_dir: Path | str | None = None) -> Lab:
        check_lab_name(name)
        state = Path(state_dir) if state_dir is not None else _default_state_dir()
        path = labs_dir(state) / name / "lab.json"
        if not path.exists():
            known = ", ".join(known_labs(state)) or "none"
            raise NotFound(
                f"no lab {name!r} under {state}; labs that are up: {known} (start one with `haoscar lab up`)"
            )
        return cls(LabLayout.load(path), state)

    def down(self) -> None:
        """Remove every namespace, link, process and file of the lab. Safe to run twice, and on a half-built lab."""
        require_root()
        with self._lock():
            self._teardown()

    # --- hosts -------------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.layout.name

    @property
    def hosts(self) -> dict[str, LabHost]:
        return self.layout.hosts

    def host(self, name: str) -> LabHost:
        return self.layout.host(name)

    def netns(self, host: str) -> str:
        return self.host(host).netns

    def netns_path(self, host: str) -> str:
        return f"{NETNS_DIR}/{self.netns(host)}"

    def host_dir(self, host: str) -> Path:
        """The host's private tree on the root file system: ``host_dir(h) / "var/lib/haoscar"`` is its state."""
        self.host(host)
        return self.dir / "hosts" / host

    def exec(
        self,
        host: str,
        argv: Sequence[str],
        *,
        timeout: float = 60.0,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside ``host`` and wait for it; raises CalledProcessError on failure when ``check``."""
        proc = self.popen(
            host,
            argv,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        result = subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
        if check:
            result.check_returncode()
        return result

    def popen(self, host: str, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` as a process of ``host`` (it dies with the host on a crash)."""
        record = self._running(host)
        assert record.init_pid is not None
        try:
            return popen_in(record.init_pid, argv, **popen_kwargs)
        except FileNotFoundError:
            raise UserError(f"{argv[0]!r}: no such program in host {host}") from None

    def add_host(self, name: str, interfaces: Sequence[LabInterface], role: Role = "extra") -> LabHost:
        """Add a host after ``up`` (e.g. a DHCP client with a chosen MAC and no address)."""
        require_root()
        with self._lock():
            record = self.layout.new_host(name, role, [LabInterface(**vars(i)) for i in interfaces])
            self.layout.save(self._layout_file)
            self._build([record], switch=False)
            self.layout.save(self._layout_file)
        return record

    def add_tap(self, network: str, name: str) -> str:
        """A tap device in the switch namespace on ``network``'s bridge, for a qemu VM (run qemu in the switch ns)."""
        require_root()
        if not 1 <= len(name) <= 15:
            raise UserError(f"tap name {name!r} must be 1-15 characters")
        with self._lock():
            self.layout.bridge(network)
            netlink.add_tap(self.layout, network, name)
            self.layout.taps[name] = network
            self.layout.save(self._layout_file)
        return name

    def mount_nfs(self, host: str, server: str, export: str, mountpoint: str) -> int:
        """A userspace NFSv4 mount in ``host`` (lab/nfs_mounts.py); returns its pid. ``down`` unmounts it."""
        return nfs_mounts.mount(self, host, server, export, mountpoint)

    def unmount_nfs(self, host: str, mountpoint: str) -> None:
        nfs_mounts.unmount(self, host, mountpoint)

    @property
    def switch_netns(self) -> str:
        return self.layout.switch_netns

    # --- faults ------------------------------------------------------------------------------------------------
    def crash(self, host: str) -> None:
        """A power loss: SIGKILL every process of the host and set its links down."""
        require_root()
        with self._lock():
            record = self.host(host)
            if record.state == "crashed":
                return
            self._kill_host(record)
            netlink.set_links(record, up=False)
            record.state = "crashed"
            record.init_pid = record.pidns = record.starter_pid = None
            record.links_down_by_freeze = False
            self.layout.save(self._layout_file)

    def restore(self, host: str) -> None:
        """A boot after a crash: links up, exactly the spec's addresses, /run emptied, a fresh init."""
        require_root()
        with self._lock():
            record = self.host(host)
            if record.state != "crashed":
                raise UserError(f"host {host} is {record.state}, not crashed; only a crashed host can be restored")
            self._start([record])
            self.layout.save(self._layout_file)

    def link(self, host: str, iface: str, up: bool) -> None:
        require_root()
        with self._lock():
            record = self.host(host)
            record.interface(iface)
            netlink.set_links(record, up=up, names=[iface])

    def partition(self, a: str, b: str, network: str | None = None) -> None:
        """Cut ``a`` from ``b`` (on one network, or on every network they share) in both directions."""
        require_root()
        with self._lock():
            first, second = self.host(a), self.host(b)
            if a == b:
                raise UserError(f"cannot partition {a} from itself; name two different hosts")
            shared = {i.network for i in first.interfaces} & {i.network for i in second.interfaces}
            if network is not None:
                self.layout.bridge(network)
                if network not in shared:
                    raise UserError(f"{a} and {b} do not share network {network}; they share: {_names(shared)}")
            elif not shared:
                raise UserError(f"{a} and {b} share no network, so they are already apart")
            self.layout.partitions.append(Partition(a, b, network))
            self._apply_faults([a, b])

    def heal(self) -> None:
        """Remove every partition and every packet loss."""
        require_root()
        with self._lock():
            touched = {p.a for p in self.layout.partitions} | {p.b for p in self.layout.partitions}
            touched |= set(self.layout.losses)
            self.layout.partitions.clear()
            self.layout.losses.clear()
            self._apply_faults(sorted(touched))

    def loss(self, host: str, iface: str, percent: int) -> None:
        """Drop ``percent`` % of the frames in and out of ``iface`` at random (0 removes the loss)."""
        require_root()
        faults.check_percent(percent)
        with self._lock():
            self.host(host).interface(iface)
            per_host = self.layout.losses.setdefault(host, {})
            if percent:
                per_host[iface] = percent
            else:
                per_host.pop(iface, None)
            if not per_host:
                del self.layout.losses[host]
            self._apply_faults([host])

    def freeze(self, host: str, links: bool = False) -> None:
        """SIGSTOP every process of the host (a paused VM); with ``links`` its links go down as well."""
        require_root()
        with self._lock():
            record = self._running(host)
            procs.stop_until_stable(lambda: self._host_pids(record))
            if links:
                netlink.set_links(record, up=False)
            record.state = "frozen"
            record.links_down_by_freeze = links
            self.layout.save(self._layout_file)

    def thaw(self, host: str) -> None:
        require_root()
        with self._lock():
            record = self.host(host)
            if record.state != "frozen":
                raise UserError(f"host {host} is {record.state}, not frozen; `lab freeze {host}` first")
            if record.links_down_by_freeze:
                netlink.set_links(record, up=True)
            procs.signal_all(self._host_pids(record), signal.SIGCONT)
            record.state = "running"
            record.links_down_by_freeze = False
            self.layout.save(self._layout_file)

    def status(self) -> LabStatus:
        return lab_status(self)

    def host_pids(self, host: str) -> set[int]:
        """The processes of a host as seen from the root namespace (empty once it crashed)."""
        return self._host_pids(self.host(host))

    def alive(self, host: str) -> bool:
        record = self.host(host)
        return record.init_pid is not None and ns_inode(record.init_pid, "pid") == record.pidns

    # --- internals ---------------------------------------------------------------------------------------------
    @property
    def _layout_file(self) -> Path:
        return self.dir / "lab.json"

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """One change at a time across processes; the layout is re-read so changes by others are kept."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            with contextlib.suppress(FileNotFoundError):
                self.layout = LabLayout.load(self._layout_file)
            yield

    def _running(self, host: str) -> LabHost:
        record = self.host(host)
        if record.state == "crashed" or not self.alive(host):
            raise UserError(f"host {host} of lab {self.name} is down (crashed); `haoscar lab restore {host}` boots it")
        if record.state == "frozen":
            raise UserError(f"host {host} of lab {self.name} is frozen; `haoscar lab thaw {host}` first")
        return record

    def _host_pids(self, record: LabHost) -> set[int]:
        netns_ino = procs.netns_inode(f"{NETNS_DIR}/{record.netns}")
        pidns = [record.pidns] if record.pidns is not None and self.alive(record.name) else []
        return procs.pids_in(pidns, [netns_ino] if netns_ino is not None else [])

    def _kill_host(self, record: LabHost) -> None:
        self._kill(self._host_pids(record), {record.starter_pid} - {None})
        self._reap(record.name)

    def _kill(self, pids: set[int], starters: set[int | None]) -> set[int]:
        """SIGKILL ``pids`` and wait until they are gone; returns the survivors.

        The ``unshare`` starters are spared at first: they reap their init and exit by themselves, whereas
        killing one first would leave its init's zombie to the machine's PID 1.
        """
        procs.signal_all(pids - starters, signal.SIGKILL)
        left = procs.wait_gone(pids, timeout=3.0, reap=self._reap_children)
        if left:
            procs.signal_all(left, signal.SIGKILL)
            left = procs.wait_gone(left, timeout=2.0, reap=self._reap_children)
        return left

    def _reap_children(self) -> None:
        reap_spawned()
        for starter in self._starters.values():
            starter.poll()

    def _reap(self, host: str) -> None:
        starter = self._starters.pop(host, None)
        if starter is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                starter.wait(timeout=2)

    def _build(self, hosts: list[LabHost], switch: bool = True) -> None:
        for mount_point in PRIVATE_DIRS:
            Path("/", mount_point).mkdir(parents=True, exist_ok=True)
        if switch:
            netlink.create_netns(self.layout.switch_netns)
        for host in hosts:
            netlink.create_netns(host.netns)
        if switch:
            netlink.build_switch(self.layout)
        netlink.plug_hosts(self.layout, hosts)
        self._start(hosts)

    def _start(self, hosts: list[LabHost]) -> None:
        """Configure each host's links and start its init; the inits start in parallel."""
        starting: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for host in hosts:
                netlink.configure_host(host)
                starting[host.name] = self._spawn_init(host)
            self._await_ready(starting)
        except BaseException:
            for proc in starting.values():
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            raise
        self._starters.update(starting)
        bmc.start_bmcs(self.dir, self.state_dir, self.name, hosts)  # ipmi_sim of each BMC host (lab/bmc.py)

    def _spawn_init(self, host: LabHost) -> subprocess.Popen[bytes]:
        tree = self.dir / "hosts" / host.name
        run = tree / "run"
        if run.exists():
            shutil.rmtree(run)  # /run is a tmpfs on a real machine: a boot starts it empty
        mounts = hostfs.host_mount_args(self.dir, self.name, host.name, host.role)
        log = open(self.dir / f"init-{host.name}.log", "ab")  # noqa: SIM115 - handed to the child
        argv = [
            "nsenter", f"--net={NETNS_DIR}/{host.netns}",
            "unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc", "--propagation", "private",
            _system_python(), "-I", "-S", str(_HOSTINIT), host.name, *mounts,
        ]  # fmt: skip
        try:
            # A session of its own: a Ctrl-C in the terminal that ran `lab up` must not power the hosts off.
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, start_new_session=True
            )
        finally:
            log.close()

    def _await_ready(self, starting: dict[str, subprocess.Popen[bytes]]) -> None:
        deadline = time.monotonic() + INIT_READY_TIMEOUT
        with selectors.DefaultSelector() as selector:
            for name, proc in starting.items():
                assert proc.stdout is not None
                selector.register(proc.stdout, selectors.EVENT_READ, name)
            pending = set(starting)
            while pending:
                remaining = deadline - time.monotonic()
                events = selector.select(timeout=max(remaining, 0))
                if not events:
                    raise RuntimeError(f"lab hosts did not start within {INIT_READY_TIMEOUT:g} s: {_names(pending)}")
                for key, _ in events:
                    name = key.data
                    proc = starting[name]
                    assert proc.stdout is not None
                    line = proc.stdout.readline()
                    selector.unregister(proc.stdout)
                    proc.stdout.close()
                    pending.discard(name)
                    if line.strip() != b"ready":
                        log = self.dir / f"init-{name}.log"
                        raise RuntimeError(f"host {name} failed to start: {log.read_text().strip()[-500:]}")
                    self._record_init(self.host(name), proc.pid)

    def _record_init(self, host: LabHost, starter_pid: int) -> None:
        children = Path(f"/proc/{starter_pid}/task/{starter_pid}/children").read_text().split()
        if len(children) != 1:
            raise RuntimeError(f"host {host.name}: expected one init process under {starter_pid}, found {children}")
        host.init_pid = int(children[0])
        host.pidns = ns_inode(host.init_pid, "pid")
        host.starter_pid = starter_pid
        host.state = "running"
        host.links_down_by_freeze = False

    def _apply_faults(self, hosts: Sequence[str]) -> None:
        for name in hosts:
            faults.apply(self.netns(name), faults.render(faults.host_rules(self.layout, name)))
        self.layout.save(self._layout_file)

    def _teardown(self) -> None:
        prefix = netns_prefix(self.name)
        spaces = set(netlink.list_netns(prefix)) | {h.netns for h in self.hosts.values()}
        spaces.add(self.layout.switch_netns)
        net_inodes = {ino for s in spaces if (ino := procs.netns_inode(f"{NETNS_DIR}/{s}")) is not None}
        pid_inodes = {h.pidns for h in self.hosts.values() if h.pidns is not None and self.alive(h.name)}
        nfs_mounts.unmount_all(self)
        pids = procs.pids_in(pid_inodes, net_inodes)
        left = self._kill(pids, {h.starter_pid for h in self.hosts.values()})
        for host in list(self._starters):
            self._reap(host)
        for space in spaces:
            netlink.remove_netns(space)
        if left:
            raise RuntimeError(f"lab {self.name}: processes survived SIGKILL: {sorted(left)}")
        hostfs.remove_cow(self.dir, self.name)
        hostfs.unmount_all_under(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)


def down_lab(name: str, state_dir: Path | str | None = None) -> bool:
    """Take lab ``name`` down if anything of it exists; False when there was nothing to remove."""
    require_root()
    check_lab_name(name)
    state = Path(state_dir) if state_dir is not None else _default_state_dir()
    try:
        lab = Lab.open(name, state)
    except NotFound:
        leftovers = netlink.list_netns(netns_prefix(name))
        if not leftovers and not (labs_dir(state) / name).exists():
            return False
        # A lab whose layout was never written (killed during `up`): sweep what carries its name.
        lab = Lab(LabLayout(name, f"{netns_prefix(name)}_switch", {}, {}), state)
    lab.down()
    return True


def _names(items: Any) -> str:
    return ", ".join(sorted(items)) or "none"


def _default_state_dir() -> Path:
    from haoscar.paths import state_dir

    return state_dir()
