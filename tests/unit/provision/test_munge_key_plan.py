"""The cluster's munge key reaches a node through its own install plan (only with that node's install token), never
through an image, and the installer writes it 0400, owned by the image's munge account (else root)."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import subprocess
import tarfile
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from haoscar.commands.apply import apply_spec
from haoscar.db.session import open_database
from haoscar.lab.defaults import default_spec
from haoscar.provision.bootserver import make_app
from haoscar.provision.images import ImageStore
from haoscar.provision.install_http import MUNGE_KEY
from haoscar.provision.install_tokens import HEADER, mint
from haoscar.provision.installer_build import SCRIPTS_DIR
from haoscar.provision.netboot_macs import assign_macs

NODE01, NODE02 = "52:54:00:aa:00:01", "52:54:00:aa:00:02"
KEY = os.urandom(1024)


def plans_and_image(tmp_path: Path) -> dict[str, tuple[int, bytes]]:
    """What the boot server answers: node01's plan with its token, with node02's, with none; node01's image."""
    state = tmp_path / "state"
    state.mkdir()
    db = open_database(state)
    apply_spec(db, default_spec())
    assign_macs(db, [("node01", NODE01, "test"), ("node02", NODE02, "test")])
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "motd").write_text("hello\n")
    ImageStore(state).import_tree("oscarimage", tree, post_install="shutdown")
    key_path = tmp_path / "head" / "munge.key"
    key_path.parent.mkdir()
    key_path.write_bytes(KEY)
    own, other = {HEADER: mint(db, "node01")}, {HEADER: mint(db, "node02")}
    out: dict[str, tuple[int, bytes]] = {}

    async def main() -> None:
        app = make_app(db, state)
        app[MUNGE_KEY] = key_path
        client = TestClient(TestServer(app))
        await client.start_server()
        try:
            for label, mac, headers in (
                ("own", NODE01, own),
                ("other", NODE01, other),
                ("none", NODE01, {}),
                ("node02", NODE02, other),
            ):
                response = await client.get(f"/install/{mac}/plan", headers=headers)
                out[label] = (response.status, await response.read())
            image = await client.get(f"/install/{NODE01}/image.tar", headers=own)
            out["image"] = (image.status, await image.read())
        finally:
            await client.close()

    try:
        asyncio.run(main())
    finally:
        db.close()
    return out


def sourced(plan: bytes, name: str) -> str:
    script = plan.decode() + f'\nprintf "%s" "${name}"\n'
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout


def test_the_plan_carries_the_munge_key_only_with_the_nodes_own_token(tmp_path: Path) -> None:
    answers = plans_and_image(tmp_path)
    status, plan = answers["own"]
    assert status == 200 and base64.b64decode(sourced(plan, "MUNGE_KEY")) == KEY
    encoded = base64.b64encode(KEY)
    for label in ("other", "none"):  # another node's token, or none: refused, and the key is not in the answer
        status, body = answers[label]
        assert status == 403 and encoded not in body and KEY not in body
    status, plan = answers["node02"]  # node02 gets it in its own plan, with its own token
    assert status == 200 and base64.b64decode(sourced(plan, "MUNGE_KEY")) == KEY


def test_no_image_carries_the_munge_key(tmp_path: Path) -> None:
    status, stream = plans_and_image(tmp_path)["image"]
    assert status == 200 and KEY not in stream and base64.b64encode(KEY) not in stream
    with tarfile.open(fileobj=io.BytesIO(stream)) as archive:
        names = archive.getnames()
    assert "./etc/motd" in names and not any("munge" in name for name in names)


def install_key(target: Path, key: bytes) -> None:
    # The script sets TARGET itself when sourced; the plan's MUNGE_KEY comes from sourcing the plan.
    script = f'HAOSCAR_LIB=1 . "{SCRIPTS_DIR / "install.sh"}"\nTARGET="$T"\ninstall_munge_key'
    env = {"T": str(target), "MUNGE_KEY": base64.b64encode(key).decode(), "PATH": os.environ["PATH"]}
    result = subprocess.run(["busybox", "sh", "-c", script], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr


def test_the_installer_writes_the_key_0400_owned_by_munge_or_else_root(tmp_path: Path) -> None:
    with_munge, without = tmp_path / "with", tmp_path / "without"
    for target, passwd in (
        (with_munge, "root:x:0:0::/root:/bin/sh\nmunge:x:4242:4343::/nonexistent:/usr/sbin/nologin\n"),
        (without, "root:x:0:0::/root:/bin/sh\n"),
    ):
        (target / "etc").mkdir(parents=True)
        (target / "etc" / "passwd").write_text(passwd)
        install_key(target, KEY)
    for target, owner in ((with_munge, (4242, 4343)), (without, (0, 0))):
        key = target / "etc/haoscar/slurm/munge.key"
        st = key.stat()
        assert key.read_bytes() == KEY
        assert (st.st_mode & 0o7777, (st.st_uid, st.st_gid)) == (0o400, owner)
