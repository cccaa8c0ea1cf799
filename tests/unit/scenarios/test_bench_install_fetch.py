"""The pieces of ``bench install`` and ``bench install-fanout`` that decide what counts: the synthetic image, the
file-by-file comparison with the source, the CPU read from the shell's ``times``, and the scripts' commands."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from haoscar.scenarios.bench.install_fanout import fanout_spec
from haoscar.scenarios.bench.install_fetch import (
    INSTALL_SH,
    Pull,
    differences,
    installer_script,
    manifest,
    rsync_script,
    summary,
    synthetic_tree,
)


def test_synthetic_tree_counts_what_it_wrote(tmp_path: Path) -> None:
    facts = synthetic_tree(tmp_path / "t", small=100, large=2, large_mib=1)
    files = [p for p in (tmp_path / "t").rglob("*") if p.is_file() and not p.is_symlink()]
    assert facts.files == len(files) == 103
    assert facts.bytes == sum(p.stat().st_size for p in files)
    assert facts.symlinks == 50 and (tmp_path / "t/etc/link00").resolve().is_file()
    assert synthetic_tree(tmp_path / "u", small=100, large=2, large_mib=1) == facts
    assert manifest(tmp_path / "t") == manifest(tmp_path / "u")  # the same seed gives the same tree


def test_differences_name_missing_changed_and_extra_entries(tmp_path: Path) -> None:
    synthetic_tree(tmp_path / "src", small=60, large=1, large_mib=1)
    expected = manifest(tmp_path / "src")
    shutil.copytree(tmp_path / "src", tmp_path / "dst", symlinks=True)
    assert differences(expected, tmp_path / "dst") == []
    (tmp_path / "dst/boot/blob0").write_bytes(b"short")
    (tmp_path / "dst/usr/share/bench/d000/f00001").unlink()
    (tmp_path / "dst/etc/stray").write_text("x")
    os.chmod(tmp_path / "dst/etc/os-release", 0o600)
    found = differences(expected, tmp_path / "dst")
    assert "missing usr/share/bench/d000/f00001" in found and "differs boot/blob0" in found
    assert "differs etc/os-release" in found and "extra etc/stray" in found
    assert differences(expected, tmp_path / "nowhere") == [f"{tmp_path / 'nowhere'} does not exist"]


def test_cpu_comes_from_the_two_lines_of_times() -> None:
    times = subprocess.run(["busybox", "sh", "-c", "times"], capture_output=True, text=True, check=True).stdout
    pull = Pull("node001", seconds=1.0, output=["haoscar-install: image 90%", *times.split("\n")])
    assert pull.cpu_s is not None and pull.cpu_s >= 0
    assert Pull("x", output=["0m1.500s 0m0.250s", "1m2.000s 0m0.250s"]).cpu_s == 64.0
    assert Pull("x", output=["no times printed"]).cpu_s is None


def test_summary_counts_only_nodes_that_finished() -> None:
    pulls = {"a": Pull("a", seconds=2.0), "b": Pull("b", seconds=4.0), "c": Pull("c", error="exit 1: 403")}
    result = summary(pulls, wall=4.0, nbytes=10_000_000)
    assert result["nodes_done"] == 2 and result["aggregate_mb_per_s"] == 5.0
    assert result["slowest_node_s"] == 4.0 and result["errors"] == {"c": "exit 1: 403"}


def test_scripts_use_the_installer_and_rsync_as_shipped(tmp_path: Path) -> None:
    script = installer_script("http://198.18.0.1:8470", "52:54:00:fa:00:01", tmp_path / "t a")
    assert f". {INSTALL_SH}" in script and "HAOSCAR_LIB=1" in script
    assert "/boot/52:54:00:fa:00:01.ipxe" in script  # the token comes from the node's own iPXE script
    assert script.index("network") < script.index("read go") < script.index("pull_image")
    assert f"'{tmp_path / 't a'}'" in script
    given = installer_script("http://h:1", "52:54:00:fa:00:01", tmp_path, token="abc")
    assert "TOKEN=abc" in given and ".ipxe" not in given
    assert "rsync -aH --numeric-ids rsync://198.18.0.1:873/image/" in rsync_script(
        "rsync://198.18.0.1:873/image/", tmp_path
    )


def test_fanout_spec_gives_every_node_its_own_mac_and_address() -> None:
    spec = fanout_spec(50)
    (group,) = spec.clients
    assert group.count == 50 and len(set(group.macs.values())) == 50
    assert group.macs["node050"] == "52:54:00:fa:00:32"
