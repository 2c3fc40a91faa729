#!/usr/bin/env bash
# Run the whole pipeline on the embedded default (tiny models, synthetic data) on this machine.
# Extra arguments go to snakemake, e.g.  scripts/run.sh --forcerun annotate_tcot
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
exec snakemake --cores "${UME_CORES:-all}" --printshellcmds "${@:-all}"
