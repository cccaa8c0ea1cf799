"""The HA daemon: heartbeat, witness lease, role state machine, resources, fencing, replication."""
