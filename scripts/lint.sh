#!/usr/bin/env bash
# The lint gate: ruff (check + format), the config schema is current, snakemake --lint is clean.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ruff check .
ruff format --check .
python -m ume schema --check workflow/schemas/config.schema.json
out="$(snakemake --lint 2>&1)" || { echo "$out"; exit 1; }
if grep -q "^Lints for" <<<"$out"; then echo "$out"; echo "snakemake --lint found problems" >&2; exit 1; fi
echo "lint: ok"
