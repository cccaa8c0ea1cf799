"""NFS-Ganesha's configuration from the spec, the compute nodes' mounts, and the NULL RPC health check
(docs/nfs.md). The server itself runs only in lab hosts (tests/lab/test_nfs_failover.py)."""

from __future__ import annotations

import asyncio
import re
import struct
import subprocess
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from haoscar.provision.nfs_ganesha import GaneshaPaths, client_mounts, ganesha_argv, render_config
from haoscar.provision.nfs_ganesha_client import AGENT, AGENT_PATH, UNIT_PATH, fstab_lines, node_files
from haoscar.provision.nfs_ganesha_rpc import LAST_FRAGMENT, null_call, parse_reply, rpc_null
from haoscar.spec.models import ClusterSpec
from haoscar.spec.nfs_models import default_export_id

ALIAS = IPv4Address("198.18.0.3")
PATHS = GaneshaPaths.under(Path("/var/lib/haoscar"))


def spec_with(nfs: dict[str, Any] | None = None) -> ClusterSpec:
    head = {"private_interface": "eth0", "public_ip": "198.19.0.11", "alias_ip": "198.19.0.10"}
    head |= {"netmask": "255.255.255.0", "private_alias_ip": str(ALIAS)}
    raw: dict[str, Any] = {
        "cluster": {"name": "c"},
        "networks": {"private": {"subnet": "198.18.0.0/24"}, "public": {"subnet": "198.19.0.0/24"}},
        "heads": {
            "primary": {**head, "hostname": "head1", "private_ip": "198.18.0.1"},
            "standby": {**head, "hostname": "head2", "private_ip": "198.18.0.2", "public_ip": "198.19.0.12"},
        },
    }
    if nfs is not None:
        raw["nfs"] = nfs
    return ClusterSpec.model_validate(raw)


def block(text: str, name: str, index: int = 0) -> str:
    """The ``index``-th top-level block called ``name`` (with its nested blocks)."""
    starts = [m.start() for m in re.finditer(rf"^{name} \{{$", text, re.MULTILINE)]
    end = text.index("\n}\n", starts[index])
    return text[starts[index] : end + 3]


def test_the_server_listens_on_the_alias_only_over_nfsv4_tcp_with_limits() -> None:
    core = block(render_config(spec_with(), ALIAS, PATHS), "NFS_CORE_PARAM")
    assert "Bind_addr = 198.18.0.3;" in core and "0.0.0.0" not in core
    assert "NFS_Protocols = 4;" in core
    for line in ("Enable_UDP = false;", "Enable_NLM = false;", "Enable_RQUOTA = false;"):
        assert line in core
    assert "RPC_Max_Connections = 1024;" in core and "RPC_Idle_Timeout_S = 300;" in core
    assert "MaxRPCRecvBufferSize = 1114112;" in core


def test_replicated_storage_runs_graceless_with_recovery_and_files_in_the_state_dir() -> None:
    text = render_config(spec_with(), ALIAS, PATHS)
    v4 = block(text, "NFSV4")
    assert "Graceless = true;" in v4 and "Grace_Period" not in v4
    assert 'RecoveryRoot = "/var/lib/haoscar/nfs/recovery";' in v4 and "Lease_Lifetime = 10;" in v4
    argv = ganesha_argv("/usr/bin/ganesha.nfsd", PATHS)
    assert argv[:2] == ["/usr/bin/ganesha.nfsd", "-F"]
    assert argv[argv.index("-L") + 1] == "/var/lib/haoscar/nfs/ganesha.log"
    assert argv[argv.index("-p") + 1] == "/var/lib/haoscar/nfs/ganesha.pid"
    assert argv[argv.index("-f") + 1] == "/var/lib/haoscar/nfs/ganesha.conf"


def test_shared_storage_keeps_recovery_records_on_it_and_gives_a_grace_period() -> None:
    v4 = block(render_config(spec_with({"storage": "shared", "recovery_dir": "/srv/ha/nfs"}), ALIAS, PATHS), "NFSV4")
    assert "Graceless = false;" in v4 and "Grace_Period = 20;" in v4
    assert 'RecoveryRoot = "/srv/ha/nfs";' in v4


