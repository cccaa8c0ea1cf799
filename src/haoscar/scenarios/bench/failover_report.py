"""The JSON document of ``haoscar bench failover``: medians, ratios at equal footing, the breakdown, the floors.

Split from ``failover`` (which runs the lab) so that each stays readable; it only turns measured series into
numbers.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field
from typing import Any

from haoscar.scenarios.bench.shipped import config_block, shipped_overrides
from haoscar.scenarios.ha_lab import ha_spec
from haoscar.spec import ClusterSpec

# The floors of the HA issue: what "fast and safe" means in numbers.
DEFAULT_LIMIT_MS = 1000.0
DEFAULT_VS_KEEPALIVED_LIMIT = 0.3
FAST_VS_KEEPALIVED_TUNED_LIMIT = 1.0
IDLE_CPU_LIMIT_PCT = 2.0
RSS_LIMIT_MB = 80.0

# keepalived series: key -> advert_int. Tuned as its documentation advises (priorities 254/253, nopreempt);
# ``keepalived_tuned_fast`` has the fast profile's heartbeat interval, the equal-footing comparison.
KEEPALIVED_SERIES: dict[str, float] = {
    "keepalived_tuned_default": 1.0,
    "keepalived_tuned_fast": 0.1,
    "keepalived_tuned_50ms": 0.05,
}
HAOSCAR_SERIES = ("haoscar_default", "haoscar_fast")


# The client's echo grid: every failover time includes the wait for the next echo after the client's ARP cache
# moved (half a grid on average); at 10 ms that wait was larger than the differences between the contenders.
ECHO_GRID_S = 0.001


@dataclass(frozen=True)
class CrashResult:
    vip_ms: float
    dhcp_ms: float | None
    new_owner_mac: str
    t0: float = 0.0  # the crash, on the monotonic clock the lab hosts share
    crash_delay_s: float = 0.0  # the random wait before it (the crash phase)
    # The standby answered before the crash could have moved the VIP: it had taken it already (a takeover the
    # crash did not cause; seen with keepalived at advert_int 0.1 on a loaded machine). Not a failover time.
    early: bool = False
    # The first reply from the standby minus the last heartbeat (advert) of the primary that reached the standby:
    # what both contenders' dead time counts from, so the crash's random phase is not in this figure.
    since_heard_ms: float | None = None
    # The standby's first gratuitous ARP at the client minus that same last heartbeat: the takeover itself, free of
    # the echo grid (what moves the client's ARP cache to the new owner).
    garp_since_heard_ms: float | None = None


@dataclass
class Series:
    label: str
    vip_ms: list[float] = field(default_factory=list)
    dhcp_ms: list[float] = field(default_factory=list)
    new_owners: list[str] = field(default_factory=list)
    unsteady_starts: int = 0
    # runs not timed because the standby answered sooner than the crash could have moved the VIP (ms after it)
    early_takeovers_ms: list[float] = field(default_factory=list)
    # per run, the random wait before the crash (uniform in [0, heartbeat or advert interval)): the crash phase
    crash_delay_ms: list[float] = field(default_factory=list)
    # per run, where the time went (haoscar only): step -> ms after the crash
    breakdowns: list[dict[str, float]] = field(default_factory=list)
    # per run, the first reply from the standby minus the primary's last heartbeat (advert) the standby heard
    since_heard_ms: list[float] = field(default_factory=list)
    # per run, the standby's first gratuitous ARP at the client minus that same last heartbeat (no echo grid in it)
    garp_since_heard_ms: list[float] = field(default_factory=list)

    def median(self) -> float | None:
        return round(statistics.median(self.vip_ms), 1) if self.vip_ms else None

    def since_heard_median(self) -> float | None:
        return round(statistics.median(self.since_heard_ms), 1) if self.since_heard_ms else None

    def garp_median(self) -> float | None:
        return round(statistics.median(self.garp_since_heard_ms), 2) if self.garp_since_heard_ms else None

    def dhcp_median(self) -> float | None:
        return round(statistics.median(self.dhcp_ms), 1) if self.dhcp_ms else None


def new_series() -> dict[str, Series]:
    out = {key: Series(key.replace("_", " ")) for key in HAOSCAR_SERIES}
    for key, advert in KEEPALIVED_SERIES.items():
        out[key] = Series(f"keepalived tuned advert_int {advert:g}")
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _median_steps(runs: list[dict[str, float]]) -> dict[str, float]:
    steps = {name for run in runs for name in run}
    return {
        name: round(statistics.median(run[name] for run in runs if name in run), 1)
        for name in sorted(steps, key=lambda n: statistics.median(r[n] for r in runs if n in r))
    }


def _floor(value: float | None, limit: float) -> dict[str, Any]:
    shown = None if value is None else round(value, 3)
    return {"value": shown, "limit": limit, "pass": value is not None and value <= limit}


def keepalived_part(series: dict[str, Series]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The keepalived medians, every haoscar profile / keepalived interval ratio, and their floors."""
    medians = {key: series[key].median() for key in KEEPALIVED_SERIES}
    out: dict[str, Any] = {f"{key}_median_ms": value for key, value in medians.items()}
    default_ms, fast_ms = series["haoscar_default"].median(), series["haoscar_fast"].median()
    out["haoscar_fast_vs_keepalived_tuned_ratio"] = _ratio(fast_ms, medians["keepalived_tuned_fast"])
    # the same comparison without the crash's random phase: from the last heartbeat (advert) heard to the reply
    out["haoscar_fast_vs_keepalived_tuned_since_heard_ratio"] = _ratio(
        series["haoscar_fast"].since_heard_median(), series["keepalived_tuned_fast"].since_heard_median()
    )
    # and from the last heartbeat (advert) heard to the new owner's first gratuitous ARP at the client (no echo grid)
    out["haoscar_fast_vs_keepalived_tuned_garp_ratio"] = _ratio(
        series["haoscar_fast"].garp_median(), series["keepalived_tuned_fast"].garp_median()
    )
    out["haoscar_default_vs_keepalived_tuned_default_ratio"] = _ratio(default_ms, medians["keepalived_tuned_default"])
    # haoscar / keepalived for every pair (a ratio above 1 means keepalived was faster)
    out["ratios"] = {
        f"{mine}_vs_{theirs}": _ratio(series[mine].median(), medians[theirs])
        for mine in HAOSCAR_SERIES
        for theirs in KEEPALIVED_SERIES
    }
    floors = {
        "haoscar_default_le_0.3_x_keepalived_tuned_default": _floor(
            out["haoscar_default_vs_keepalived_tuned_default_ratio"], DEFAULT_VS_KEEPALIVED_LIMIT
        ),
        "haoscar_fast_le_keepalived_tuned_fast": _floor(
            out["haoscar_fast_vs_keepalived_tuned_ratio"], FAST_VS_KEEPALIVED_TUNED_LIMIT
        ),
    }
    return out, floors


