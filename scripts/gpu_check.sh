#!/usr/bin/env bash
# Runs on a GPU machine (the device tool): every test, the tutorials and the benchmarks, against
# a library built elsewhere (SPIKEFORGE_LIBRARY) and this checkout's python_shim.
# Usage: bash scripts/gpu_check.sh [tests|bench|sanitize|all]; logs go to $OUT (or /tmp).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$ROOT/python_shim" PYTHONUNBUFFERED=1
export SPIKEFORGE_LIBRARY="${SPIKEFORGE_LIBRARY:-$ROOT/target/release/libspikeforge.so}"
LOG="${OUT:-/tmp}"
what="${1:-all}"
cd "$ROOT"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
if [ "$what" = tests ] || [ "$what" = all ]; then
  python3 -m pytest -q -p no:logging tests/python 2>&1 | tee "$LOG/pytest_gpu.log" | tail -8
  # The notebooks' code cells in order (the machine has no Jupyter kernel).
  for nb in tutorials/*.ipynb; do
    python3 - "$nb" <<'PY' 2>&1 | tail -3
import json, sys, matplotlib
matplotlib.use("Agg")
nb = json.load(open(sys.argv[1]))
ns = {}
for cell in nb["cells"]:
    if cell["cell_type"] == "code":
        exec(compile("".join(cell["source"]), sys.argv[1], "exec"), ns)
print("notebook ok:", sys.argv[1])
PY
  done
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
  python3 bench/bench_neurons.py --gpu --json "$LOG/bench_neurons.json" 2>&1 | tee "$LOG/bench_neurons.md" | sed -n 1,20p
  python3 bench/bench_custom_kernels.py 2>&1 | tee "$LOG/bench_custom_kernels.md" | tail -25
  python3 bench/bench_reductions.py 2>&1 | tee "$LOG/bench_reductions.md" | tail -25
fi
if [ "$what" = sanitize ] || [ "$what" = all ]; then
  XLA_PYTHON_CLIENT_PREALLOCATE=false compute-sanitizer --tool memcheck --error-exitcode 9 \
    python3 -m pytest -q -p no:logging tests/python/test_custom_kernels.py tests/python/test_reductions.py \
    -k "gpu and not errors" 2>&1 | tee "$LOG/sanitizer.log" | tail -6
fi
