#!/usr/bin/env bash
# Every benchmark on an accelerator (GPU/TPU) in one go, each part under its own time limit so
# that one failing or slow part still leaves the others' output:
#   bash benchmarks/accelerator.sh OUT_DIR [TEST_FILES...]
# writes OUT_DIR/env.txt, sweep.md (benchmarks/sweep.py), halving.md (benchmarks/halving.py)
# and, when test files are named, tests.txt (pytest on the accelerator: a correctness check;
# CI runs the suite on CPU). Needs jaxlr importable (pip install -e . or PYTHONPATH=.), plus
# scikit-learn, and optuna for halving.py's comparison.
set -u -o pipefail
out=${1:?usage: bash benchmarks/accelerator.sh OUT_DIR [TEST_FILES...]}
shift
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  python3 -c "import jax, optax, flax, numpy, sklearn; print('jax', jax.__version__, 'optax',
optax.__version__, 'flax', flax.__version__, 'numpy', numpy.__version__, 'sklearn',
sklearn.__version__); print(jax.devices())" 2>&1
  nproc
} | tee "$out/env.txt"

timeout "${SWEEP_LIMIT:-330}" python3 benchmarks/sweep.py 2>&1 | tee "$out/sweep.md"
timeout "${HALVING_LIMIT:-120}" python3 benchmarks/halving.py 2>&1 | tee "$out/halving.md"
if [ "$#" -gt 0 ]; then
  timeout "${TEST_LIMIT:-150}" python3 -m pytest -q -rf -p no:cacheprovider "$@" 2>&1 \
    | tee "$out/tests.txt"
fi
exit 0
