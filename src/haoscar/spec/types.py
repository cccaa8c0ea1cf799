"""Field types of the cluster spec, each with an error message that says what would be right."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer

_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_MAC = re.compile(r"^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$")


def _scalar(value: Any, example: str) -> str:
    """The text of a single YAML value; a list or mapping where one value belongs is named as such, because
    ``str()`` of it would produce a confusing message further down."""
    if isinstance(value, dict):
        raise ValueError(f"expected a single value such as {example}, got a mapping")
    if isinstance(value, list | tuple):
        raise ValueError(f"expected a single value such as {example}, got a list")
    if isinstance(value, bool):
        raise ValueError(f"expected a value such as {example}, got {str(value).lower()}")
    if value is None:
        raise ValueError(f"expected a value such as {example}, got nothing")
    return str(value).strip()


def parse_ipv4(value: Any) -> ipaddress.IPv4Address:
    if isinstance(value, ipaddress.IPv4Address):
        return value
    text = _scalar(value, "198.18.0.10")
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an IPv4 address; write four numbers 0-255 separated by dots, e.g. 198.18.0.10"
        ) from None


def parse_network(value: Any) -> ipaddress.IPv4Network:
    if isinstance(value, ipaddress.IPv4Network):
        return value
    text = _scalar(value, "198.18.0.0/24")
    if "/" not in text:
        example = f"{text}/24" if _is_ipv4(text) else "198.18.0.0/24"
        raise ValueError(f"{text!r} is not a subnet; write address/prefix, e.g. {example}")
    try:
        return ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            fixed = ipaddress.IPv4Network(text, strict=False)
            raise ValueError(f"{text!r} has host bits set; the subnet would be {fixed}") from None
        raise ValueError(f"{text!r} is not a subnet; write address/prefix, e.g. 198.18.0.0/24") from None


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def parse_netmask(value: Any) -> ipaddress.IPv4Address:
    """A dotted netmask (255.255.255.0) or a prefix length (24 or /24); stored dotted."""
    if isinstance(value, ipaddress.IPv4Address):
        return value
    text = _scalar(value, "255.255.255.0").lstrip("/")
    if text.isdigit():
        prefix = int(text)
        if not 0 <= prefix <= 32:
            raise ValueError(f"prefix length {prefix} is out of range; use 0-32, e.g. 24")
        return ipaddress.IPv4Network(f"0.0.0.0/{prefix}").netmask
    try:
        mask = ipaddress.IPv4Address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a netmask; write e.g. 255.255.255.0 or 24") from None
    bits = int(mask)
    inverted = (~bits) & 0xFFFFFFFF
    if inverted & (inverted + 1):
        raise ValueError(f"{text!r} is not a contiguous netmask; use e.g. 255.255.255.0 or 255.255.0.0")
    return mask


def parse_mac(value: Any) -> str:
    """Upper or lower case, ':' or '-' between the pairs; stored lower case with ':' (dnsmasq's form)."""
    text = _scalar(value, "52:54:00:12:34:56").lower()
    if not _MAC.match(text):
        raise ValueError(f"{text!r} is not a MAC address; write six hex pairs, e.g. 52:54:00:12:34:56")
    text = text.replace("-", ":")
    if int(text[:2], 16) & 1:
        raise ValueError(f"{text} is a multicast MAC address; a NIC has a unicast one (first octet even)")
    if text == "00:00:00:00:00:00":
        raise ValueError("00:00:00:00:00:00 is not a NIC's MAC address; write the one the NIC reports")
    return text


def parse_ifname(value: Any) -> str:
    """The kernel's rules (``dev_valid_name``): 1-15 bytes, no '/', ':' or white space, not '.' or '..'."""
    text = _scalar(value, "eth0")
    if not text or len(text.encode()) > 15:
        raise ValueError(f"{text!r} is not a possible interface name; Linux allows 1-15 characters, e.g. eth0")
    if text in (".", "..") or any(ch in text for ch in "/:") or any(ch.isspace() for ch in text):
        raise ValueError(
            f"{text!r} is not a possible interface name; no '/', ':' or spaces, not '.' or '..' (e.g. eth1)"
        )
    if not text.isprintable():
        raise ValueError(f"{text!r} is not a possible interface name; use printable characters, e.g. eth1")
    return text


def _suggest_label(text: str) -> str | None:
    guess = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].rstrip("-")
    return guess if guess and guess != text and _HOST_LABEL.match(guess) else None


def parse_hostname(value: Any) -> str:
    text = _scalar(value, "head1")
    if not _HOST_LABEL.match(text):
        guess = _suggest_label(text)
        example = f"it would be {guess!r}" if guess else "e.g. head1"
        raise ValueError(
            f"{text!r} is not a valid host name; use 1-63 lower-case letters, digits and '-', "
            f"not starting or ending with '-' ({example})"
        )
    return text


def parse_domain(value: Any) -> str:
    text = _scalar(value, "cluster.example.org").rstrip(".")
    labels = text.split(".")
    if not text or len(text) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValueError(
            f"{text!r} is not a valid DNS domain; use dot-separated labels of lower-case letters, digits and '-', "
            "e.g. cluster.example.org"
        )
    return text


def check_one_line(text: str) -> str:
    """A value that haoscar writes into a configuration file or a command line (rsyncd.conf, dnsmasq's files,
    unit files, e-mail headers): one line of printable text. A newline would start a new directive there (issue
    10, finding 6: a newline in ``ha.replicate`` reached rsyncd.conf); tabs and other control or format
    characters (escape sequences, U+2028) have no business in a path, a name or a command either."""
    for index, char in enumerate(text):
        if not char.isprintable():
            raise ValueError(
                f"{text!r} contains the control character {char!r} at position {index + 1}; write one line of "
                "printable text (it is written into configuration files)"
            )
    return text


def _str(value: object) -> str:
    return str(value)


IPv4 = Annotated[ipaddress.IPv4Address, BeforeValidator(parse_ipv4), PlainSerializer(_str)]
Subnet = Annotated[ipaddress.IPv4Network, BeforeValidator(parse_network), PlainSerializer(_str)]
Netmask = Annotated[ipaddress.IPv4Address, BeforeValidator(parse_netmask), PlainSerializer(_str)]
MAC = Annotated[str, BeforeValidator(parse_mac)]
IfName = Annotated[str, BeforeValidator(parse_ifname)]
HostName = Annotated[str, BeforeValidator(parse_hostname)]
Domain = Annotated[str, BeforeValidator(parse_domain)]
Text = Annotated[str, AfterValidator(check_one_line)]
"""Any free-text spec value that ends up in a file or a command: a path, a command, an address, a name."""
