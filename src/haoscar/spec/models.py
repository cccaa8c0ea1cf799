"""The cluster spec (``cluster.yaml``) as pydantic v2 models.

Field names follow the HA-OSCAR walkthrough (Fetch Image, Add Standby Server) and OSCAR's Define Clients dialog, so
an administrator who knows those dialogs recognises every key. Checks that involve a single field live here; checks
across fields and sections (addresses inside subnets, duplicates, collisions) live in ``spec.checks`` so that every
problem of a spec is reported in one run.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from haoscar.spec.nfs_models import NFS
from haoscar.spec.types import MAC, Domain, HostName, IfName, IPv4, Netmask, Subnet, Text


class SpecModel(BaseModel):
    """Unknown keys are errors (they are usually typos), and a loaded spec is immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Cluster(SpecModel):
    name: HostName
    domain: Domain = "cluster.local"


class Network(SpecModel):
    subnet: Subnet
    gateway: IPv4 | None = None


class Networks(SpecModel):
    private: Network
    public: Network
    heartbeat: Network | None = Field(
        default=None, description="an optional dedicated heartbeat network between the heads"
    )


class HeadNode(SpecModel):
    """A head node, with the fields of HA-OSCAR's Add Standby Server dialog."""

    hostname: HostName
    private_interface: IfName = "eth0"
    private_ip: IPv4
    private_mac: MAC | None = None
    public_interface: IfName = "eth1"
    public_ip: IPv4
    alias_ip: IPv4 = Field(description="the public alias IP that follows the active head")
    private_alias_ip: IPv4 | None = Field(
        default=None,
        description="the private alias IP that follows the active head: every service a compute node uses (DHCP, "
        "TFTP, iPXE, the boot server, the scheduler) is reached through it; the same on both heads",
    )
    netmask: Netmask = Field(description="the local (private) network's mask, as in Add Standby Server")
    gateway: IPv4 | None = None
    heartbeat_interface: IfName = "eth2"
    heartbeat_ip: IPv4 | None = None
    image: Text | None = None


class Heads(SpecModel):
    primary: HeadNode
    standby: HeadNode


# Debian policy 5.6.1: a package name is lowercase letters, digits, + - and ., two or more, starting alphanumeric.
DEB_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


def check_package_name(value: str) -> str:
    if not DEB_PACKAGE.match(value):
        raise ValueError(
            f"{value!r} is not a Debian package name; use lowercase letters, digits, + - and ., e.g. htop or slurmd"
        )
    return value


DebPackage = Annotated[Text, AfterValidator(check_package_name)]


class Image(SpecModel):
    """A client image, with the fields of the Fetch Image dialog."""

    name: HostName
    source: Text = Field(
        default="debootstrap:bookworm",
        description="debootstrap:SUITE, golden-client:HOST, or a directory to copy",
    )
    ip_assignment: Literal["static", "dhcp"] = "static"
    post_install: Literal["beep", "reboot", "shutdown"] = "reboot"
    packages: list[DebPackage] = Field(
        default_factory=list, description="Debian packages installed at image build (docs/packages.md)"
    )


class ClientGroup(SpecModel):
    """Compute clients, with the fields of OSCAR's Define Clients dialog, or a ClusterShell node set."""

    name: HostName | None = None
    image: Text
    domain: Domain | None = None
    base_name: HostName | None = None
    count: int | None = Field(default=None, ge=1, le=65536)
    start_number: int = Field(default=1, ge=0)
    padding: int = Field(default=0, ge=0, le=12)
    nodeset: Text | None = None
    start_ip: IPv4
    netmask: Netmask
    gateway: IPv4 | None = None
    interface: IfName = "eth0"
    macs: dict[Text, MAC] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names_from_one_source(self) -> ClientGroup:
        if self.nodeset is not None and (self.base_name is not None or self.count is not None):
            raise ValueError("give either nodeset or base_name + count, not both")
        if self.nodeset is None and (self.base_name is None or self.count is None):
            raise ValueError("give base_name and count (OSCAR's Define Clients), or a nodeset like node[01-64]")
        return self


class Witness(SpecModel):
    """A third host that grants one head at a time a lease (see docs/ha-safety.md)."""

    hostname: HostName
    addresses: list[IPv4] = Field(min_length=1)
    port: int = Field(default=7405, ge=1, le=65535)


