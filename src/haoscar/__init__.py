"""haoscar: HA-OSCAR re-created. Install and manage a Beowulf cluster and keep its head node highly available."""

__version__ = "0.1.0"
