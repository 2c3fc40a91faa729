#!/usr/bin/env bash
# Set up the CPU environment if missing, run the lint gate, then the test suite.
# Extra arguments go to pytest, e.g.  scripts/test.sh -m "not workflow"
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
bash scripts/lint.sh
exec python -m pytest -q "$@"