class Service(SpecModel):
    """A head-node service: started in order on the active head, stopped in reverse on demotion."""

    name: HostName
    kind: Literal[
        "command",
        "systemd",
        "tcp",
        "process",
        "dnsmasq",
        "bootserver",
        "status-api",
        "slurmctld",
        "nfs-ganesha",
        "chrony",
        "web",  # the web console on the public alias (docs/web.md)
    ] = "command"
    start: Text | None = None
    stop: Text | None = None
    monitor: Text | None = None
    unit: Text | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    process: Text | None = None
    interval: float = Field(default=1.0, gt=0, description="seconds between two checks of the service's process")
    probe_interval: float = Field(
        default=5.0,
        gt=0,
        description="seconds between two end-to-end probes of a healthy service (status-api: an HTTPS GET, "
        "slurmctld: scontrol ping); every check probes until the service first answers and after a failed probe",
    )
    timeout: float = Field(default=5.0, gt=0)
    max_restarts: int = Field(default=5, ge=0)
    restart_window: float = Field(default=60.0, gt=0)
    address: IPv4 | None = Field(default=None, description="where a tcp monitor connects (default 127.0.0.1)")
    pid_file: Text | None = Field(default=None, description="the pid file of a process service's daemon")
    stop_timeout: float = Field(default=5.0, gt=0, description="SIGTERM grace before SIGKILL")
    kill_timeout: float = Field(default=2.0, gt=0, description="how long to wait for a process after SIGKILL")

    @model_validator(mode="after")
    def _kind_needs(self) -> Service:
        needs: dict[str, tuple[str, ...]] = {
            "command": ("start",),
            "systemd": ("unit",),
            "tcp": ("start", "port"),
            "process": ("start", "process"),
        }
        missing = [name for name in needs.get(self.kind, ()) if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.kind} service needs {', '.join(missing)}")
        return self


class ReplicatedPath(SpecModel):
    path: Text
    exclude: list[Text] = Field(default_factory=list)


class Fencing(SpecModel):
    method: Literal["none", "lab", "fence-agents", "ssh"] = "none"
    agent: Text | None = Field(default=None, description="the fence_* agent for method fence-agents")
    options: dict[Text, Text] = Field(default_factory=dict)
    targets: dict[HostName, dict[Text, Text]] = Field(
        default_factory=dict,
        description="per-head options over ``options`` when that head is fenced, e.g. {head1: {ip: BMC address}}",
    )
    timeout: float = Field(default=20.0, gt=0)


class Alert(SpecModel):
    """An alert hook: HA events at or above ``min_severity`` go to a command, a webhook URL, or e-mail."""

    command: Text | None = Field(default=None, description="run with the event as JSON on stdin")
    webhook: Text | None = Field(default=None, description="an http(s) URL that receives the event as a JSON POST")
    email: Text | None = Field(default=None, description="a recipient address (more in mail_to)")
    smtp_server: Text | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="starttls: upgrade and verify the server certificate (system CAs or smtp_ca_file); tls: TLS "
        "from the first byte (port 465); none: plain SMTP, only for a trusted relay on the head itself",
    )
    smtp_ca_file: Text | None = Field(default=None, description="CA bundle that signs the SMTP server's certificate")
    smtp_user: Text | None = Field(default=None, description="SMTP AUTH user (never sent over a plain connection)")
    smtp_password_file: Text | None = Field(default=None, description="mode 0600 file holding smtp_user's password")
    mail_from: Text = "haoscar@localhost"
    mail_to: list[Text] = Field(default_factory=list)
    min_severity: Literal["info", "warning", "critical"] = "warning"
    timeout: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _one_kind(self) -> Alert:
        kinds = [
            k
            for k, on in (("command", self.command), ("webhook", self.webhook), ("email", self.email or self.mail_to))
            if on
        ]
        if len(kinds) != 1:
            raise ValueError("an alert has exactly one of command, webhook or email (+ mail_to)")
        if self.webhook is not None and not self.webhook.startswith(("http://", "https://")):
            raise ValueError(f"{self.webhook!r} is not an http(s) URL; write e.g. http://198.18.0.250:8080/hook")
        if kinds == ["email"] and not self.smtp_server:
            raise ValueError("an email alert needs smtp_server, the SMTP server that relays it")
        if self.smtp_user is not None and self.smtp_security == "none":
            raise ValueError("smtp_user with smtp_security: none would send the password in clear; use starttls or tls")
        if (self.smtp_user is None) != (self.smtp_password_file is None):
            raise ValueError("smtp_user and smtp_password_file go together (the password stays out of the spec)")
        for address in [self.email, *self.mail_to, self.mail_from]:
            if address is not None and "@" not in address:
                raise ValueError(f"{address!r} is not an e-mail address; write e.g. ops@example.org")
        return self

    @property
    def kind(self) -> Literal["command", "webhook", "email"]:
        if self.command is not None:
            return "command"
        if self.webhook is not None:
            return "webhook"
        return "email"

    @property
    def recipients(self) -> list[str]:
        return ([self.email] if self.email else []) + list(self.mail_to)


