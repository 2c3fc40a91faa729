#!/usr/bin/env bash
# Create (or update) the CPU environment in .venv and activate it. Sourced by run.sh / test.sh.
# Idempotent: reinstalls only when envs/*.txt or pyproject.toml change.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${UME_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
stamp_now="$(cat "$ROOT/envs/requirements-cpu.txt" "$ROOT/envs/cpu-constraints.txt" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
stamp_file="$VENV/.ume-env-stamp"
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[ume] creating the CPU environment in $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
if [[ "$(cat "$stamp_file" 2>/dev/null)" != "$stamp_now" ]]; then
  echo "[ume] installing the CPU environment (torch 2.13.0 CPU wheel, pinned)" >&2
  # The constraints file keeps torch on the CPU wheel: a newer torch pulls a multi-GB CUDA build.
  "$VENV/bin/python" -m pip install -q -c "$ROOT/envs/cpu-constraints.txt" \
    -r "$ROOT/envs/requirements-cpu.txt" >&2
  "$VENV/bin/python" -m pip install -q -c "$ROOT/envs/cpu-constraints.txt" --no-deps -e "$ROOT" >&2
  echo "$stamp_now" > "$stamp_file"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
# No model hub, ever: every process of the pipeline and the tests runs offline.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export TOKENIZERS_PARALLELISM=false
