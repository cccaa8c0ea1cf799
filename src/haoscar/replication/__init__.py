"""Head-node data replication: files (inotify + rsync) and the cluster database (synchronous statement shipping)
from the active head to the standby; see docs/replication.md."""

from haoscar.replication.manager import CatchUpReport, ReplicationManager
from haoscar.replication.state import ReplicationStatus

__all__ = ["CatchUpReport", "ReplicationManager", "ReplicationStatus"]
