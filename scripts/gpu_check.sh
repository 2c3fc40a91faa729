#!/usr/bin/env bash
# The prepared GPU check (docs/cluster.md, "A GPU check"): the tiny models in bf16 with sdpa
# through train_embedder, sft_reasoner, egrl and one evaluation task on one GPU; prints the
# seconds per step and the peak GPU memory of each stage, within 10 minutes.
#
#   scripts/gpu_check.sh --dry-run              # the plan, on any machine (what the tests run)
#   scripts/gpu_check.sh [--wheels DIR] [--out DIR]
#
# It uses the machine's own Python (a GPU image: CUDA torch, transformers, peft, accelerate),
# never the CPU venv of scripts/env.sh; packages the image lacks are installed from --wheels
# (pip --no-index). Without a CUDA GPU it says so and exits 2. Logic: scripts/gpu_check.py.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "${PYTHON:-python3}" "$ROOT/scripts/gpu_check.py" "$@"
