"""Netlink work of a lab, done in-process with pyroute2: namespaces, bridges, veth pairs, links and addresses."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from pyroute2 import IPRoute, netns

from haoscar.lab.layout import LabHost, LabLayout
from haoscar.lab.names import NETNS_DIR, bridge_name
from haoscar.lab.nsenter import CLONE_NEWNET, setns

_libc = ctypes.CDLL(None, use_errno=True)


def create_netns(name: str) -> None:
    """A named network namespace, made by a short-lived thread (not pyroute2's forked helper: ~40x faster).

    ``unshare(CLONE_NEWNET)`` moves only the calling thread, whose namespace is then bound to the name."""
    if os.path.exists(f"{NETNS_DIR}/{name}"):
        return
    failure: list[BaseException] = []

    def make() -> None:
        try:
            if _libc.unshare(CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                raise OSError(code, f"unshare(CLONE_NEWNET): {os.strerror(code)}")
            netns._create(name, pid=f"self/task/{threading.get_native_id()}")
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=make, name=f"netns-{name}")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]


def remove_netns(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        netns.remove(name)


def list_netns(prefix: str) -> list[str]:
    return sorted(n for n in netns.listnetns() if n.startswith(prefix))


@contextmanager
def joined(namespace: str) -> Iterator[None]:
    """Run the body with the calling thread inside ``namespace`` (sockets and tun devices are created there)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(f"{NETNS_DIR}/{namespace}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(target, CLONE_NEWNET)
        finally:
            os.close(target)
        try:
            yield
        finally:
            setns(own, CLONE_NEWNET)
    finally:
        os.close(own)


@contextmanager
def rtnl(namespace: str) -> Iterator[Any]:
    """An RTNL socket inside ``namespace``. A socket stays in the namespace it was opened in, so the calling
    thread joins the namespace just to open it (no forked helper as with ``IPRoute(netns=...)``)."""
    with joined(namespace):
        # groups=0: no multicast subscription, we only send requests and read their answers.
        ipr = IPRoute(groups=0)
    try:
        yield ipr
    finally:
        ipr.close()


def _index(ipr: Any, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LookupError(f"no link {ifname}")
    return int(found[0])


def build_switch(layout: LabLayout) -> None:
    """One bridge per network in the switch namespace. STP stays off so ports forward at once."""
    with rtnl(layout.switch_netns) as ipr:
        ipr.link("set", index=_index(ipr, "lo"), state="up")
        for network in layout.networks:
            name = bridge_name(network)
            if not ipr.link_lookup(ifname=name):
                ipr.link("add", ifname=name, kind="bridge", br_stp_state=0, br_forward_delay=0)
            ipr.link("set", index=_index(ipr, name), state="up")


def plug_hosts(layout: LabLayout, hosts: Iterable[LabHost]) -> None:
    """A veth pair per host interface: one end on the network's bridge, the other in the host under its own name."""
    with rtnl(layout.switch_netns) as ipr:
        bridges = {n: _index(ipr, bridge_name(n)) for n in layout.networks}
        for host in hosts:
            for iface in host.interfaces:
                peer: dict[str, Any] = {"ifname": iface.name, "net_ns_fd": host.netns}
                if iface.mac:
                    peer["address"] = iface.mac
                try:
                    ipr.link("add", ifname=iface.port, kind="veth", peer=peer)
                except Exception as exc:  # pyroute2's NetlinkError; EEXIST means already plugged (idempotent)
                    if getattr(exc, "code", None) != errno.EEXIST:
                        raise
                ipr.link("set", index=_index(ipr, iface.port), master=bridges[iface.network], state="up")


def configure_host(host: LabHost, up: bool = True) -> None:
    """Exactly the layout's addresses on the host's interfaces: anything added at run time is flushed."""
    with rtnl(host.netns) as ipr:
        ipr.link("set", index=_index(ipr, "lo"), state="up")
        for iface in host.interfaces:
            index = _index(ipr, iface.name)
            # Remember the MAC the kernel chose: partitions match frames by it.
            iface.mac = ipr.get_links(index)[0].get_attr("IFLA_ADDRESS")
            ipr.flush_addr(index=index)
            if iface.ip is not None:
                ipr.addr("add", index=index, address=iface.ip, prefixlen=iface.prefix)
            ipr.link("set", index=index, state="up" if up else "down")


def set_links(host: LabHost, up: bool, names: Iterable[str] | None = None) -> None:
    wanted = set(names) if names is not None else {i.name for i in host.interfaces}
    with rtnl(host.netns) as ipr:
        for iface in host.interfaces:
            if iface.name in wanted:
                ipr.link("set", index=_index(ipr, iface.name), state="up" if up else "down")


def link_states(namespace: str) -> dict[str, bool]:
    """Interface name -> administratively up, for every link of a namespace but lo."""
    states: dict[str, bool] = {}
    with rtnl(namespace) as ipr:
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if name != "lo":
                states[name] = bool(link["flags"] & 1)
    return states


def add_tap(layout: LabLayout, network: str, name: str) -> None:
    # A tap is made with an ioctl on /dev/net/tun in the caller's namespace: so the thread stays in the switch
    # namespace for the whole call, or the tap would appear in the machine's own namespace.
    with joined(layout.switch_netns), rtnl(layout.switch_netns) as ipr:
        if not ipr.link_lookup(ifname=name):
            ipr.link("add", ifname=name, kind="tuntap", mode="tap")
        ipr.link("set", index=_index(ipr, name), master=_index(ipr, bridge_name(network)), state="up")