def _profiles(spec: ClusterSpec) -> dict[str, Any]:
    profiles: dict[str, Any] = {}
    for name in ("default", "fast"):
        ha = ha_spec(spec, profile=name).ha
        profiles[name] = {
            "heartbeat_interval": ha.heartbeat_interval,
            "dead_time": ha.dead_time,
            "lease_s": ha.lease_s,
        }
    profiles["keepalived"] = {
        "advert_int": {key.removeprefix("keepalived_"): advert for key, advert in KEEPALIVED_SERIES.items()},
        "priorities": [254, 253],
        "initial_state": "BACKUP (primary started first)",
        "nopreempt": True,
    }
    return profiles


def _since_heard(measured: dict[str, Series]) -> dict[str, Any]:
    """Per run and median: the first reply from the standby, and its first gratuitous ARP seen at the client (the
    takeover without the echo grid), minus the primary's last heartbeat (advert) that reached the standby."""
    return {
        "since_last_heard_ms": {key: s.since_heard_ms for key, s in measured.items() if s.since_heard_ms},
        "since_last_heard_median_ms": {key: s.since_heard_median() for key, s in measured.items() if s.since_heard_ms},
        "garp_since_last_heard_ms": {
            key: s.garp_since_heard_ms for key, s in measured.items() if s.garp_since_heard_ms
        },
        "garp_since_last_heard_median_ms": {
            key: s.garp_median() for key, s in measured.items() if s.garp_since_heard_ms
        },
    }


def report(
    spec: ClusterSpec,
    *,
    runs: int,
    vs_keepalived: bool,
    series: dict[str, Series],
    idle_cpu: float | None,
    rss: float | None,
    phases: list[float] | None = None,
) -> dict[str, Any]:
    default_ms = series["haoscar_default"].median()
    out: dict[str, Any] = {
        # what ran (issue 15): the shipped configuration; the fast profile's timers are under "profiles"
        "config": config_block(ha_spec(spec, **shipped_overrides(spec)).ha, profile="default and fast"),
        "haoscar_default_median_ms": default_ms,
        "haoscar_fast_median_ms": series["haoscar_fast"].median(),
    }
    floors: dict[str, Any] = {
        "haoscar_default_le_1000_ms": _floor(default_ms, DEFAULT_LIMIT_MS),
        "idle_cpu_le_2_pct": _floor(idle_cpu, IDLE_CPU_LIMIT_PCT),
        "rss_le_80_mb": _floor(rss, RSS_LIMIT_MB),
    }
    if vs_keepalived:
        part, more = keepalived_part(series)
        out |= part
        floors |= more
    measured = {key: s for key, s in series.items() if s.vip_ms}
    out |= {
        "dhcp_default_median_ms": series["haoscar_default"].dhcp_median(),
        "dhcp_fast_median_ms": series["haoscar_fast"].dhcp_median(),
        "idle_cpu_pct": None if idle_cpu is None else round(idle_cpu, 2),
        "rss_mb": None if rss is None else round(rss, 1),
        "runs": runs,
        "echo_grid_ms": ECHO_GRID_S * 1000,  # the public client's echo interval: the failover times' resolution
        "runs_ms": {key: s.vip_ms for key, s in measured.items()},
        "dhcp_runs_ms": {key: s.dhcp_ms for key, s in series.items() if s.dhcp_ms},
        "vip_owner_after_crash": {key: s.new_owners for key, s in measured.items()},
        "unsteady_starts": {key: s.unsteady_starts for key, s in measured.items()},
        "early_takeovers_ms": {key: s.early_takeovers_ms for key, s in measured.items()},
        "crash_delay_ms": {key: s.crash_delay_ms for key, s in measured.items()},
        # run i of every series crashed at phases[i] of its interval after a heartbeat (advert) reached the standby
        "crash_phases": None if phases is None else [round(p, 4) for p in phases],
        **_since_heard(measured),
        # ms after the crash: last heartbeat heard, dead declared, lease granted (takeover), ARP probe done, VIP
        # added, first gratuitous ARP, services up, first echo reply from the new head at the public client
        "breakdown_ms": {key: s.breakdowns for key, s in series.items() if s.breakdowns},
        "breakdown_median_ms": {key: _median_steps(s.breakdowns) for key, s in series.items() if s.breakdowns},
        "profiles": _profiles(spec),
        "floors": floors,
        "all_floors_pass": all(f["pass"] for f in floors.values()),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    return out
