"""The demo cluster shipped with haoscar (``haoscar/data/lab.yaml``), read through importlib.resources."""

from __future__ import annotations

from importlib.resources import as_file, files

from haoscar.spec import ClusterSpec, load_spec


def default_spec() -> ClusterSpec:
    with as_file(files("haoscar") / "data" / "lab.yaml") as path:
        return load_spec(path)
