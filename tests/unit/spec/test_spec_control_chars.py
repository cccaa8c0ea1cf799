"""A newline or another control character in a spec value that is written into a configuration file is refused at
``spec validate`` (issue 10, finding 6: a newline in ``ha.replicate`` paths reached rsyncd.conf).

The attacker is whoever gets a value into cluster.yaml that root later renders (a copied example, a generated
spec): ``path: "/home\\n[root]\\npath = /"`` would add a root-writable module to the rsync daemon. Each case
asserts the exact ``FILE:LINE: path:`` of the problem; the legitimate values of the same fields still pass.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from spec_cases import BASE, edit, line_of, problems

HAOSCAR = str(Path(sys.executable).with_name("haoscar"))

HA_TAIL = """\
  witness:
    hostname: witness
    addresses: [198.18.0.3]
"""

EXTRA = """\
  replicate:
    - path: /home
      exclude: ["*.tmp"]
  services:
    - name: web
      start: /usr/sbin/httpd -k start
      pid_file: /run/httpd.pid
      kind: process
      process: httpd
  fencing:
    method: fence-agents
    agent: fence_ipmilan
    options: {ip: 198.18.0.9, username: admin}
  alerts:
    - email: ops@lab.haoscar
      smtp_server: mail.lab.haoscar
"""


def spec_with_extras() -> str:
    return edit(BASE, (HA_TAIL, HA_TAIL + EXTRA))


def test_the_legitimate_values_pass() -> None:
    assert problems(spec_with_extras()) == []


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("    - path: /home", '    - path: "/home\\n[root]\\npath = /"', "ha.replicate[0].path"),
        ('exclude: ["*.tmp"]', 'exclude: ["*.tmp\\rx"]', "ha.replicate[0].exclude[0]"),
        ("start: /usr/sbin/httpd -k start", 'start: "/usr/sbin/httpd\\n-k start"', "ha.services[0].start"),
        ("pid_file: /run/httpd.pid", 'pid_file: "/run/httpd\\t.pid"', "ha.services[0].pid_file"),
        ("agent: fence_ipmilan", 'agent: "fence_ipmilan\\x1b[2J"', "ha.fencing.agent"),
        ("username: admin}", 'username: "admin\\nx"}', "ha.fencing.options.username"),
        (
            "smtp_server: mail.lab.haoscar",
            'smtp_server: "mail.lab.haoscar\\r\\nRCPT x"',
            "ha.alerts[0].smtp_server",
        ),
        ("- email: ops@lab.haoscar", '- email: "ops@lab.haoscar\\nBcc: x@y"', "ha.alerts[0].email"),
        ("    source: golden-client:head1", '    source: "golden-client:head1\\u2028"', "images[0].source"),
    ],
)
def test_a_control_character_is_refused_with_file_line_and_path(old: str, new: str, path: str) -> None:
    text = edit(spec_with_extras(), (old, new))
    found = problems(text)
    assert len(found) == 1, found
    line = line_of(text, new.strip())
    assert found[0].startswith(f"cluster.yaml:{line}: {path}: ")
    assert "contains the control character" in found[0]
    assert "write one line of printable text" in found[0]


def test_spec_validate_exits_2_and_names_the_line(tmp_path: Path) -> None:
    text = edit(spec_with_extras(), ("    - path: /home", '    - path: "/home\\n[root]\\npath = /"'))
    spec = tmp_path / "cluster.yaml"
    spec.write_text(text)
    env = {"PATH": "/usr/bin:/bin", "HAOSCAR_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "200"}
    done = subprocess.run(
        [HAOSCAR, "spec", "validate", str(spec)], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert done.returncode == 2
    line = line_of(text, "- path:")
    assert f"{spec}:{line}: ha.replicate[0].path: " in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
