"""What an NFSv4 status (nfsstat4, RFC 7530 section 13) means to the lab's userspace client.

libnfs 4.0 passes an NFSv4 failure to its caller through its NFSv3 errno table: every NFSv4-only status (GRACE,
DELAY, EXPIRED, STALE_CLIENTID, BAD_SEQID...) arrives as -ERANGE, "Numerical result out of range", which is what an
application would then see. The status's name is in libnfs's error text ("NFS4: OPEN (path /x) failed with
NFS4ERR_BAD_SEQID(-22)"), and ``nfs4_setattr`` writes it in its own messages the same way: this module reads it
from there and says what a kernel client would do with it:

- ``WAIT``: the server asks the client to send the request again later (RFC 7530 sections 9.14 and 13.1.1.3):
  a kernel client waits and resends, for as long as it takes;
- ``RENEW``: the client's NFSv4 state (its client ID, an open owner's sequence, a stateid) or a file handle is
  no longer the server's: a kernel client recovers it, here a new connection does (a new client ID and open
  owner, handles looked up again by path);
- anything else is the server's answer, given to the application as the errno a Linux client gives for it.
"""

from __future__ import annotations

import errno
import re

_NAME = re.compile(r"\bNFS4ERR_[A-Z_]+\b")

WAIT = frozenset({"NFS4ERR_DELAY", "NFS4ERR_GRACE"})
RENEW = frozenset(
    {"NFS4ERR_STALE_CLIENTID", "NFS4ERR_EXPIRED", "NFS4ERR_STALE_STATEID", "NFS4ERR_BAD_STATEID"}
    | {"NFS4ERR_OLD_STATEID", "NFS4ERR_BAD_SEQID", "NFS4ERR_ADMIN_REVOKED", "NFS4ERR_STALE", "NFS4ERR_FHEXPIRED"}
)
# The numbers of the statuses whose number is not already the errno (nfs4_setattr reads numbers off the wire).
NUMBERS = {
    63: "NFS4ERR_NAMETOOLONG",
    66: "NFS4ERR_NOTEMPTY",
    69: "NFS4ERR_DQUOT",
    70: "NFS4ERR_STALE",
    10001: "NFS4ERR_BADHANDLE",
    10004: "NFS4ERR_NOTSUPP",
    10006: "NFS4ERR_SERVERFAULT",
    10008: "NFS4ERR_DELAY",
    10010: "NFS4ERR_DENIED",
    10011: "NFS4ERR_EXPIRED",
    10013: "NFS4ERR_GRACE",
    10014: "NFS4ERR_FHEXPIRED",
    10015: "NFS4ERR_SHARE_DENIED",
    10016: "NFS4ERR_WRONGSEC",
    10018: "NFS4ERR_RESOURCE",
    10022: "NFS4ERR_STALE_CLIENTID",
    10023: "NFS4ERR_STALE_STATEID",
    10024: "NFS4ERR_OLD_STATEID",
    10025: "NFS4ERR_BAD_STATEID",
    10026: "NFS4ERR_BAD_SEQID",
    10032: "NFS4ERR_ATTRNOTSUPP",
    10039: "NFS4ERR_BADOWNER",
    10040: "NFS4ERR_BADCHAR",
    10041: "NFS4ERR_BADNAME",
    10047: "NFS4ERR_ADMIN_REVOKED",
}
# Statuses 1-31 that are the errno of the same number (RFC 7530 chose them so).
_SAME = frozenset({1, 2, 5, 6, 13, 17, 18, 19, 20, 21, 22, 27, 28, 30, 31})
# The errno an application gets, as from Linux's client (nfs4_map_errors, nfs_stat_to_errno), with its
# kernel-internal codes (EBADHANDLE, ENOTSUPP) given as their user-space kin; every other status is EIO.
_ERRNO = {
    "NFS4ERR_NAMETOOLONG": errno.ENAMETOOLONG,
    "NFS4ERR_NOTEMPTY": errno.ENOTEMPTY,
    "NFS4ERR_DQUOT": errno.EDQUOT,
    "NFS4ERR_STALE": errno.ESTALE,
    "NFS4ERR_BADHANDLE": errno.ESTALE,
    "NFS4ERR_FHEXPIRED": errno.ESTALE,
    "NFS4ERR_NOTSUPP": errno.EOPNOTSUPP,
    "NFS4ERR_ATTRNOTSUPP": errno.EOPNOTSUPP,
    "NFS4ERR_SERVERFAULT": errno.EREMOTEIO,
    "NFS4ERR_DELAY": errno.EAGAIN,
    "NFS4ERR_GRACE": errno.EAGAIN,
    "NFS4ERR_DENIED": errno.EAGAIN,
    "NFS4ERR_SHARE_DENIED": errno.EACCES,
    "NFS4ERR_WRONGSEC": errno.EPERM,
    "NFS4ERR_BADOWNER": errno.EINVAL,
    "NFS4ERR_BADCHAR": errno.EINVAL,
    "NFS4ERR_BADNAME": errno.EINVAL,
}


def name_in(text: str) -> str | None:
    """The NFSv4 status a libnfs (or ``nfs4_setattr``) error message names, if it names one."""
    found = _NAME.search(text)
    return found.group(0) if found else None


def name_of(status: int) -> str:
    return NUMBERS.get(status, f"nfsstat4 {status}")


def errno_of(name: str) -> int:
    """What an application sees for a status the server gave as its answer."""
    return _ERRNO.get(name, errno.EIO)


def status_errno(status: int) -> int:
    """The errno of an nfsstat4 number (a status read off the wire)."""
    return status if status in _SAME else errno_of(name_of(status))
