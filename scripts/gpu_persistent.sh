#!/usr/bin/env bash
# The GPU checks of the persistent network kernel (issue 10), on a GPU machine (the device tool),
# against a library built elsewhere (SPIKEFORGE_LIBRARY) and this checkout's python_shim:
#   1. the tests of every path (pytest -k persistent) and the other network tests;
#   2. compute-sanitizer memcheck, racecheck and synccheck on a tiny network, once per path;
#   3. the benchmark at scales 1 and 10 for 10 s biological, every path in one run.
# Every step runs under `timeout`, so that a hang (the risk of a grid barrier) cannot eat the
# device's time; the kernel's own barrier also traps after a bounded wait.
# Usage (each line fits one device call of 10 minutes; logs go to $OUT, or /tmp):
#   bash scripts/gpu_persistent.sh tests               # pytest -k persistent (every path)
#   bash scripts/gpu_persistent.sh networks            # the other network tests (regressions)
#   bash scripts/gpu_persistent.sh sanitize block      # memcheck, racecheck, synccheck of one path
#   bash scripts/gpu_persistent.sh sanitize grid       #   (or several: "sanitize block grid")
#   bash scripts/gpu_persistent.sh bench 1             # COBA x1, 10 s biological, every path
#   bash scripts/gpu_persistent.sh bench 10            # COBA x10
# STRATEGIES=per_step,grid REPEATS=3 narrow the benchmark (one block at x10 may be slow).
set -uo pipefail
what="${1:-}"
source "$(dirname "${BASH_SOURCE[0]}")/gpu_run.sh"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
shift || true
case "$what" in
  tests)
    run pytest_persistent 560 python3 -m pytest -q -p no:logging tests/python/test_network_persistent.py
    ;;
  networks)
    run pytest_networks 560 python3 -m pytest -q -p no:logging tests/python -k "network and not persistent"
    ;;
  sanitize)
    export XLA_PYTHON_CLIENT_PREALLOCATE=false
    for path in "${@:-block}"; do
      for tool in memcheck racecheck synccheck; do
        run "sanitize_${tool}_${path}" 170 compute-sanitizer --tool "$tool" --error-exitcode 9 \
          --kernel-name kns=sf_network python3 scripts/persistent_tiny.py "$path"
        grep -h "ERROR SUMMARY\|RACECHECK SUMMARY\|Hazard\|Error" "$LOG/sanitize_${tool}_${path}.log" | head -5
      done
    done
    ;;
  bench)
    for scale in "${@:-1}"; do
      run "bench_persistent_x$scale" 560 python3 bench/bench_networks.py --gpu --scales "$scale" \
        --duration 10000 --strategy "${STRATEGIES:-per_step,block,grid,auto}" --repeats "${REPEATS:-3}" --json "$LOG/bench_persistent_x$scale.json"
      sed -n '/| scale | neurons/,/^$/p' "$LOG/bench_persistent_x$scale.log"
    done
    ;;
  *)
    echo "usage: $0 tests | networks | sanitize [block grid per_step auto] | bench [1 10]" >&2
    exit 2
    ;;
esac
exit $status
