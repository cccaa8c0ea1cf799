"""The boot server through aiohttp's test client: scripts by MAC, files, node records."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from haoscar.commands.apply import apply_spec
from haoscar.db.session import open_database
from haoscar.lab.defaults import default_spec
from haoscar.provision.bootserver import make_app
from haoscar.provision.install_tokens import HEADER, mint
from haoscar.provision.netboot_files import NetbootPaths
from haoscar.provision.netboot_macs import assign_macs
from haoscar.provision.netboot_sync import netboot_sync

Check = Callable[[TestClient], Awaitable[None]]  # type: ignore[type-arg]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("template")
    db = open_database(state)
    apply_spec(db, default_spec())
    assign_macs(db, [("node01", "52:54:00:aa:00:01", "test")])
    netboot_sync(db, state)
    db.close()
    return state


def run(state: Path, check: Check) -> None:
    async def main() -> None:
        db = open_database(state)
        client = TestClient(TestServer(make_app(db, state)))
        await client.start_server()
        try:
            await check(client)
        finally:
            await client.close()
            db.close()

    asyncio.run(main())


@pytest.fixture
def state(tmp_path: Path, template: Path) -> Path:
    shutil.copytree(template, tmp_path, dirs_exist_ok=True)
    return tmp_path


def test_node_script_by_mac_and_404_for_unknown(state: Path) -> None:
    async def check(client: TestClient) -> None:  # type: ignore[type-arg]
        response = await client.get("/boot/52:54:00:AA:00:01.ipxe")
        assert response.status == 200
        text = await response.text()
        assert text.startswith("#!ipxe") and "haoscar.node=node01" in text
        assert (await client.get("/boot/52:54:00:aa:00:99.ipxe")).status == 404
        assert (await client.get("/boot/nonsense.ipxe")).status == 400
        entry = await (await client.get("/boot.ipxe")).text()
        assert "/boot/${mac}.ipxe" in entry

    run(state, check)


def test_node_record_is_json_for_the_installer(state: Path) -> None:
    db = open_database(state)
    auth = {HEADER: mint(db, "node01")}  # what node01's iPXE script gives its installer
    db.close()

    async def check(client: TestClient) -> None:  # type: ignore[type-arg]
        response = await client.get("/node/52:54:00:aa:00:01", headers=auth)
        assert response.status == 200
        record = await response.json()
        assert record["name"] == "node01" and record["fqdn"] == "node01.lab.haoscar"
        assert record["image"] == "oscarimage" and record["boot_mode"] == "netboot"
        assert record["interface"]["ip"] == "198.18.0.101" and record["interface"]["netmask"] == "255.255.255.0"
        assert (await client.get("/node/52:54:00:aa:00:77")).status == 404

    run(state, check)


def test_files_are_served_from_the_boot_dir_only(state: Path) -> None:
    boot = NetbootPaths.under(state).boot_dir / "oscarimage"
    boot.mkdir(parents=True)
    (boot / "vmlinuz").write_bytes(b"\x7fkernel" * 100)
    (state / "secret").write_text("no")
    (boot / "escape").symlink_to(state / "secret")

    async def check(client: TestClient) -> None:  # type: ignore[type-arg]
        response = await client.get("/files/oscarimage/vmlinuz")
        assert response.status == 200 and await response.read() == b"\x7fkernel" * 100
        assert (await client.get("/files/oscarimage/missing")).status == 404
        assert (await client.get("/files/oscarimage/escape")).status == 404
        assert (await client.get("/files/../../secret")).status == 404
        assert (await client.get("/files/%2e%2e/%2e%2e/secret")).status == 404

    run(state, check)
