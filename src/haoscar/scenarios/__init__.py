"""Scenarios: lab harnesses, demo acts and benchmarks. They sit above ``commands`` (they drive whole virtual
clusters through the same door the CLI uses) and no domain package imports them."""
