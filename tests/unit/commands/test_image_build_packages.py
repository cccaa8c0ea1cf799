"""The spec's ``images[].packages`` reach debootstrap's ``--include`` at ``image build --spec``, the image records
them, and a rebuild keeps them (debootstrap itself replaced by a stand-in that makes a tiny tree)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from haoscar.cli.main import run
from haoscar.commands.env import Env
from haoscar.commands.images import BuildImage, image_build
from haoscar.errors import FieldError, FieldNotFound
from haoscar.provision import image_build as build_module
from haoscar.provision.image_meta import ImageSettings, read_json

SPEC = Path(__file__).parents[3] / "examples" / "cluster.yaml"


@pytest.fixture
def included(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []

    def fake(suite: str, packages: Sequence[str], target: Path, **_kw: Any) -> None:
        calls.append([suite, *packages])
        (target / "boot").mkdir(parents=True)
        (target / "boot/vmlinuz-6.1.0-cloud-amd64").write_text("")
        (target / "usr/sbin").mkdir(parents=True)
        (target / "etc").mkdir()
        (target / "usr/sbin/sshd").write_text("")

    monkeypatch.setattr(build_module, "run_debootstrap", fake)
    return calls


def _spec(tmp_path: Path, packages: str) -> Path:
    text = SPEC.read_text().replace(
        "    source: debootstrap:bookworm\n", f"    source: debootstrap:bookworm\n    packages: {packages}\n"
    )
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    return path


def test_spec_packages_are_built_recorded_and_kept_by_a_rebuild(tmp_path: Path, included: list[list[str]]) -> None:
    env = Env(state_dir=tmp_path / "state")
    meta = image_build(env, BuildImage("oscarimage", spec=_spec(tmp_path, "[hello, sl]")))
    assert included[0][0] == "bookworm"
    assert included[0][-2:] == ["hello", "sl"] and "openssh-server" in included[0]
    assert meta.details["packages"].split()[-2:] == ["hello", "sl"]
    assert meta.post_install == "reboot"  # the spec's image settings too
    settings = ImageSettings.from_json(read_json(env.state_dir / "images/oscarimage/image.json"))
    assert settings.packages == ["hello", "sl"]
    # A rebuild without the spec installs what the image records (pkg install adds there), plus what is asked.
    image_build(env, BuildImage("oscarimage", packages=["htop"]))
    assert included[1][-3:] == ["hello", "sl", "htop"]


def test_spec_build_bad_input_builds_nothing(tmp_path: Path, included: list[list[str]]) -> None:
    env = Env(state_dir=tmp_path / "state")
    with pytest.raises(FieldNotFound) as unknown:
        image_build(env, BuildImage("nosuch", spec=_spec(tmp_path, "[hello]")))
    assert unknown.value.field == "name" and "serverimage, oscarimage" in str(unknown.value)
    with pytest.raises(FieldError) as fetched:
        image_build(env, BuildImage("serverimage", spec=_spec(tmp_path, "[hello]")))
    assert fetched.value.field == "spec" and "golden-client:hapcoscar" in str(fetched.value)
    assert included == [] and not (env.state_dir / "images").exists()


def test_cli_spec_with_a_bad_package_exits_2(
    tmp_path: Path, included: list[list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(tmp_path, "[hello, Bad_Name]")
    with pytest.raises(SystemExit) as exit_info:
        run(["--state-dir", str(tmp_path / "state"), "image", "build", "oscarimage", "--spec", str(spec)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "images[1].packages[1]: 'Bad_Name' is not a Debian package name" in err and "Traceback" not in err
    assert included == []


def test_cli_spec_without_the_image_names_the_argument(
    tmp_path: Path, included: list[list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(["--state-dir", str(tmp_path / "state"), "image", "build", "nosuch", "--spec", str(SPEC)])
    assert exit_info.value.code == 2
    assert "NAME: 'nosuch' is not an image of" in capsys.readouterr().err
    assert included == [] and not (tmp_path / "state").exists()
