"""The cluster sync script (OSCAR's ``sync_files``): one self-contained bash script, the same for every host, that
puts haoscar's state on it idempotently (docs/accounts.md):

- haoscar's groups and users, with ``groupadd``/``useradd``/``usermod``/``userdel`` and explicit ids: the tools
  take the account files' locks (``/etc/.pwd.lock``), keep passwd, shadow, group and gshadow consistent and tell
  nscd, which writing the lines ourselves would not. A user and a group haoscar made are listed in
  ``/etc/haoscar/accounts.managed``, so a user deleted from the cluster is deleted on a host at its next sync and
  an account haoscar did not make is never changed (a clash is reported instead);
- a marked block at the top of ``/etc/hosts`` (every head and node: private IP, FQDN, short name; the private alias),
  of ``/etc/ssh/ssh_known_hosts`` (the nodes' host keys under their names, FQDNs and IPs) and of root's
  ``authorized_keys`` (the cluster key); the file's other lines are kept.

A user's password field is ``*``: no password login, but not locked (``!``), which sshd without PAM would refuse
even for a key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from haoscar.provision.accounts import Account

BEGIN = "# BEGIN haoscar: written by `haoscar cluster sync`; edit outside this block"
END = "# END haoscar"
MANAGED = "/etc/haoscar/accounts.managed"
EOF_MARK = "HAOSCAR_SYNC_EOF"


@dataclass(frozen=True)
class HostEntry:
    """A host of the cluster as /etc/hosts names it."""

    ip: str
    fqdn: str
    name: str

    @property
    def names(self) -> list[str]:
        return [self.name, self.fqdn, self.ip]


@dataclass(frozen=True)
class Group:
    name: str
    gid: int
    external: bool = False  # it existed before haoscar used it: only checked on the hosts


def hosts_block(entries: Iterable[HostEntry]) -> str:
    """/etc/hosts lines, one per host (``IP FQDN NAME``), inside the markers."""
    lines = [f"{e.ip}\t{e.fqdn} {e.name}" if e.fqdn != e.name else f"{e.ip}\t{e.name}" for e in entries]
    return "\n".join([BEGIN, *lines, END]) + "\n"


def _hashed_match(pattern: str, candidate: str) -> bool:
    """OpenSSH's hashed host names (``|1|SALT|HASH``: HMAC-SHA1 of the name keyed with the salt)."""
    try:
        _, _, salt, digest = pattern.split("|")
        mac = hmac.new(base64.b64decode(salt), candidate.encode(), hashlib.sha1).digest()
        return hmac.compare_digest(mac, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


def _host_of(patterns: str, entries: list[HostEntry]) -> HostEntry | None:
    for pattern in patterns.split(","):
        for entry in entries:
            if pattern in entry.names or (
                pattern.startswith("|1|") and any(_hashed_match(pattern, n) for n in entry.names)
            ):
                return entry
    return None


def known_hosts_block(known_hosts: str, entries: list[HostEntry]) -> str:
    """The host keys haoscar's ssh learnt (``STATE/ssh/known_hosts``, by address) under every name of their host,
    so a user's ``ssh node02`` (or its FQDN or IP) on any node checks the key without a prompt."""
    lines: list[str] = []
    for line in known_hosts.splitlines():
        fields = line.split()
        if len(fields) < 3 or line.startswith(("#", "@")):
            continue  # comments, @cert-authority and @revoked lines are not a host's key
        entry = _host_of(fields[0], entries)
        if entry is not None:
            text = f"{','.join(entry.names)} {fields[1]} {fields[2]}"
            if text not in lines:
                lines.append(text)
    return "\n".join([BEGIN, *sorted(lines), END]) + "\n"


def root_keys_block(public_keys: Iterable[str]) -> str:
    return "\n".join([BEGIN, *(key.strip() for key in public_keys), END]) + "\n"


# The functions of the script. put_block: our block first, then the file's other lines; rewritten (by rename, or in
# place when the file is a mount point, as /etc/hosts in a container) only when it changes.
_FUNCTIONS = r"""
set -u
failed=0
say() { printf '%s\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; failed=1; }
put_block() {
    local file=$1 mode=$2 block=$3 tmp
    mkdir -p "$(dirname "$file")"
    tmp=$(mktemp "$file.haoscar.XXXXXX") || { fail "cannot write next to $file"; return; }
    { printf '%s' "$block"
      if [ -f "$file" ]; then awk -v b="$BEGIN" -v e="$END" '$0==b{s=1;next} $0==e{s=0;next} !s' "$file"; fi
    } >"$tmp"
    if [ -f "$file" ] && cmp -s "$tmp" "$file"; then rm -f "$tmp"; return; fi
    chmod "$mode" "$tmp"
    if ! mv -f "$tmp" "$file" 2>/dev/null; then cat "$tmp" >"$file" && rm -f "$tmp"; fi
    say "updated $file"
}
"""

_ACCOUNT_FUNCTIONS = r"""
managed=$(cat "$MANAGED" 2>/dev/null || true)
is_managed() { printf '%s\n' "$managed" | grep -qxF "$1"; }
now_managed=""
keep() { now_managed="$now_managed$1"$'\n'; }
ensure_group() {
    local name=$1 gid=$2 have owner
    have=$(getent group "$name" | cut -d: -f3); owner=$(getent group "$gid" | cut -d: -f1)
    if [ "$have" = "$gid" ]; then keep "group $name"; return; fi
    if [ -n "$owner" ] && [ "$owner" != "$name" ]; then
        fail "group $name: gid $gid is group $owner's on this host"; return
    fi
    if [ -z "$have" ]; then
        groupadd -g "$gid" "$name" && { say "added group $name ($gid)"; keep "group $name"; } \
            || fail "groupadd $name failed"
    elif is_managed "group $name"; then
        groupmod -g "$gid" "$name" && { say "changed group $name to gid $gid"; keep "group $name"; } \
            || fail "groupmod $name failed"
    else
        fail "group $name exists on this host with gid $have and is not haoscar's (the cluster's is $gid)"
    fi
}
check_group() {
    local have
    have=$(getent group "$1" | cut -d: -f3)
    [ "$have" = "$2" ] || fail "group $1 has gid ${have:-none} on this host, not $2 as on the head"
}
ensure_user() {
    local name=$1 uid=$2 gid=$3 home=$4 shell=$5 comment=$6 have owner
    have=$(getent passwd "$name" | cut -d: -f3-); owner=$(getent passwd "$uid" | cut -d: -f1)
    if [ -n "$owner" ] && [ "$owner" != "$name" ]; then
        fail "user $name: uid $uid is $owner's on this host"; return
    fi
    if [ -z "$have" ]; then
        useradd -M -N -u "$uid" -g "$gid" -d "$home" -s "$shell" -c "$comment" -p '*' "$name" \
            && { say "added user $name ($uid)"; keep "user $name"; } || fail "useradd $name failed"
    elif [ "$have" = "$uid:$gid:$comment:$home:$shell" ]; then
        keep "user $name"
    elif is_managed "user $name"; then
        usermod -u "$uid" -g "$gid" -d "$home" -s "$shell" -c "$comment" "$name" \
            && { say "changed user $name"; keep "user $name"; } || fail "usermod $name failed"
    else
        fail "user $name exists on this host (${have%%:*}) and is not haoscar's"
    fi
}
drop() {
    local kind=$1 name=$2
    case " $WANTED " in *" $kind:$name "*) return ;; esac
    if ! getent "$( [ "$kind" = user ] && echo passwd || echo group )" "$name" >/dev/null; then return; fi
    if [ "$kind" = user ]; then userdel "$name"; else groupdel "$name"; fi \
        && say "deleted $kind $name" || { fail "could not delete $kind $name"; keep "$kind $name"; }
}
"""


def _account_calls(accounts: list[Account], groups: list[Group]) -> list[str]:
    wanted = [f"user:{a.name}" for a in accounts] + [f"group:{g.name}" for g in groups if not g.external]
    # Users go before groups: a group is deleted once no user has it as primary group. (A here-string, not a pipe:
    # the loop must run in this shell, where `keep` and `fail` record.)
    lines = [f"WANTED={shlex.quote(' '.join(wanted))}"]
    for kind in ("user", "group"):
        lines += ["while read -r kind name; do", f'    if [ "$kind" = {kind} ]; then drop {kind} "$name"; fi']
        lines += ['done <<<"$managed"']
    for group in groups:
        call = "check_group" if group.external else "ensure_group"
        lines.append(f"{call} {shlex.quote(group.name)} {group.gid}")
    for a in accounts:
        fields = [a.name, str(a.uid), str(a.gid), a.home, a.shell, a.comment]
        lines.append("ensure_user " + " ".join(shlex.quote(f) for f in fields))
    lines.append('mkdir -p "$(dirname "$MANAGED")"')
    lines.append('printf \'%s\' "$now_managed" | sort -u >"$MANAGED.new" && mv -f "$MANAGED.new" "$MANAGED"')
    return lines


def _heredoc(variable: str, text: str) -> str:
    return f"{variable}=$(cat <<'{EOF_MARK}'\n{text}{EOF_MARK}\n)\n{variable}=\"${variable}\"$'\\n'"


@dataclass(frozen=True)
class SyncContent:
    hosts: str
    known_hosts: str
    root_keys: str
    accounts: list[Account]
    groups: list[Group]


def render_script(content: SyncContent, *, root: str = "", with_accounts: bool = True) -> str:
    """The script. ``root`` prefixes every file it writes and ``with_accounts=False`` leaves the account tools
    out: the tests run it on a directory tree (never on this machine's accounts)."""
    quoted = shlex.quote(root)
    parts = [
        "#!/bin/bash",
        "# Generated by haoscar (docs/accounts.md); run as root on a head or a node.",
        f"ROOT={quoted}",
        f"BEGIN={shlex.quote(BEGIN)}",
        f"END={shlex.quote(END)}",
        f'MANAGED="$ROOT"{shlex.quote(MANAGED)}',
        _FUNCTIONS,
        _heredoc("HOSTS", content.hosts),
        _heredoc("KNOWN", content.known_hosts),
        _heredoc("ROOTKEYS", content.root_keys),
    ]
    if with_accounts:
        parts += [_ACCOUNT_FUNCTIONS, *_account_calls(content.accounts, content.groups)]
    parts += [
        'put_block "$ROOT/etc/hosts" 644 "$HOSTS"',
        'put_block "$ROOT/etc/ssh/ssh_known_hosts" 644 "$KNOWN"',
        'mkdir -p "$ROOT/root/.ssh" && chmod 700 "$ROOT/root/.ssh"',
        'put_block "$ROOT/root/.ssh/authorized_keys" 600 "$ROOTKEYS"',
        "exit $failed",
        "",
    ]
    return "\n".join(parts)
