"""Lab fixtures: ``make_lab`` (a factory) and ``lab`` (the default lab.yaml), always taken down."""

from haoscar.lab.testing import lab, make_lab

__all__ = ["lab", "make_lab"]
