"""Lab fixtures: ``make_lab`` (a factory) and ``lab`` (the default lab.yaml), always taken down."""

from haoscar.scenarios.lab_fixtures import lab, make_lab

__all__ = ["lab", "make_lab"]
