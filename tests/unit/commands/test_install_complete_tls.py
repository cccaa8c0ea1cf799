"""Complete Installation distributes the cluster's TLS material: each head its certificate (for all its
addresses) and key, the CA key on the primary only, nothing on the witness; a second run changes none of it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from haoscar.commands.install_complete import Host, complete_installation
from haoscar.lab.defaults import default_spec
from haoscar.tlsca import cert_addresses

TLS = "/etc/haoscar/tls"
SPEC_TEXT = b"cluster: {name: labcluster}\n"


class FakeHost:
    """A host's files in memory; ``ss`` answers for the port of the daemon started here."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port, self.running = host, port, False
        self.files: dict[str, tuple[bytes, int]] = {}

    def read(self, path: str) -> bytes | None:
        return self.files[path][0] if path in self.files else None

    def write(self, path: str, data: bytes, mode: int) -> None:
        self.files[path] = (data, mode)

    def run(self, command: str, timeout: float = 30.0) -> tuple[int, str]:
        if command.startswith("ss "):
            return 0, f"UNCONN 0 0 0.0.0.0:{self.port} 0.0.0.0:*" if self.running else ""
        self.running = True
        return 0, ""


def _run(hosts: dict[str, FakeHost]) -> Any:
    def status(host: Host) -> dict[str, Any] | None:
        return {"state": "active" if host.role == "primary" else "standby"} if hosts[host.name].running else None

    return complete_installation(
        default_spec(), SPEC_TEXT, dict(hosts), status=status, start_command="start {what} {node}: {run}", wait_s=2
    )


def test_each_head_gets_its_certificate_and_only_the_primary_the_ca_key(tmp_path: Path) -> None:
    hosts = {name: FakeHost(name, port) for name, port in (("head1", 7404), ("head2", 7404), ("witness", 7405))}
    _run(hosts)
    spec = default_spec()
    h1, h2 = hosts["head1"].files, hosts["head2"].files
    assert h1[f"{TLS}/ca.key"][1] == 0o600 and f"{TLS}/ca.key" not in h2
    assert not any(path.startswith(TLS) for path in hosts["witness"].files)
    assert h1[f"{TLS}/ca.crt"] == h2[f"{TLS}/ca.crt"]
    for head, files in (("head1", h1), ("head2", h2)):
        assert files[f"{TLS}/{head}.key"][1] == 0o600 and files[f"{TLS}/{head}.crt"][1] == 0o644
        (tmp_path / "ca.crt").write_bytes(files[f"{TLS}/ca.crt"][0])
        (tmp_path / "node.crt").write_bytes(files[f"{TLS}/{head}.crt"][0])
        verify = ["openssl", "verify", "-CAfile", str(tmp_path / "ca.crt"), str(tmp_path / "node.crt")]
        assert subprocess.run(verify, capture_output=True, check=False).returncode == 0
        node = spec.heads.primary if head == "head1" else spec.heads.standby
        wanted = {str(ip) for ip in (node.private_ip, node.public_ip, node.heartbeat_ip) if ip is not None}
        assert wanted <= cert_addresses(tmp_path / "node.crt")

    again = _run(hosts)
    for result in again.hosts:
        assert not [path for path in result.written if path.startswith(TLS)], result.written