def test_each_export_is_open_to_the_private_subnet_with_root_squashed_and_a_stable_id() -> None:
    nfs = {"exports": [{"path": "/home"}, {"path": "/srv/data", "access": "ro", "squash": "none"}]}
    text = render_config(spec_with(nfs), ALIAS, PATHS)
    home, data = block(text, "EXPORT", 0), block(text, "EXPORT", 1)
    assert f"Export_Id = {default_export_id('/home')};" in home
    assert 'Path = "/home";' in home and 'Pseudo = "/home";' in home
    assert "Squash = root_squash;" in home and "Anonymous_Uid = 65534;" in home
    assert "Access_Type = None;" in home  # nobody outside the CLIENT block
    assert "Clients = 198.18.0.0/24;" in home and "Access_Type = RW;" in home and "Name = VFS;" in home
    assert "Squash = no_root_squash;" in data and "Access_Type = RO;" in data
    # the id of /home does not move when another export comes first
    reordered = render_config(spec_with({"exports": [{"path": "/srv/data"}, {"path": "/home"}]}), ALIAS, PATHS)
    assert block(reordered, "EXPORT", 1) == home
    assert "Clients = 198.18.0.0/24;" in block(text, "PSEUDOFS")


def test_compute_nodes_mount_every_export_hard_from_the_alias_or_the_nas() -> None:
    [home, data] = client_mounts(spec_with({"exports": [{"path": "/home"}, {"path": "/srv/d", "access": "ro"}]}))
    assert home.fstab_line().startswith("198.18.0.3:/home /home nfs4 rw,hard,")
    assert data.options.startswith("ro,hard,")
    assert home.url() == "nfs://198.18.0.3/home?version=4"
    [nas] = client_mounts(spec_with({"storage": "external", "server": "198.18.0.240"}))
    assert nas.fstab_line().startswith("198.18.0.240:/home /home nfs4 ")


def test_a_null_call_is_one_record_with_auth_none() -> None:
    call = null_call(7)
    marker, xid, kind, rpcvers, prog, vers, proc = struct.unpack(">7I", call[:28])
    assert marker == LAST_FRAGMENT | (len(call) - 4)
    assert (xid, kind, rpcvers, prog, vers, proc) == (7, 0, 2, 100003, 4, 0)


def reply(xid: int, accept: int, verifier: bytes = b"") -> bytes:
    return struct.pack(">5I", xid, 1, 0, 0, len(verifier)) + verifier + struct.pack(">I", accept)


def test_replies_are_read_strictly() -> None:
    assert parse_reply(7, reply(7, 0)) is None
    assert parse_reply(7, reply(7, 0, b"abcd")) is None
    assert parse_reply(8, reply(7, 0)) == "the reply is not for this call"
    assert parse_reply(7, reply(7, 2)) == "the server answered PROG_MISMATCH"
    assert parse_reply(7, struct.pack(">3I", 7, 1, 1)) == "the call was denied (MSG_DENIED)"
    assert parse_reply(7, reply(7, 0)[:14]) == "the accepted reply is cut short"


