"""One launcher for every launched stage: in-process (local) or a SLURM job through submitit.

``run_stage`` is what the CLI calls for a launched stage. Locally it simply calls the stage
function. With ``launch.launcher: slurm`` it submits the call through
``submitit.AutoExecutor(cluster="slurm")`` with the rule's resources and ``launch.slurm``
options, waits, copies the job's stdout/stderr to this process's stderr (which the rule sends
to its log), records job id, nodes and final state in ``job.json`` and in the stage's
``manifest.json``, and turns every way a job can end badly into a :class:`LaunchError` that
names the rule and the log:

* no ``sbatch``/``srun`` on this machine; sbatch refusing the job (unknown partition, more
  GPUs or memory than a node has, bad account/QoS); a job pending for a reason that never
  resolves (e.g. more nodes than the partition has) — it is cancelled;
* the stage raising in the job (FAILED), the job cancelled, out of memory, or TIMEOUT after
  ``launch.slurm.max_requeues`` requeues.

Every job is a submitit ``Checkpointable``: at preemption or time-out it is requeued with the
same call, and a stage following :mod:`ume.launch.resumable` resumes from its last checkpoint.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from submitit.helpers import Checkpointable, DelayedSubmission

from ume.config import LaunchConfig
from ume.errors import UmeError
from ume.io import MANIFEST_NAME, write_json
from ume.launch.resources import Resources

log = logging.getLogger(__name__)

JOB_RECORD = "job.json"
# Job states that are not final (sacct/squeue names).
_RUNNING = {
    "PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "COMPLETING",
    "CONFIGURING", "PREEMPTED", "SUSPENDED", "RESIZING", "READY", "SIGNALING", "STAGE_OUT",
    "UNKNOWN",
}  # fmt: skip
# Pending reasons that never resolve by waiting: the request does not fit the cluster.
_NEVER_RUNS = {
    "BadConstraints", "PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit",
    "InvalidAccount", "InvalidQOS", "QOSMaxGRESPerJob", "QOSMaxCpuPerJobLimit",
    "QOSMaxNodePerJobLimit", "QOSMaxWallDurationPerJobLimit", "MaxGRESPerAccount",
}  # fmt: skip


class LaunchError(UmeError):
    """A launched stage did not run to completion; says which rule, why, and where the log is."""


class StageCall(Checkpointable):
    """The pickled call a job runs: set-up of the job's process, then ``fn(*args, **kwargs)``.

    Checkpointable: at preemption or time-out submitit requeues this same call (the stage
    resumes from its checkpoints). The stage's return value is not sent back: stages write
    their artifacts to disk.
    """

    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> None:
        self.fn, self.args, self.kwargs = fn, tuple(args), dict(kwargs)

    def __call__(self) -> None:
        import submitit

        from ume.offline import set_offline_env

        set_offline_env()
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s"
        )
        env = submitit.JobEnvironment()
        if env.num_tasks > 1:
            from ume.launch.distributed import export_torch_env

            log.info("torch.distributed: %s", export_torch_env())
        self.fn(*self.args, **self.kwargs)

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        log.warning("preempted or at the time limit: requeued; resumes from the last checkpoint")
        return DelayedSubmission(self, *args, **kwargs)


def run_stage(
    fn: Callable[..., Any],
    args: tuple = (),
    kwargs: dict[str, Any] | None = None,
    *,
    stage: str,
    launch: LaunchConfig | None = None,
    resources: Resources | None = None,
    rule: str | None = None,
    log_path: str | Path | None = None,
    record_dir: str | Path | None = None,
    distributed: bool = False,
    cluster: str = "slurm",
) -> Any:
    """Run ``fn(*args, **kwargs)`` in-process or as a SLURM job (see the module docstring).

    ``record_dir``: the stage's output folder (its ``manifest.json`` gets the job record).
    ``distributed``: one task per GPU with torch.distributed set up (training stages).
    ``cluster``: submitit's executor for ``launcher: slurm``; tests use ``"local"``.
    """
    kwargs = kwargs or {}
    launch = launch or LaunchConfig()
    if launch.launcher == "local":
        return fn(*args, **kwargs)
    job = SubmittedStage(
        StageCall(fn, args, kwargs),
        stage=stage,
        launch=launch,
        resources=resources or Resources(),
        rule=rule,
        log_path=log_path,
        record_dir=record_dir,
        distributed=distributed,
        cluster=cluster,
    )
    return job.run()


class SubmittedStage:
    def __init__(
        self,
        call: StageCall,
        *,
        stage: str,
        launch: LaunchConfig,
        resources: Resources,
        rule: str | None,
        log_path: str | Path | None,
        record_dir: str | Path | None,
        distributed: bool,
        cluster: str,
    ) -> None:
        self.call, self.stage, self.launch, self.resources = call, stage, launch, resources
        self.rule, self.distributed, self.cluster = rule, distributed, cluster
        self.log_path = Path(log_path) if log_path else None
        self.record_dir = Path(record_dir) if record_dir else None
        base = self.log_path.with_suffix(".slurm") if self.log_path else None
        if base is None:
            base = (self.record_dir or Path(".")) / f".{stage}.slurm"
        self.folder = base  # submitit's pickles and the job's own logs, one subfolder per job
        self.record: dict[str, Any] = {"rule": rule, "stage": stage}
        self._submit_time = time.time()  # a manifest older than this is not this job's

    # ------------------------------------------------------------------ messages
    def _who(self) -> str:
        if self.rule:
            return f"rule {self.rule}"
        if self.log_path:  # logs/<rule>.log, logs/eval/<suite>/<task>.log: name it after its log
            parts = self.log_path.with_suffix("").parts
            tail = (
                parts[len(parts) - parts[::-1].index("logs") :] if "logs" in parts else parts[-1:]
            )
            return f"rule {'/'.join(tail)}" if len(tail) == 1 else f"job {'/'.join(tail)}"
        return f"stage {self.stage}"

    def _error(self, what: str, detail: str = "") -> LaunchError:
        where = f"; log: {self.log_path}" if self.log_path else ""
        return LaunchError(f"{self._who()}: {what}{where}" + (f"\n{detail}" if detail else ""))

    # ------------------------------------------------------------------ submission
    def _executor(self):
        import submitit

        if self.cluster == "slurm":
            missing = [b for b in ("sbatch", "srun") if shutil.which(b) is None]
            if missing:
                raise self._error(
                    f"launch.launcher is 'slurm' (the slurm profile sets it) but this machine has "
                    f"no SLURM client ({' and '.join(missing)} not on PATH). Run Snakemake on a "
                    "SLURM login node, or run locally instead: leave out `--profile slurm` "
                    "(launch.launcher: local is the default), e.g. `snakemake --cores all all`"
                )
        s = self.launch.slurm
        ex = submitit.AutoExecutor(
            folder=self.folder / "%j", cluster=self.cluster, slurm_max_num_timeout=s.max_requeues
        )
        params: dict[str, Any] = self.resources.submitit_parameters(self.distributed)
        params["name"] = "ume-" + self._who().split(" ", 1)[1].replace("/", "-")
        slurm = {
            "slurm_partition": s.partition,
            "slurm_account": s.account,
            "slurm_qos": s.qos,
            "slurm_constraint": s.constraint,
            "slurm_setup": list(s.setup) or None,
            "slurm_additional_parameters": dict(s.additional_parameters) or None,
        }
        params.update({k: v for k, v in slurm.items() if v is not None})
        ex.update_parameters(**params)
        self.record["parameters"] = params
        return ex

    def run(self) -> None:
        ex = self._executor()
        self._submit_time = time.time() - 60  # compute nodes' clocks may lag a little
        try:
            job = ex.submit(self.call)
        except Exception as e:  # submitit raises FailedJobError with sbatch's stderr
            self._write_record(state="REFUSED", error=_sbatch_message(e), finished=_now())
            raise self._error(
                f"SLURM refused the job: {_sbatch_message(e)} (asked: "
                f"{self.resources.describe()}, partition={self.launch.slurm.partition or 'default'}"
                "). Check the rule's resources (`--set-resources` in the profile) and "
                "launch.slurm against `sinfo`"
            ) from None
        self.record.update(
            job_id=str(job.job_id),
            folder=str(job.paths.folder),
            submitted=_now(),
            resources=self.resources.describe(),
        )
        print(f"[ume] {self._who()}: submitted SLURM job {job.job_id}", file=sys.stderr)
        self._write_record(state="SUBMITTED")
        state = "UNKNOWN"
        try:
            state = self._wait(job)
            if state not in ("COMPLETED", "FINISHED", "FAILED") and not _result_files_exist(job):
                job._results_timeout_s = 3  # no result will come (cancelled, timed out, killed)
            failure = job.exception()  # None on success; waits for the result file
        except KeyboardInterrupt:
            job.cancel(check=False)
            self._finish(job, "CANCELLED")
            raise self._error(
                f"interrupted: SLURM job {job.job_id} cancelled (a rerun resumes from its "
                "checkpoints, if the stage writes any)"
            ) from None
        except LaunchError:
            self._finish(job, "CANCELLED")
            raise
        if failure is None:
            state = self._final_state(job, state)
            self._finish(job, state)
            return None
        state = self._final_state(job, state, wait_s=10)
        if state == "COMPLETED":  # the local executor's process ends normally after an exception
            state = "FAILED"
        self._finish(job, state)
        text = str(failure)
        if "has not produced any output" in text:
            why = (
                " without a result (cancelled, preempted beyond requeues, out of memory or over "
                f"its time limit of {self.resources.runtime} min)"
            )
        else:  # the stage raised: its exception is the last line of the trace
            parts = text.split("----------------------")
            lines = [ln for ln in parts[-2 if len(parts) > 1 else -1].splitlines() if ln.strip()]
            why = f": {lines[-1].strip()}" if lines else ""
        raise self._error(
            f"SLURM job {job.job_id} ended {state}{why}; job files: {job.paths.folder}",
            _last_lines(text, 25),
        )

    # ------------------------------------------------------------------ waiting
    def _wait(self, job) -> str:
        """Poll until the job is final; returns the last state seen."""
        poll = max(0.2, float(self.launch.slurm.poll_interval_s))
        old_handler = signal.signal(signal.SIGTERM, _raise_interrupt)  # snakemake kills jobs so
        state, next_check = "PENDING", 0.0
        try:
            while True:
                if _result_files_exist(job):
                    return state
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + poll
                    state = self._state(job)
                    if state not in _RUNNING:
                        return state
                    if state == "PENDING" and self.cluster == "slurm":
                        reason = _pending_reason(job.job_id)
                        if reason in _NEVER_RUNS:
                            job.cancel(check=False)
                            raise self._error(
                                f"SLURM job {job.job_id} can never start ({reason}): the request "
                                f"({self.resources.describe()}) does not fit the partition; "
                                "cancelled. Lower the rule's resources or pick another partition"
                            )
                time.sleep(min(1.0, poll))
        finally:
            signal.signal(signal.SIGTERM, old_handler)

    def _state(self, job) -> str:
        if self.cluster != "slurm":
            return _norm_state(job.state)
        job.watcher.update()  # one forced sacct call for every job of this process
        state = _norm_state(job.watcher.get_state(str(job.job_id), mode="cache"))
        if state == "UNKNOWN":  # sacct without accounting: ask squeue instead
            state = _squeue_state(job.job_id) or state
        return state

    def _final_state(self, job, state: str, wait_s: float = 15) -> str:
        """The job's final state (a finished job's state lags its result file a little)."""
        deadline = time.monotonic() + wait_s
        while state in _RUNNING and time.monotonic() < deadline:
            time.sleep(0.5)
            state = self._state(job)
        if self.cluster != "slurm" and state == "FINISHED":
            state = "COMPLETED"
        return state

    # ------------------------------------------------------------------ records
    def _finish(self, job, state: str) -> None:
        _copy_job_output(job, sys.stderr)
        nodes = ""
        if self.cluster == "slurm":
            nodes = job.watcher.get_info(str(job.job_id), mode="cache").get("NodeList", "")
            nodes = nodes or _squeue_field(job.job_id, "%N")
        self._write_record(state=state, nodes=nodes, finished=_now())
        print(f"[ume] {self._who()}: SLURM job {job.job_id} {state}", file=sys.stderr)

    def _write_record(self, **fields: Any) -> None:
        self.record.update(fields)
        if self.record_dir is None:
            return
        write_json(self.record_dir / JOB_RECORD, self.record)
        manifest = self.record_dir / MANIFEST_NAME
        fresh = manifest.exists() and manifest.stat().st_mtime >= self._submit_time
        if fields.get("state") not in (None, "SUBMITTED", "REFUSED") and fresh:
            # the job wrote the manifest (with SLURM_JOB_ID and node list from its environment);
            # add what only the launcher knows: the final state, resources, submitit folder
            data = json.loads(manifest.read_text())
            data["job"] = {**(data.get("job") or {}), **self.record}
            write_json(manifest, data)


# ---------------------------------------------------------------------- helpers
def _raise_interrupt(signum, frame):  # pragma: no cover - signal handler
    raise KeyboardInterrupt


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _norm_state(state: str | None) -> str:
    # sacct says "CANCELLED by 0"; the local executor says "FINISHED"/"INTERRUPTED"
    return (state or "UNKNOWN").split()[0].upper()


def _result_files_exist(job) -> bool:
    subs = getattr(job, "_sub_jobs", None) or [job]
    return all(j.paths.result_pickle.exists() for j in subs)


def _squeue_field(job_id: str, fmt: str) -> str:
    try:
        res = subprocess.run(
            ["squeue", "-h", "-t", "all", "-j", str(job_id), "-o", fmt],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return res.stdout.strip().splitlines()[0].strip() if res.stdout.strip() else ""


def _squeue_state(job_id: str) -> str:
    state = _squeue_field(job_id, "%T")
    return _norm_state(state) if state else ""


def _pending_reason(job_id: str) -> str:
    return _squeue_field(job_id, "%r")


def _sbatch_message(e: Exception) -> str:
    text = str(e)
    lines = [ln.strip() for ln in text.splitlines() if "error" in ln.lower()]
    return " / ".join(dict.fromkeys(lines)) if lines else _last_lines(text, 5)


def _last_lines(text: str, n: int) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def _copy_job_output(job, stream) -> None:
    """The job's stdout/stderr (every task) into ``stream`` — the rule's log."""
    folder = job.paths.folder
    if not folder.exists():
        return
    for f in sorted(folder.glob(f"{job.job_id}_*_log.*")):
        text = f.read_text(errors="replace")
        if text.strip():
            stream.write(f"----- SLURM job {job.job_id}: {f.name} -----\n{text}")
            if not text.endswith("\n"):
                stream.write("\n")
    stream.write(f"----- end of SLURM job {job.job_id} output ({folder}) -----\n")
    stream.flush()
