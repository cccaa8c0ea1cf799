"""The job checks of ``haoscar cluster test``: a Slurm job step on every node (``srun`` through the controller) and
an MPI hello across the nodes (Debian's Open MPI, ``mpirun`` over ssh with the cluster key). Command lines and the
parsers of what came back; the command module runs them (docs/cluster-test.md)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from haoscar.provision.fanout import Limits
from haoscar.provision.slurm_conf import CONF_PATH

SLURM_JOB_NAME = "haoscar-cluster-test"
MPI_DIR = "/var/lib/haoscar/cluster-test"  # on each node: haoscar's own directory (private to a lab host too)
MPI_BINARY = f"{MPI_DIR}/mpi-hello"
HELLO_MARK = "haoscar-mpi-hello"
SHOWN_CHARS = 300  # of a program's message in a reason

MPI_HELLO_C = f"""#include <mpi.h>
#include <stdio.h>

/* haoscar cluster test: every rank says who it is and where it runs. */
int main(int argc, char **argv) {{
    int rank, size, len;
    char host[MPI_MAX_PROCESSOR_NAME];
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Get_processor_name(host, &len);
    printf("{HELLO_MARK} %d %d %s\\n", rank, size, host);
    MPI_Finalize();
    return 0;
}}
"""


def srun_argv(nodes: list[str], folded: str, immediate: int) -> list[str]:
    """One task per node, ``hostname -s`` each; ``--immediate`` makes srun give up (with Slurm's reason) instead of
    queueing when the nodes cannot be allocated now (down, drained, busy)."""
    count = len(nodes)
    return [
        "env",
        f"SLURM_CONF={CONF_PATH}",
        "srun",
        f"--nodes={count}",
        f"--ntasks={count}",
        "--ntasks-per-node=1",
        f"--nodelist={folded}",
        f"--immediate={immediate}",
        "--time=1",
        f"--job-name={SLURM_JOB_NAME}",
        "hostname",
        "-s",
    ]


HOLDING_STATES = "RUNNING,COMPLETING,CONFIGURING,SUSPENDED"
SHOWN_HOLDERS = 3  # jobs named in a reason; the count says how many more


def holders_argv(folded: str) -> list[str]:
    """The jobs that hold any of these nodes now, one line each: id, name, user, state, time used, limit, nodes."""
    return [
        "env",
        f"SLURM_CONF={CONF_PATH}",
        "squeue",
        "--noheader",
        f"--nodelist={folded}",
        f"--states={HOLDING_STATES}",
        "--format=%i|%j|%u|%T|%M|%l|%N",
    ]


def holders_text(output: str) -> str:
    """``squeue``'s lines as a reason's tail: ``held by job 7 haoscar-cluster-test (root, RUNNING 0:42 of 1:00 on
    node[01-03])``; empty when no job holds them."""
    jobs = []
    for line in output.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 7:
            continue
        job, name, user, state, used, limit, nodes = fields
        jobs.append(f"job {job} {name} ({user}, {state} {used} of {limit} on {nodes})")
    if not jobs:
        return ""
    more = f" and {len(jobs) - SHOWN_HOLDERS} more" if len(jobs) > SHOWN_HOLDERS else ""
    return "held by " + "; ".join(jobs[:SHOWN_HOLDERS]) + more


def short(name: str) -> str:
    return name.split(".", 1)[0]


def hosts_that_ran(output: str) -> set[str]:
    """The short host names a job printed, one per line."""
    return {short(line.strip()) for line in output.splitlines() if line.strip()}


def program_message(stdout: str, stderr: str) -> str:
    """What a failed program said, on one line: Slurm's ``srun: error:`` lines, Open MPI's boxed text without the
    box, else the last lines it printed."""
    lines = [line.strip() for line in (stderr + "\n" + stdout).splitlines()]
    lines = [line for line in lines if line and not re.fullmatch(r"[-=*]+", line)]
    errors = [line for line in lines if "error" in line.lower() or "fatal" in line.lower()]
    chosen = errors or lines[-3:]
    text = " ".join(chosen) if chosen else "it said nothing"
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def mpicc_argv(source: Path, binary: Path) -> list[str]:
    return ["mpicc", "-O1", "-o", str(binary), str(source)]


def mpirun_argv(nodes: Iterable[str], ssh_config: Path, subnet: str) -> list[str]:
    """One rank per node, started by ``mpirun`` as root over ssh with haoscar's client configuration (each node's
    address and the cluster key); Open MPI must be told it runs as root (``--allow-run-as-root``)."""
    hosts = list(nodes)
    return [
        "mpirun",
        "--allow-run-as-root",
        "-np",
        str(len(hosts)),
        "--host",
        ",".join(f"{host}:1" for host in hosts),
        "--mca",
        "plm_rsh_args",
        f"-F {ssh_config}",
        *_common(subnet),
        MPI_BINARY,
    ]


def _common(subnet: str) -> list[str]:
    """Every node's daemon started from here (no tree spawn: nodes need no keys to each other), the ranks' TCP
    and Open MPI's own traffic on the private network only."""
    return [
        "--mca",
        "plm_rsh_no_tree_spawn",
        "1",
        "--mca",
        "btl",
        "tcp,self",
        "--mca",
        "btl_tcp_if_include",
        subnet,
        "--mca",
        "oob_tcp_if_include",
        subnet,
    ]


def ranks_by_host(output: str) -> tuple[dict[str, int], int | None]:
    """Each host that reported a rank (its short name -> how many ranks), and the world size they reported."""
    hosts: dict[str, int] = {}
    size: int | None = None
    for line in output.splitlines():
        words = line.split()
        if len(words) == 4 and words[0] == HELLO_MARK and words[1].isdigit() and words[2].isdigit():
            hosts[short(words[3])] = hosts.get(short(words[3]), 0) + 1
            size = int(words[2])
    return hosts, size


def mpirun_user_argv(user: str, nodes: Iterable[str], program: str, subnet: str, limits: Limits) -> list[str]:
    """The same run as ``user`` (``runuser`` on this head): ``mpirun`` starts each node's daemon with the user's own
    ssh key and the names /etc/hosts gives the nodes, as a user's job would."""
    hosts = list(nodes)
    ssh = f"-o BatchMode=yes -o StrictHostKeyChecking=accept-new -o ConnectTimeout={limits.connect_timeout:g}"
    return [
        "runuser",
        "-u",
        user,
        "--",
        "mpirun",
        "-np",
        str(len(hosts)),
        "--host",
        ",".join(f"{host}:1" for host in hosts),
        "--mca",
        "plm_rsh_args",
        ssh,
        *_common(subnet),
        program,
    ]
