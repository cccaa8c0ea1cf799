"""The haoscar boot server: iPXE scripts by MAC, kernels and initrds, and node records over HTTP (aiohttp).

- ``/boot.ipxe``: the entry script every iPXE client is sent to by DHCP; it chains to the client's own script.
- ``/boot/{mac}.ipxe``: the node's script written by ``netboot sync`` (404 for a MAC no node owns).
- ``/files/...``: kernels and initrds from ``STATE/netboot/boot/`` (nothing outside it).
- ``/node/{mac}``: the node's record as JSON, for the installer (needs the node's install token).
- ``/install/...``: the network installer's plan, reports and image stream (``install_http``; each needs the
  node's install token); ``/files/IMAGE/vmlinuz`` falls back to ``/files/installer/`` (``netboot build-installer``).

A netboot node's script, asked for from the address the cluster gave that node, carries a fresh install token on
the installer's kernel command line (``install_tokens``); asked for from anywhere else it carries none.

It binds only the addresses it is given (the head's private address), never all interfaces, and every connection
passes its limits (``bootserver_limits``, ``bootserver_gate``): connection caps, idle and header deadlines, size
limits, a short shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
from pathlib import Path

from aiohttp import web
from sqlalchemy import select

from haoscar.db.models import Image, Interface, Network, Node
from haoscar.errors import FieldError, UserError
from haoscar.provision import install_tokens
from haoscar.provision.bootserver_gate import Gate, http_logger
from haoscar.provision.bootserver_limits import BootLimits
from haoscar.provision.install_http import ACCOUNTS_KEY, LIMITS_KEY, add_install_routes, authorize
from haoscar.provision.install_plan import AccountsScript
from haoscar.provision.install_states import InstallState, set_install_state
from haoscar.provision.installer_build import INSTALLER_DIR
from haoscar.provision.ipxe import INITRD, KERNEL
from haoscar.provision.netboot_files import NetbootPaths
from haoscar.provision.netboot_snapshot import Database
from haoscar.spec.types import parse_mac

DB_KEY = web.AppKey("db", Database)
PATHS_KEY = web.AppKey("paths", NetbootPaths)
IPXE_TYPE = "text/plain"


def _mac_or_400(text: str) -> str:
    try:
        return parse_mac(text)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"{exc}\n") from None


def _node_by_mac(db: Database, mac: str) -> dict[str, object] | None:
    with db.session() as session:
        row = session.execute(
            select(
                Node.name,
                Node.domain,
                Node.role,
                Node.boot_mode,
                Node.install_state,
                Image.name,
                Interface.name,
                Interface.ip,
                Interface.prefix,
                Interface.network,
            )
            .join(Interface, Interface.node_id == Node.id)
            .outerjoin(Image, Image.id == Node.image_id)
            .where(Interface.mac == mac)
        ).first()
        if row is None:
            return None
        gateway = session.execute(select(Network.gateway).where(Network.name == row[9])).scalar_one_or_none()
    name, domain, role, boot_mode, install_state, image, ifname, ip, prefix, network = row
    netmask = str(ipaddress.IPv4Network(f"0.0.0.0/{prefix}").netmask)
    return {
        "name": name,
        "fqdn": f"{name}.{domain}",
        "domain": domain,
        "role": role,
        "boot_mode": boot_mode,
        "install_state": install_state,
        "image": image,
        "interface": {"name": ifname, "network": network, "mac": mac, "ip": ip, "prefix": prefix, "netmask": netmask},
        "gateway": gateway,
    }


async def entry_script(request: web.Request) -> web.StreamResponse:
    path = request.app[PATHS_KEY].entry_script
    if not path.exists():
        raise web.HTTPNotFound(text="no entry script yet; run haoscar netboot sync\n")
    return web.Response(text=path.read_text(), content_type=IPXE_TYPE)


async def node_script(request: web.Request) -> web.StreamResponse:
    mac = _mac_or_400(request.match_info["mac"])
    node = _node_by_mac(request.app[DB_KEY], mac)
    if node is None:
        raise web.HTTPNotFound(text=f"no node has MAC {mac}; assign it with haoscar mac assign NODE {mac}\n")
    path = request.app[PATHS_KEY].ipxe_file(str(node["name"]))
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise web.HTTPNotFound(text=f"no iPXE script for {node['name']}; run haoscar netboot sync\n") from None
    if node["boot_mode"] == "netboot" and node["image"]:
        if request.remote == _ip(node):
            _mark_netbooting(request.app[DB_KEY], str(node["name"]))
            text = with_token(text, install_tokens.mint(request.app[DB_KEY], str(node["name"])))
        else:
            print(f"script of {node['name']} asked for from {request.remote}, not {_ip(node)}: no token", flush=True)
    return web.Response(text=text, content_type=IPXE_TYPE)


def _ip(node: dict[str, object]) -> str:
    interface = node["interface"]
    assert isinstance(interface, dict)
    return str(interface["ip"])


def with_token(script: str, token: str) -> str:
    """The script with ``haoscar.token=TOKEN`` added to its ``kernel`` line (the installer's command line)."""
    return "".join(
        f"{line.rstrip(chr(10))} haoscar.token={token}\n" if line.startswith("kernel ") else line
        for line in script.splitlines(keepends=True)
    )


def _mark_netbooting(db: Database, name: str) -> None:
    """Install state ``netboot``: the node fetched its iPXE script and is network-booting into the installer,
    which has not reported yet (docs/install.md, install states)."""
    with db.session() as session:
        row = session.scalar(select(Node).where(Node.name == name))
        if row is not None and row.install_state != InstallState.NETBOOT:
            set_install_state(row, InstallState.NETBOOT)
            row.install_detail = ""


async def node_record(request: web.Request) -> web.StreamResponse:
    mac = _mac_or_400(request.match_info["mac"])
    node = _node_by_mac(request.app[DB_KEY], mac)
    if node is None:
        raise web.HTTPNotFound(text=f"no node has MAC {mac}\n")
    try:
        authorize(request.app[DB_KEY], mac, request.headers.get(install_tokens.HEADER))
    except install_tokens.Forbidden:
        raise web.HTTPForbidden(text="forbidden: a valid install token for this node is required\n") from None
    return web.json_response(node)


async def boot_file(request: web.Request) -> web.StreamResponse:
    root = request.app[PATHS_KEY].boot_dir.resolve()
    relative = request.match_info["path"]
    target = (root / relative).resolve()
    # The installer's kernel and initrd serve every image that has none of its own (netboot build-installer).
    parts = relative.split("/")
    if len(parts) == 2 and parts[1] in (KERNEL, INITRD) and not target.is_file():
        target = (root / INSTALLER_DIR / parts[1]).resolve()
    # Refuse anything that leaves the boot directory (.., symlinks pointing out).
    if not target.is_relative_to(root) or not target.is_file():
        raise web.HTTPNotFound(text=f"no file {relative}\n")
    return web.FileResponse(target)


def make_app(
    db: Database,
    state_dir: Path,
    limits: BootLimits | None = None,
    gate: Gate | None = None,
    *,
    accounts: AccountsScript | None = None,
) -> web.Application:
    limits = limits or BootLimits()
    app = web.Application(client_max_size=limits.body_bytes, middlewares=[gate.middleware] if gate else [])
    app[LIMITS_KEY] = limits
    app[DB_KEY] = db
    app[PATHS_KEY] = NetbootPaths.under(state_dir)
    app.router.add_get("/boot.ipxe", entry_script)
    app.router.add_get("/boot/{mac}.ipxe", node_script)
    app.router.add_get("/node/{mac}", node_record)
    app.router.add_get("/files/{path:.+}", boot_file)
    add_install_routes(app, db, state_dir)
    if accounts is not None:
        app[ACCOUNTS_KEY] = accounts
    return app


def serve(
    db: Database,
    state_dir: Path,
    binds: list[str],
    port: int,
    limits: BootLimits | None = None,
    *,
    accounts: AccountsScript | None = None,
) -> None:
    """Run until SIGTERM or SIGINT, listening on ``binds`` only, within ``limits``."""
    for address in binds:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise FieldError(
                "binds", f"{address!r} is not an IP address; give the head's private IP, e.g. 198.18.0.1"
            ) from None
    asyncio.run(_run(db, state_dir, binds, port, limits or BootLimits(), accounts=accounts))


async def start(
    db: Database,
    state_dir: Path,
    binds: list[str],
    port: int,
    limits: BootLimits,
    *,
    accounts: AccountsScript | None = None,
) -> tuple[web.AppRunner, Gate]:
    """The boot server listening (stop it with ``gate.stop()`` then ``runner.cleanup()``)."""
    gate = Gate(limits)
    runner = web.AppRunner(
        make_app(db, state_dir, limits, gate, accounts=accounts),
        access_log=None,
        logger=http_logger(),
        keepalive_timeout=limits.idle_timeout,  # aiohttp starts it when a connection opens, too
        max_line_size=limits.header_bytes,
        max_field_size=limits.header_bytes,
        lingering_time=1.0,  # an unread body is drained for 1 s, not 10, before the connection closes
        shutdown_timeout=limits.shutdown_timeout,
    )
    await runner.setup()
    assert runner.server is not None
    try:
        await gate.start(runner.server, binds, port)
    except OSError as exc:
        await runner.cleanup()
        raise UserError(f"binds: cannot listen on {', '.join(binds)} port {port}: {exc.strerror}") from None
    return runner, gate


async def _run(
    db: Database, state_dir: Path, binds: list[str], port: int, limits: BootLimits, *, accounts: AccountsScript | None
) -> None:
    runner, gate = await start(db, state_dir, binds, port, limits, accounts=accounts)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        print(f"boot server on {', '.join(binds)} port {port}; limits {limits.as_dict()}", flush=True)
        await stop.wait()
    finally:
        gate.stop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):
                loop.remove_signal_handler(signum)
        await runner.cleanup()
