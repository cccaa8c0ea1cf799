"""The unprivileged account dnsmasq runs as once its sockets are bound (issue 10, finding 6: never as root).

dnsmasq starts as root to bind port 67 (DHCP) and 69 (TFTP), opens its config, lease file, log and pid file, and
then drops to this account: a hole in its DHCP or TFTP parsing, reachable by every compute node, gets that
account, not root. Debian's ``dnsmasq`` package makes a ``dnsmasq`` account; ``dnsmasq-base`` alone does not,
and then ``nobody`` is used, as dnsmasq itself does by default.

What dnsmasq still reads after the drop must be readable by that account: the per-node files in ``hosts.d``
(re-read on change) and the TFTP root (0755 directories, 0644 files, as netboot sync writes them). It writes
only through the descriptors it opened as root (lease file, log).
"""

from __future__ import annotations

import grp
import pwd

CANDIDATES = ("dnsmasq", "nobody")


def dnsmasq_user() -> tuple[str, str]:
    """(user, group) for dnsmasq's ``user=`` and ``group=``: the first account of ``CANDIDATES`` that exists,
    with its primary group."""
    for name in CANDIDATES:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid == 0:
            continue  # an account mapped to root would defeat the point
        try:
            group = grp.getgrgid(entry.pw_gid).gr_name
        except KeyError:
            group = str(entry.pw_gid)
        return entry.pw_name, group
    raise RuntimeError("no unprivileged account for dnsmasq: neither 'dnsmasq' nor 'nobody' exists")
