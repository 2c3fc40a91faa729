"""A one-node SLURM on localhost, for the cluster test tier and for trying the slurm profile.

    python scripts/slurm/local_cluster.py start [--state-dir DIR]   # install if missing, start
    python scripts/slurm/local_cluster.py stop  [--state-dir DIR]   # stop by pid

Needs root and apt (Debian's slurmctld, slurmd, slurm-client, munge; Slurm 22.05). Writes
/etc/slurm/slurm.conf (tools that scrub SLURM_* variables lose SLURM_CONF), keeps state,
spool, logs and pids under the state folder, and starts munged (as user munge), slurmctld and
`slurmd -N localhost`. There is no accounting daemon: put ``scripts/slurm/bin`` first on PATH
so that submitit's ``sacct`` calls are answered from ``squeue`` (see bin/sacct).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
CONF = Path("/etc/slurm/slurm.conf")
BIN = Path(__file__).resolve().parent / "bin"  # the sacct stand-in
DEFAULT_STATE = Path("/tmp/ume-slurm")
PARTITION = "debug"
MARK = "written by scripts/slurm/local_cluster.py"


def install(timeout: float = 300) -> float:
    """apt-get install the packages if a daemon is missing; returns seconds spent."""
    t0 = time.monotonic()
    if all(shutil.which(b) for b in ("slurmctld", "slurmd", "sbatch", "munged")):
        return 0.0
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    apt = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]
    if subprocess.run(apt, env=env, capture_output=True, timeout=timeout).returncode != 0:
        # a fresh machine may have no package lists yet
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, timeout=timeout)
        subprocess.run(apt, env=env, check=True, capture_output=True, timeout=timeout)
    return time.monotonic() - t0


def write_conf(state: Path) -> str:
    cpus = os.cpu_count() or 1
    mem_mb = _mem_total_mb() * 8 // 10  # slurmd drains a node that has less than it claims
    text = f"""# {MARK}: a one-node test cluster
ClusterName=ume-local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/spool
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# finished jobs stay visible to squeue (and so to the sacct stand-in) this long
MinJobAge=600
KillWait=2
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""
    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_text(text)
    return text


def _mem_total_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 2048  # pragma: no cover


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def start(state: Path = DEFAULT_STATE, timeout: float = 60) -> dict[str, int]:
    """Start munged, slurmctld and slurmd; wait until the node is idle. Returns their pids."""
    install()
    state = Path(state)
    previous = _previous_state()
    if previous is not None:  # a cluster this script started before (maybe still running)
        stop(previous)
    if state.exists():
        stop(state)
        shutil.rmtree(state, ignore_errors=True)
    for d in ("ctld", "spool", "munge"):
        (state / d).mkdir(parents=True, exist_ok=True)
    write_conf(state)
    # munged runs as user munge; its socket folder must be its own
    run_munge = Path("/run/munge")
    run_munge.mkdir(parents=True, exist_ok=True)
    shutil.chown(run_munge, "munge", "munge")
    shutil.chown(state / "munge", "munge", "munge")
    munge_pid = state / "munge" / "munged.pid"
    subprocess.run(
        ["runuser", "-u", "munge", "--", "munged", "--pid-file", str(munge_pid), "--force"],
        check=True,
        timeout=30,
    )
    subprocess.run(["slurmctld", "-c"], check=True, timeout=30)  # -c: no state from a past run
    subprocess.run(["slurmd", "-N", "localhost"], check=True, timeout=30)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = subprocess.run(
            ["sinfo", "-h", "-n", "localhost", "-o", "%T"], capture_output=True, text=True
        )
        if res.stdout.strip() in ("idle", "mixed", "allocated"):
            break
        time.sleep(0.5)
    else:
        log = (state / "slurmctld.log").read_text()[-2000:]
        raise RuntimeError(f"the local SLURM node did not become idle in {timeout}s:\n{log}")
    return pids(state)


def _previous_state() -> Path | None:
    if not CONF.exists() or MARK not in CONF.read_text():
        return None
    for line in CONF.read_text().splitlines():
        if line.startswith("SlurmctldPidFile="):
            return Path(line.split("=", 1)[1]).parent
    return None


def pids(state: Path = DEFAULT_STATE) -> dict[str, int]:
    state = Path(state)
    files = {
        "slurmd": state / "slurmd.pid",
        "slurmctld": state / "slurmctld.pid",
        "munged": state / "munge" / "munged.pid",
    }
    return {name: pid for name, f in files.items() if (pid := _pid(f))}


def stop(state: Path = DEFAULT_STATE, timeout: float = 20) -> None:
    """Cancel every job, stop the daemons by their pids (never by name)."""
    state = Path(state)
    running = pids(state)
    if _alive(running.get("slurmctld")):
        subprocess.run(["scancel", "--full", "--user", "root"], capture_output=True, timeout=10)
        subprocess.run(["scontrol", "shutdown"], capture_output=True, timeout=10)
    deadline = time.monotonic() + timeout
    for name in ("slurmd", "slurmctld", "munged"):
        pid = running.get(name)
        if name == "munged" and _alive(pid):
            os.kill(pid, signal.SIGTERM)
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["start", "stop"])
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE)
    a = p.parse_args()
    if a.action == "start":
        print(start(a.state_dir))
        print(f"export PATH={BIN}:$PATH   # the sacct stand-in")
    else:
        stop(a.state_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
