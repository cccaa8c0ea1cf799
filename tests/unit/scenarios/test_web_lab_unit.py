"""The console lab's pure parts: its spec, the key pin, the command a person runs to open the console."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

import pytest

from haoscar.errors import UserError
from haoscar.scenarios.web_lab import PRIVATE_ALIAS, WEB_PORT, console_spec, spki_pin


def test_the_console_spec_serves_the_console_on_the_public_alias_after_the_netboot_services() -> None:
    spec = console_spec()
    assert [(s.name, s.kind) for s in spec.ha.services] == [("dhcp", "dnsmasq"), ("boot", "bootserver"), ("web", "web")]
    assert spec.ha.services[-1].port == WEB_PORT
    assert str(spec.heads.primary.private_alias_ip) == PRIVATE_ALIAS
    assert spec.clients  # the demo's clients by default
    assert console_spec(clients=False).clients == []
    bare = console_spec(netboot=False)
    assert [s.kind for s in bare.ha.services] == ["web"]
    assert bare.heads.primary.private_alias_ip is None


def test_the_pin_is_the_sha256_of_the_certificates_public_key(tmp_path: Path) -> None:
    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(crt), "-days", "1", "-subj", "/CN=pin-test"],
        check=True, capture_output=True,
    )  # fmt: skip
    spki = subprocess.run(
        ["openssl", "pkey", "-in", str(key), "-pubout", "-outform", "der"], check=True, capture_output=True
    ).stdout
    assert spki_pin(crt.read_bytes()) == base64.b64encode(hashlib.sha256(spki).digest()).decode()


def test_no_pin_from_something_that_is_not_a_certificate() -> None:
    with pytest.raises(UserError, match="key pin"):
        spki_pin(b"not a certificate")
