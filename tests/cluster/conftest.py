"""A real one-node SLURM on localhost for the cluster tier (scripts/slurm/local_cluster.py).

Installs Debian's slurm and munge packages if missing (needs root and apt), writes
/etc/slurm/slurm.conf, starts munged, slurmctld and slurmd, puts the ``sacct`` stand-in
(scripts/slurm/bin) first on PATH, and stops the daemons by pid at the end of the session.
Skip the tier with ``-m "not cluster"``. It refuses to touch a machine whose slurm.conf it did
not write (a real cluster's login node) unless UME_CLUSTER_TESTS=force.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _local_cluster():
    spec = importlib.util.spec_from_file_location(
        "ume_local_cluster", REPO / "scripts/slurm/local_cluster.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Cluster:
    def __init__(self, mod, state: Path, pids: dict[str, int], setup_s: float) -> None:
        self.mod, self.state, self.pids, self.setup_s = mod, state, pids, setup_s
        venv_bin = Path(sys.executable).parent
        self.env = dict(os.environ)
        self.env["PATH"] = os.pathsep.join([str(mod.BIN), str(venv_bin), os.environ["PATH"]])

    def squeue(self, *args: str) -> str:
        res = subprocess.run(
            ["squeue", "-h", "-t", "all", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=30,
        )
        return res.stdout.strip()


@pytest.fixture(scope="session")
def slurm():
    if os.geteuid() != 0:
        pytest.skip("the cluster tier needs root: it installs and starts a local SLURM")
    mod = _local_cluster()
    conf = mod.CONF
    if (
        conf.exists()
        and mod.MARK not in conf.read_text()
        and os.environ.get("UME_CLUSTER_TESTS") != "force"
    ):
        pytest.skip(f"{conf} exists and was not written by the test tier: not touching this SLURM")
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        pytest.skip("no SLURM and no apt-get to install it")
    state = Path(tempfile.mkdtemp(prefix="ume-slurm-"))
    t0 = time.monotonic()
    pids = mod.start(state)
    cluster = Cluster(mod, state, pids, time.monotonic() - t0)
    print(f"\n[cluster] local SLURM up in {cluster.setup_s:.1f}s (pids {pids})", file=sys.stderr)
    try:
        yield cluster
    finally:
        mod.stop(state)
        for name, pid in pids.items():
            assert not mod._alive(pid), f"{name} (pid {pid}) still running after stop"
        shutil.rmtree(state, ignore_errors=True)
