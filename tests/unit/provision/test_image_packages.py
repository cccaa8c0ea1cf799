"""The pure part of ``pkg``: package names, apt's answers read, the chroot and node command lines; the node
commands are run for real by sh with stand-in ``apt-get`` / ``apt-mark`` / ``dpkg-query`` on PATH."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from haoscar.errors import FieldError
from haoscar.provision import image_packages as ip
from haoscar.provision.image_packages_chroot import chroot_argv, refuse_base
from haoscar.spec import check_text

POLICY = """hello:
  Installed: (none)
  Candidate: 2.10-3
  Version table:
     2.10-3 500
        500 http://mirror.example/debian bookworm/main amd64 Packages
mail-transport-agent:
  Installed: (none)
  Candidate: (none)
  Version table:
"""

STATUS = """Package: hello
Status: install ok installed
Version: 2.10-3

Package: sl
Status: deinstall ok config-files
Version: 5.02-1

Package: bash
Status: install ok installed
"""


def test_package_names_are_checked_and_named_by_field() -> None:
    assert ip.check_packages("packages", ["hello", "sl", "hello", "g++", "libc6.1-dev"]) == [
        "hello",
        "sl",
        "g++",
        "libc6.1-dev",
    ]
    with pytest.raises(FieldError) as empty:
        ip.check_packages("packages", [])
    assert empty.value.field == "packages" and "is empty" in str(empty.value)
    with pytest.raises(FieldError) as bad:
        ip.check_packages("packages", ["hello", "Hello", "rm -rf", "x"])
    text = str(bad.value)
    assert "'Hello' is not a Debian package name" in text and "'rm -rf'" in text and "'x'" in text
    assert "'hello'" not in text
    assert ip.split_names("htop,slurmd  hello") == ["htop", "slurmd", "hello"]


def test_spec_packages_are_debian_names_with_the_field_path() -> None:
    lab = (Path(__file__).parents[3] / "src/haoscar/data/lab.yaml").read_text()
    good = lab.replace(
        "    source: debootstrap:bookworm\n", "    source: debootstrap:bookworm\n    packages: [hello, g++]\n"
    )
    assert good != lab
    spec, problems = check_text(good, "lab.yaml")
    assert spec is not None, problems
    assert [i.packages for i in spec.images if i.packages] == [["hello", "g++"]]
    bad = lab.replace(
        "    source: debootstrap:bookworm\n", "    source: debootstrap:bookworm\n    packages: [hello, Vim]\n"
    )
    spec, problems = check_text(bad, "lab.yaml")
    assert spec is None
    assert [(p.path, p.message) for p in problems if "packages" in p.path] == [
        (
            "images[1].packages[1]",
            "'Vim' is not a Debian package name; use lowercase letters, digits, + - and ., e.g. htop or slurmd",
        )
    ]


def test_reading_dpkg_status_and_apt_cache_policy() -> None:
    assert ip.installed_packages(STATUS) == {"hello", "bash"}
    assert ip.unknown_packages(POLICY, ["hello", "no-such", "mail-transport-agent"]) == [
        "no-such",
        "mail-transport-agent",
    ]
    assert ip.deb_package("libfoo1_1.2-3+deb12u1_amd64.deb") == "libfoo1"
    assert ip.deb_package("hello_2.10-3_all.deb") == "hello"
    assert ip.deb_package("README") is None
    assert ip.last_lines("Reading...\nE: Unable to locate package x\nmore\n") == "E: Unable to locate package x"


def test_apt_lines_in_the_chroot() -> None:
    assert ip.apt_download(["hello"])[:2] == ["apt-get", "install"]
    assert "--download-only" in ip.apt_download(["hello"])
    assert "--no-install-recommends" in ip.apt_install(["hello"])
    assert ip.apt_remove(["hello"]) == ["apt-get", "remove", "-y", "-q", "--auto-remove", "hello"]
    # apt-cache from a stored version writes no binary cache into it.
    assert ip.apt_policy(["a"]) == ["apt-cache", *ip.APT_NO_CACHE, "policy", "a"]
    assert "Acquire::Languages=none" in ip.apt_update()
    assert ip.sources_line("http://m/debian", "bookworm", None) == "deb http://m/debian bookworm main\n"
    assert ip.sources_line("http://m/d", "trixie", "/k.gpg") == "deb [signed-by=/k.gpg] http://m/d trixie main\n"
    argv = chroot_argv(Path("/s/root"), ["apt-get", "update"])
    assert argv[:3] == ["chroot", "/s/root", "env"] and argv[-2:] == ["apt-get", "update"]
    assert "DEBIAN_FRONTEND=noninteractive" in argv


def test_base_packages_are_never_removed() -> None:
    with pytest.raises(FieldError) as refused:
        refuse_base(["hello", "openssh-server"])
    assert refused.value.field == "packages" and "openssh-server" in str(refused.value)
    refuse_base(["hello"])


# -------------------------------------------------------------------------------- node commands, run by sh

FAKE = {
    # apt-get: records its arguments and working directory; fails when the file "apt-fails" exists.
    # With -s it simulates: an "Inst" line per file, and one for each name in $STATE/extra (a missing dependency).
    "apt-get": """#!/bin/sh