async def serve_once(answer: int | None) -> tuple[asyncio.Server, int]:
    """A one-shot RPC server on 127.0.0.1 that answers ``answer`` (None: closes without a word)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        marker = struct.unpack(">I", await reader.readexactly(4))[0]
        body = await reader.readexactly(marker & ~LAST_FRAGMENT)
        if answer is not None:
            out = reply(struct.unpack(">I", body[:4])[0], answer)
            writer.write(struct.pack(">I", LAST_FRAGMENT | len(out)) + out)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize(
    ("answer", "problem"),
    [(0, None), (2, "the server answered PROG_MISMATCH"), (None, "closed the connection before its NULL reply")],
)
def test_the_health_check_asks_the_server(answer: int | None, problem: str | None) -> None:
    async def scenario() -> str | None:
        server, port = await serve_once(answer)
        async with server:
            return await rpc_null("127.0.0.1", port, 2.0)

    found = asyncio.run(scenario())
    assert found == problem if problem is None else (found is not None and problem in found)


def test_the_health_check_reports_a_closed_port() -> None:
    async def scenario() -> str | None:
        server, port = await serve_once(0)
        server.close()
        await server.wait_closed()
        return await rpc_null("127.0.0.1", port, 2.0)

    found = asyncio.run(scenario())
    assert found is not None and found.startswith("cannot connect to 127.0.0.1:")


def test_replicated_storage_gives_nodes_the_stale_handle_agent_for_every_mount() -> None:
    nfs = {"exports": [{"path": "/home"}, {"path": "/srv/data"}]}
    files = node_files(spec_with(nfs))
    agent, mode = files[AGENT_PATH]
    assert mode == 0o755 and agent.startswith("#!/bin/sh\n") and "Stale file handle" in agent
    assert f"ExecStart={AGENT_PATH} /home /srv/data\n" in files[UNIT_PATH][0]
    assert fstab_lines(spec_with(nfs)).splitlines()[1].startswith("198.18.0.3:/srv/data /srv/data nfs4 rw,hard,")
    assert node_files(spec_with({"storage": "shared"})) == {}  # the same filesystem on both heads: handles hold


def test_every_key_written_is_one_the_installed_ganesha_knows() -> None:
    """A misspelt key would show only at run time, in a lab head's Ganesha log; here it fails at once. Keys are
    matched as Ganesha does, ignoring case, against the names compiled into its library and its VFS FSAL."""
    libraries = [
        *Path("/usr/lib/ganesha").glob("libganesha_nfsd.so*"),
        *Path("/usr/lib").glob("*/ganesha/libfsalvfs.so"),
    ]
    assert libraries, "install the Debian packages nfs-ganesha and nfs-ganesha-vfs"
    known = b"".join(path.read_bytes() for path in libraries).lower()
    shared = spec_with({"storage": "shared", "recovery_dir": "/srv/ha/nfs"})
    text = render_config(spec_with(), ALIAS, PATHS) + render_config(shared, ALIAS, PATHS)
    keys = set(re.findall(r"^\s*([A-Za-z_0-9]+) = ", text, re.MULTILINE))
    assert len(keys) > 30
    assert sorted(key for key in keys if key.lower().encode() not in known) == []


FAKE = {
    "stat": '#!/bin/sh\necho "stat $*" >> "$LOG"\ncase "$4" in /home/.) echo "$STAT_ANSWER" >&2; exit 1 ;; esac\n',
    "umount": '#!/bin/sh\necho "umount $*" >> "$LOG"\n',
    "mount": '#!/bin/sh\necho "mount $*" >> "$LOG"\n',
    "logger": '#!/bin/sh\necho "logger $*" >> "$LOG"\n',
}


@pytest.mark.parametrize(
    ("answer", "remounted"),
    [
        ("stat: cannot read file system information for '/home/.': Stale file handle", True),
        ("stat: cannot read file system information for '/home/.': Unknown error 521", True),
        ("stat: cannot read file system information for '/home/.': Input/output error", False),
    ],
)
def test_the_watch_agent_remounts_only_a_stale_nfs_mount(tmp_path: Path, answer: str, remounted: bool) -> None:
    """One pass of the agent with stand-ins for stat, mount, umount and logger, and a mount table where /home is
    NFS and /scratch is not: only a stale /home is remounted (lazily unmounted, then mounted from fstab)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in FAKE.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    agent = tmp_path / "agent"
    agent.write_text(AGENT)
    mounts = tmp_path / "mounts"
    mounts.write_text("198.18.0.3:/home /home nfs4 rw,hard 0 0\n/dev/sdb1 /scratch ext4 rw 0 0\n")
    log = tmp_path / "log"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LOG": str(log), "STAT_ANSWER": answer}
    env |= {"HAOSCAR_NFS_WATCH_MOUNTS": str(mounts), "HAOSCAR_NFS_WATCH_ONCE": "1"}
    subprocess.run(["/bin/sh", str(agent), "/home", "/scratch"], env=env, check=True, timeout=30)
    calls = log.read_text().splitlines()
    assert calls[0] == "stat -f -c %T /home/." and not any("/scratch" in call for call in calls)
    assert ("umount -l /home" in calls and "mount /home" in calls) == remounted
    assert any(call.startswith("logger -t haoscar-nfs-watch /home: ") for call in calls) == remounted
