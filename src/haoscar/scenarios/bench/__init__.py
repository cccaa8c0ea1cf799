"""Benchmarks: each prints JSON, registered on ``haoscar bench``."""
