"""Where a lab keeps its hosts' copy-on-write layers, and what it hands to hostinit."""

from __future__ import annotations

from pathlib import Path

import pytest

from haoscar.lab import hostfs


def test_layers_are_per_lab_and_outside_every_overlaid_dir(tmp_path: Path) -> None:
    one = hostfs.cow_root(tmp_path / "a" / "labs" / "lab", "lab")
    other = hostfs.cow_root(tmp_path / "b" / "labs" / "lab", "lab")
    assert one != other  # one lab name in two state directories
    assert one.parent == hostfs.COW_BASE and one.name.startswith("lab-")
    for sub in hostfs.COW_DIRS:
        assert not one.is_relative_to(Path("/", sub))


def test_mount_args_create_layers_and_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostfs, "COW_BASE", tmp_path / "cow")
    args = hostfs.host_mount_args(tmp_path / "lab", "lab", "node01")
    cows = [args[i + 1] for i, a in enumerate(args) if a == "--cow"]
    assert [c.split(":")[0] for c in cows] == [f"/{d}" for d in hostfs.COW_DIRS]
    for spec in cows:
        _target, upper, work = spec.split(":")
        assert Path(upper).is_dir() and Path(work).is_dir()
    binds = [a for a in args if ":" in a and a not in cows]
    assert binds == [f"{tmp_path}/lab/hosts/node01/{d}:/{d}" for d in hostfs.PRIVATE_DIRS]
    marker = tmp_path / "lab/hosts/node01/etc/haoscar/no-image-sync"
    assert "image sync onto / would change the machine" in marker.read_text()
    hostfs.remove_cow(tmp_path / "lab", "lab")
    assert not hostfs.cow_root(tmp_path / "lab", "lab").exists()


def test_layers_inside_an_overlaid_dir_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(hostfs, "COW_BASE", Path("/var/lib/haoscar-cow"))
    with pytest.raises(RuntimeError, match="inside the overlaid /var/lib"):
        hostfs.host_mount_args(tmp_path / "lab", "lab", "node01")
    assert not Path("/var/lib/haoscar-cow").exists()