echo "$PWD $*" >> "$LOG"
[ -e "$STATE/apt-fails" ] && { echo "E: boom" >&2; exit 100; }
case " $* " in *" -s "*)
    for a; do case "$a" in ./*) n=${a#./}; echo "Inst ${n%%_*} (1 x)";; esac; done
    [ -e "$STATE/extra" ] && echo "Inst $(cat "$STATE/extra") (1 x)";;
esac
exit 0
""",
    "apt-mark": '#!/bin/sh\necho "apt-mark $*" >> "$LOG"\n',
    # dpkg-query: a package is installed when a file of its name is in $STATE/installed.
    "dpkg-query": '#!/bin/sh\nfor last; do :; done\nfor p; do case "$p" in -*|*Status*|*Package*) continue;; esac\n'
    'if [ -e "$STATE/installed/$p" ]; then s="install ok installed"; else s="unknown ok not-installed"; fi\n'
    'case "$*" in *Package*) echo "$p $s";; *) printf %s "$s";; esac; done\n',
}


@pytest.fixture
def node(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in FAKE.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    (tmp_path / "installed").mkdir()
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "LOG": str(tmp_path / "log"),
        "STATE": str(tmp_path),
    }


def _sh(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, check=False)


def test_node_install_installs_the_files_offline_and_checks_dpkg(node: dict[str, str], tmp_path: Path) -> None:
    where = tmp_path / "pkg" / "img-4"
    where.mkdir(parents=True)
    (where / "hello_2.10-3_amd64.deb").write_text("")
    (where / "libfoo1_1_amd64.deb").write_text("")
    command = ip.node_install_command(str(where), ["hello_2.10-3_amd64.deb", "libfoo1_1_amd64.deb"], ["hello"])
    (tmp_path / "installed/hello").touch()
    done = _sh(command, node)
    assert done.returncode == 0, done.stderr
    simulated, installed, marked = (tmp_path / "log").read_text().splitlines()
    assert simulated.startswith(f"{where} install -s ")
    assert installed.startswith(f"{where} install ") and " -s " not in installed
    assert installed.endswith("./hello_2.10-3_amd64.deb ./libfoo1_1_amd64.deb")
    assert marked == "apt-mark auto libfoo1"  # the dependency is automatic, as apt made it in the image
    assert not where.exists()  # the files are removed once installed


def test_node_install_changes_nothing_when_the_node_lacks_what_the_image_had(
    node: dict[str, str], tmp_path: Path
) -> None:
    where = tmp_path / "pkg" / "img-4"
    where.mkdir(parents=True)
    (where / "hello_1_amd64.deb").write_text("")
    (tmp_path / "extra").write_text("libbar2")
    done = _sh(ip.node_install_command(str(where), ["hello_1_amd64.deb"], ["hello"]), node)
    assert done.returncode == 1
    assert "E: needs packages the image had and this node lacks: libbar2" in done.stderr
    assert len((tmp_path / "log").read_text().splitlines()) == 1  # only the simulation ran


def test_node_install_is_not_called_done_when_dpkg_lacks_a_package(node: dict[str, str], tmp_path: Path) -> None:
    where = tmp_path / "pkg" / "img-4"
    where.mkdir(parents=True)
    (where / "hello_1_amd64.deb").write_text("")
    done = _sh(ip.node_install_command(str(where), ["hello_1_amd64.deb"], ["hello"]), node)
    assert (done.returncode, done.stderr.strip()) == (1, "not installed: hello")
    (tmp_path / "apt-fails").touch()
    where.mkdir(parents=True, exist_ok=True)
    done = _sh(ip.node_install_command(str(where), ["hello_1_amd64.deb"], ["hello"]), node)
    assert done.returncode == 1 and "E: boom" in done.stderr


def test_node_remove_removes_only_what_the_node_has(node: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "installed/hello").touch()
    command = ip.node_remove_command(["hello", "sl"]).replace(ip.NODE_DIR, str(tmp_path / "pkg"))
    done = _sh(command, node)
    # The stand-in apt-get does not remove: dpkg still has hello, so the node is not called done.
    assert (done.returncode, done.stderr.strip()) == (1, "still installed: hello")
    assert (tmp_path / "log").read_text().split()[1:] == ["remove", "-y", "-q", "--auto-remove", "hello"]
    (tmp_path / "installed/hello").unlink()
    (tmp_path / "log").unlink()
    done = _sh(command, node)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "log").exists()  # nothing to remove: apt-get is not even called
