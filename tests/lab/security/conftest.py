"""Lab fixtures for the security tests: ``make_lab`` (a factory) and ``lab`` (the default lab.yaml), always taken
down (the same fixtures as tests/lab/conftest.py)."""

from haoscar.scenarios.lab_fixtures import lab, make_lab

__all__ = ["lab", "make_lab"]
