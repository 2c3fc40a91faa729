#!/usr/bin/env bash
# Run the whole pipeline on the embedded default (tiny models, synthetic data) on this machine.
# Extra arguments go to snakemake, e.g.  scripts/run.sh --forcerun annotate_tcot
#
# After an interrupted run (a closed terminal, the OOM killer, a reboot, a kill -9) the same
# command recovers by itself, as far as Snakemake can do so safely:
#
# * --rerun-incomplete: a job that was running when Snakemake died has its outputs marked
#   incomplete (.snakemake/incomplete/); they are deleted and the job runs again (training
#   stages resume from their checkpoints). Every stage writes its files atomically, so what a
#   killed job leaves is never taken as done: rerunning it is always right.
# * A stale lock (.snakemake/locks/, left by a Snakemake that was killed) is removed with
#   --unlock, but ONLY when no process is still working in this directory: no snakemake and no
#   job of one (`python -m ume ...`, which can outlive a killed snakemake) whose working
#   directory is this one. If one is, the lock stays, its processes are listed, and Snakemake
#   refuses to start where they could write the same files; wait for them or stop them
#   (kill PID), then run this again. Processes on another machine sharing this folder (NFS)
#   cannot be seen from here: start runs of one folder from one machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
here="$(pwd -P)"

# Processes other than this script working in this directory: "PID: command" per line.
working_here() {
  local d pid cwd cmd
  for d in /proc/[0-9]*; do
    pid="${d#/proc/}"
    [[ "$pid" == "$$" || "$pid" == "$BASHPID" ]] && continue
    cwd="$(readlink "$d/cwd" 2>/dev/null)" || continue
    [[ "$cwd" == "$here" || "$cwd" == "$here/"* ]] || continue
    cmd="$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null)" || continue
    case "$cmd" in
      *snakemake* | *"-m ume "*) echo "  $pid: ${cmd:0:200}" ;;
    esac
  done
}

if compgen -G ".snakemake/locks/*" >/dev/null; then
  if [[ ! -d /proc/self ]]; then # no /proc (macOS): who works here cannot be told
    echo "[ume] a Snakemake lock exists; if no other run works in $here, remove it with:" \
      "snakemake --unlock" >&2
  else
    others="$(working_here)"
    if [[ -z "$others" ]]; then
      echo "[ume] removing the stale lock of an interrupted run (no process works in $here);" \
        "its unfinished jobs run again (--rerun-incomplete)" >&2
      snakemake --unlock >/dev/null
    else
      echo "[ume] another run is still working in $here; its lock stays:" >&2
      echo "$others" >&2
      echo "[ume] wait for it to finish or stop it (kill PID), then run this command again" >&2
    fi
  fi
fi
exec snakemake --cores "${UME_CORES:-all}" --printshellcmds --rerun-incomplete "${@:-all}"
