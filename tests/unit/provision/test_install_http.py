"""The boot server's installer endpoints through aiohttp's test client: the plan as sh assignments, reports,
the image tar stream, and the installer kernel served for every image."""

from __future__ import annotations

import asyncio
import io
import shutil
import subprocess
import tarfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from haoscar.commands.apply import apply_spec
from haoscar.db.models import Node
from haoscar.db.session import open_database
from haoscar.lab.defaults import default_spec
from haoscar.provision.bootserver import make_app
from haoscar.provision.images import ImageStore
from haoscar.provision.install_tokens import HEADER, mint
from haoscar.provision.netboot_files import NetbootPaths
from haoscar.provision.netboot_macs import assign_macs

Check = Callable[[TestClient], Awaitable[None]]  # type: ignore[type-arg]
MAC = "52:54:00:aa:00:01"
MAC2 = "52:54:00:aa:00:02"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("template")
    db = open_database(state)
    apply_spec(db, default_spec())
    assign_macs(db, [("node01", MAC, "test"), ("head2", MAC2, "test")])
    db.close()
    tree = tmp_path_factory.mktemp("tree")
    (tree / "etc").mkdir()
    (tree / "etc" / "motd").write_text("hello from the image\n")
    (tree / "bin").mkdir()
    (tree / "bin" / "sh").symlink_to("busybox")
    ImageStore(state).import_tree("oscarimage", tree, post_install="shutdown")
    return state


@pytest.fixture
def state(tmp_path: Path, template: Path) -> Path:
    shutil.copytree(template, tmp_path, dirs_exist_ok=True, symlinks=True)
    return tmp_path


def tokens(state: Path) -> dict[str, dict[str, str]]:
    """Install tokens for node01 and head2 as their iPXE scripts would carry them, as request headers."""
    db = open_database(state)
    try:
        return {MAC: {HEADER: mint(db, "node01")}, MAC2: {HEADER: mint(db, "head2")}}
    finally:
        db.close()


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


def sourced(plan: str, *names: str) -> list[str]:
    """What sh sees after sourcing the plan (the installer does exactly this)."""
    script = plan + "\n" + "".join(f'printf "%s\\n" "${name}"\n' for name in names)
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout.splitlines()


def test_plan_for_a_known_mac_sources_in_sh(state: Path) -> None:
    auth = tokens(state)

    async def check(client: TestClient) -> None:  # type: ignore[type-arg]
        response = await client.get(f"/install/{MAC.upper()}/plan", headers=auth[MAC])
        assert response.status == 200
        plan = await response.text()
        values = sourced(plan, "NODE", "IP", "PREFIX", "IFNAME", "IMAGE", "IMAGE_OK", "POST_INSTALL", "IP_ASSIGNMENT")
        assert values == ["node01", "198.18.0.101", "24", "eth0", "oscarimage", "1", "shutdown", "static"]
        hosts = "\n".join(sourced(plan, "HOSTS"))
        assert "198.18.0.1\thead1.lab.haoscar\thead1" in hosts and "198.18.0.102\tnode02.lab.haoscar\tnode02" in hosts
        # head2's image (serverimage) is defined but not in the store: the plan says so instead of failing.
        missing = await (await client.get(f"/install/{MAC2}/plan", headers=auth[MAC2])).text()
        ok, error = sourced(missing, "IMAGE_OK", "IMAGE_ERROR")
        assert ok == "0" and error.startswith("image serverimage is missing on the server")
        assert (await client.get("/install/52:54:00:aa:00:77/plan")).status == 404
        assert (await client.get("/install/zz/plan")).status == 400

    run(state, check)


def test_reports_change_the_node_and_bad_ones_change_nothing(state: Path) -> None:
    auth = tokens(state)[MAC]

    async def check(client: TestClient) -> None:  # type: ignore[type-arg]
        node = {"stage": "node", "percent": "1"}
        assert (await client.post(f"/install/{MAC}/progress", data=node, headers=auth)).status == 200
        bad = await client.post(f"/install/{MAC}/progress", data={"stage": "image", "percent": "lots"}, headers=auth)
        assert bad.status == 400 and "not a number" in await bad.text()
        failed = {"stage": "disk", "reason": "disk too small: 16 MiB"}
        reply = await client.post(f"/install/{MAC}/failed", data=failed, headers=auth)
        assert reply.status == 200

    run(state, check)
    db = open_database(state)
    with db.session() as session:
        row = session.query(Node).filter_by(name="node01").one()
        assert (row.install_state, row.install_detail) == ("failed", "disk: disk too small: 16 MiB")
    db.close()


def test_image_streams_as_tar_and_a_missing_image_is_404(state: Path) -> None:
    auth = tokens(state)

    async def check(client: TestClient) -> None:  # type: ignore[type-arg]
        response = await client.get(f"/install/{MAC}/image.tar", headers=auth[MAC])
        assert response.status == 200
        with tarfile.open(fileobj=io.BytesIO(await response.read())) as archive:
            assert archive.extractfile("./etc/motd").read() == b"hello from the image\n"  # type: ignore[union-attr]
            assert archive.getmember("./bin/sh").linkname == "busybox"
        missing = await client.get(f"/install/{MAC2}/image.tar", headers=auth[MAC2])
        assert missing.status == 404 and "serverimage" in await missing.text()

    run(state, check)


def test_installer_kernel_is_served_for_every_image(state: Path) -> None:
    installer = NetbootPaths.under(state).boot_dir / "installer"
    installer.mkdir(parents=True)
    (installer / "vmlinuz").write_bytes(b"kernel")
    (installer / "initrd.img").write_bytes(b"initrd")

    async def check(client: TestClient) -> None:  # type: ignore[type-arg]
        assert await (await client.get("/files/oscarimage/vmlinuz")).read() == b"kernel"
        assert await (await client.get("/files/anyimage/initrd.img")).read() == b"initrd"
        assert (await client.get("/files/oscarimage/other")).status == 404

    run(state, check)
