"""The installation wizard (OSCAR's and HA-OSCAR's): its steps as data, and where a cluster is in them.

Nothing here remembers a browser: every step's state is derived from the cluster itself (the database, the image
store, the netboot files, dnsmasq, the install states), so the wizard resumes at the right step after a reload, a
browser crash or a switch to the other head. A step calls the same command a CLI command calls; ``cli`` names it.
The only wizard state of its own are the drafts of a failed submission and the last cluster test's outcome, kept
as ``settings`` rows (replicated with the database): see ``commands.wizard_steps``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from haoscar.commands.env import Env
from haoscar.commands.wizard_facts import ClusterFacts, gather

__all__ = ["STEPS", "Step", "StepState", "WizardProgress", "progress", "step_named"]

State = Literal["done", "current", "todo"]


@dataclass(frozen=True)
class Step:
    """One page of the wizard: ``key`` is its URL segment (/wizard/KEY), ``seed`` what OSCAR / HA-OSCAR called it."""

    key: str
    title: str
    seed: str
    cli: str  # the CLI command family the step drives
    summary: str
    done: Callable[[ClusterFacts], bool] = field(repr=False, compare=False)
    note: Callable[[ClusterFacts], str] = field(repr=False, compare=False)


def _installed(facts: ClusterFacts) -> bool:
    return bool(facts.compute) and all(n.install_state in ("installed", "up") for n in facts.compute)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


STEPS: tuple[Step, ...] = (
    Step(
        "server", "Install Server Packages", "Install OSCAR Server packages (HA-OSCAR: install server packages)",
        "haoscar spec apply", "The tools haoscar drives on this head, and the cluster spec loaded into the database.",
        lambda f: not f.missing_tools and f.spec_applied,
        lambda f: ("missing: " + ", ".join(f.missing_tools)) if f.missing_tools
        else ("spec applied" if f.spec_applied else "no cluster spec applied yet"),
    ),
    Step(
        "packages", "Select and Configure Packages", "Select packages to install; Configure Selected OSCAR packages",
        "haoscar pkg install", "Extra Debian packages for the client image (optional: a kernel and sshd are in).",
        lambda f: f.packages_selected is not None or bool(f.images),
        lambda f: ", ".join(f.packages_selected or []) or ("image built" if f.images else "none selected"),
    ),
    Step(
        "image", "Build or Fetch an Image", "Build OSCAR Client Image; Fetch a System Installation Suite Image",
        "haoscar image build | haoscar image fetch", "A client image: built with debootstrap, or fetched from a "
        "golden client (HA-OSCAR fetched the primary itself as serverimage).",
        lambda f: bool(f.images),
        lambda f: ", ".join(f.images) or "no image yet",
    ),
    Step(
        "clients", "Define Clients", "Define OSCAR Clients", "haoscar node add",
        "Compute nodes by base name and count (or a node set), their image and addresses.",
        lambda f: bool(f.compute),
        lambda f: _plural(len(f.compute), "client"),
    ),
    Step(
        "standby", "Add Standby Server", "AddStandby Server", "haoscar standby add",
        "The standby head as a node of its own: its image, public interfaces, alias IP and local IP.",
        lambda f: f.standby is not None,
        lambda f: f"{f.standby.name} ({f.standby.ip})" if f.standby else "no standby head yet",
    ),
    Step(
        "macs", "Set up Networking: Collect and Assign MACs",
        "Setup Networking; Collect MAC Address; Assign MAC to Node",
        "haoscar mac collect | haoscar mac assign | haoscar mac assign-all",
        "Unknown MACs appear as their machines ask for DHCP; give each to a node by click, or all in order.",
        lambda f: bool(f.compute) and not f.without_mac,
        lambda f: f"{_plural(len(f.without_mac), 'node')} without a MAC, {_plural(f.sightings, 'unknown MAC')}",
    ),
    Step(
        "dhcp", "Configure DHCP Server", "Configure DHCP Server", "haoscar dhcp configure",
        "dnsmasq on the private interface: an address and the boot file for every node with a MAC.",
        lambda f: f.dhcp_running,
        lambda f: "dnsmasq running" if f.dhcp_running else "dnsmasq not running",
    ),
    Step(
        "netboot", "Set up Network Boot", "Setup Network Boot",
        "haoscar netboot sync | haoscar netboot build-installer",
        "The installer kernel and initramfs, and an iPXE script for every node with a MAC.",
        lambda f: f.installer_built and not f.netboot_missing,
        lambda f: ("installer built" if f.installer_built else "no installer yet")
        + (f"; no boot script for {', '.join(f.netboot_missing[:5])}" if f.netboot_missing else ""),
    ),
    Step(
        "install", "Monitor the Install", "Monitor cluster deployment", "haoscar install monitor",
        "Power the nodes on (network boot first): each installing node shows its stage and a progress bar.",
        _installed,
        lambda f: ", ".join(f"{state} {count}" for state, count in sorted(f.install_counts.items())) or "no nodes",
    ),
    Step(
        "complete", "Complete Installation", "Complete Installation", "haoscar install complete",
        "The HA configuration written on both heads (and the witness), the daemons started, the standby up.",
        lambda f: f.standby is not None and f.standby.install_state == "up",
        lambda f: f"standby {f.standby.install_state}" if f.standby else "no standby head",
    ),
    Step(
        "test", "Complete and Test Cluster Setup", "Complete Cluster Setup; Test Cluster Setup",
        "haoscar cluster sync | haoscar cluster test",
        "Accounts, hosts and keys pushed to every node, then ssh, name resolution, /home, time, Slurm and MPI checked.",
        lambda f: f.last_test_ok is True,
        lambda f: "never run" if f.last_test_ok is None else ("passed" if f.last_test_ok else "failed"),
    ),
)  # fmt: skip


def step_named(key: str) -> Step | None:
    return next((step for step in STEPS if step.key == key), None)


@dataclass(frozen=True)
class StepState:
    step: Step
    state: State
    note: str
    number: int

    def as_dict(self) -> dict[str, object]:
        s = self.step
        return {"key": s.key, "number": self.number, "title": s.title, "seed": s.seed, "cli": s.cli,
                "state": self.state, "note": self.note}  # fmt: skip


@dataclass(frozen=True)
class WizardProgress:
    steps: list[StepState]
    facts: ClusterFacts

    @property
    def current(self) -> str | None:
        """The key of the first step not done (None: every step is done)."""
        return next((s.step.key for s in self.steps if s.state == "current"), None)

    def state_of(self, key: str) -> State:
        return next(s.state for s in self.steps if s.step.key == key)

    def as_dict(self) -> dict[str, object]:
        return {"current": self.current, "steps": [s.as_dict() for s in self.steps]}


def progress(env: Env) -> WizardProgress:
    """Each step done / current / not yet, from the cluster's state now: the first step not done is current."""
    facts = gather(env)
    states: list[StepState] = []
    current_found = False
    for number, step in enumerate(STEPS, start=1):
        state: State = "done" if step.done(facts) else "todo"
        if state == "todo" and not current_found:
            state, current_found = "current", True
        states.append(StepState(step, state, step.note(facts), number))
    return WizardProgress(states, facts)