class HA(SpecModel):
    heartbeat_interval: float = Field(default=0.2, gt=0, le=60)
    dead_time: float = Field(default=0.6, gt=0, le=600)
    port: int = Field(default=7404, ge=1, le=65535)
    failback: Literal["manual", "auto"] = "manual"
    failback_stable_s: float = Field(default=10.0, ge=0)
    lease_s: float = Field(default=0.8, gt=0, description="witness lease; the active renews it every heartbeat")
    initdead_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="at start-up the standby, hearing nobody, waits this long before going for the role "
        "(Heartbeat's initdead), so a slow-starting primary still wins the cold start; >= dead_time",
    )
    key_file: Text = "/etc/haoscar/ha.key"
    witness: Witness | None = None
    services: list[Service] = Field(default_factory=list)
    replicate: list[ReplicatedPath] = Field(
        default_factory=list,
        description="trees copied to the standby continuously (empty: /home, /etc/haoscar, the image store and the "
        "scheduler state, see docs/replication.md)",
    )
    replicate_roots: list[Text] = Field(
        default_factory=lambda: ["/home", "/etc/haoscar", "/var/lib/haoscar", "/srv", "/var/spool"],
        description="the only trees a replicate path may lie in (replication writes as root on the standby)",
    )
    replication: bool = Field(
        default=True, description="the HA daemon replicates the head's data to the standby (docs/replication.md)"
    )
    replication_port: int = Field(default=7407, ge=1, le=65535, description="the standby's database channel")
    replication_rsync_port: int = Field(default=7408, ge=1, le=65535, description="each head's rsync daemon")
    replication_lag_alert_s: float = Field(default=5.0, gt=0, description="file lag (s) that raises an event")
    replication_full_pass_s: float = Field(default=600.0, gt=0, description="period of the full rsync pass")
    replication_batch_s: float = Field(default=0.075, gt=0, le=5, description="how long file events are batched")
    replication_ack_timeout_s: float = Field(
        default=2.0, gt=0, description="how long a commit waits for the standby before marking it stale"
    )
    fencing: Fencing = Field(default_factory=Fencing)
    alerts: list[Alert] = Field(default_factory=list)
    api_port: int = Field(default=7406, ge=1, le=65535, description="the status API's port on the heads")
    api_token_file: Text = Field(default="/etc/haoscar/api.token", description="mode 0600; guards POST requests")
    api_public: bool = Field(
        default=False, description="the API and read-only status also listen on the heads' public addresses"
    )
    status_port: int = Field(
        default=7409, ge=1, le=65535, description="every head's read-only GET /status, in any role (ha status)"
    )
    realtime: bool = Field(default=False, description="run the daemon with SCHED_RR real-time priority")
    realtime_priority: int = Field(default=10, ge=1, le=99)
    lock_memory: bool = Field(default=False, description="mlockall() so the daemon is never paged out")
    loop_lag_warning: float = Field(default=0.1, gt=0, description="event-loop lag (s) that logs a warning")
    ping_targets: list[IPv4] = Field(
        default_factory=list,
        description="public-side addresses (a router, a gateway) the active head must reach; a head that reaches "
        "fewer of them than its standby hands the role over (Pacemaker's ping agent)",
    )
    ping_interval: float = Field(default=1.0, gt=0, le=60, description="seconds between two public health checks")
    ping_failures: int = Field(
        default=3, ge=1, le=100, description="consecutive failed checks before a target (or the link) counts as lost"
    )


class LabClient(SpecModel):
    """The lab's public-side user host."""

    hostname: HostName = "client"
    ip: IPv4


class Lab(SpecModel):
    """Lab-only hosts: a user on the public network, and a simulated BMC per head. The witness comes from
    ``ha.witness``."""

    client: LabClient | None = None
    bmcs: dict[HostName, IPv4] = Field(
        default_factory=dict,
        description="head -> address of its BMC (an ipmi_sim lab host named HEAD-bmc that powers that head)",
    )


class ClusterSpec(SpecModel):
    cluster: Cluster
    networks: Networks
    heads: Heads
    images: list[Image] = Field(default_factory=list)
    clients: list[ClientGroup] = Field(default_factory=list)
    ha: HA = Field(default_factory=HA)
    nfs: NFS = Field(default_factory=NFS, description="what the heads export over NFS (docs/nfs.md)")
    lab: Lab = Field(default_factory=Lab)
