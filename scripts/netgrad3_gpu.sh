#!/usr/bin/env bash
# GPU checks of the network adjoint kernel's warp-a-neuron paths (issue 12, COBA x1 gradients;
# helper netgrad3), on the device, against a library built elsewhere (SPIKEFORGE_LIBRARY) and
# this checkout's python_shim. Every step runs under `timeout`; logs go to $OUT (or /tmp).
#   bash scripts/netgrad3_gpu.sh bench     # bench_network_gradients.py: main's paths (FAST=none) and each variant, same process
#   bash scripts/netgrad3_gpu.sh costs     # per-call (forward) and per-segment (fwd+bwd) costs
#   bash scripts/netgrad3_gpu.sh costs_nocb # the same without XLA's command buffers (CUDA graphs)
#   bash scripts/netgrad3_gpu.sh profile   # ncu: every kernel's time in one gradient call
#   bash scripts/netgrad3_gpu.sh check     # GPU network gradient tests (poisoned outputs)
#   bash scripts/netgrad3_gpu.sh memcheck  # compute-sanitizer memcheck of scripts/network_grad_tiny.py
#   bash scripts/netgrad3_gpu.sh racecheck # compute-sanitizer racecheck of the same
# The sanitizers run the warp-a-neuron variant in float32 and float64 (the grid-stride kernel is
# main's, sanitized before). A step that would start after ${BUDGET:-330} s is skipped (the
# round's 6 minutes).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/gpu_run.sh"
TAIL_LINES=30
FAST="SPIKEFORGE_NETWORK_ADJOINT_FAST=none;walk;deliveries;walk,deliveries"
for what in "$@"; do
  if [ "$SECONDS" -gt "${BUDGET:-330}" ]; then
    echo "** $what: skipped (${SECONDS} s spent)" && continue
  fi
  case "$what" in
    bench)
      run bench 150 python3 bench/bench_network_gradients.py --repeats 7 --setting "$FAST" --json "$LOG/bench.json"
      ;;
    costs)
      run costs 150 python3 scripts/netgrad3_costs.py
      ;;
    costs_nocb)
      run costs_nocb 150 env XLA_FLAGS=--xla_gpu_enable_command_buffer= python3 scripts/netgrad3_costs.py
      ;;
    profile)
      run profile 150 ncu --profile-from-start off --metrics gpu__time_duration.sum --csv --log-file "$LOG/ncu_times.csv" \
        python3 scripts/netgrad3_costs.py --profile-only
      python3 - "$LOG/ncu_times.csv" <<'PY'
import collections, csv, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head, rows = rows[0], rows[1:]
name, unit, value = head.index("Kernel Name"), head.index("Metric Unit"), head.index("Metric Value")
scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3, "second": 1e6}
total = collections.defaultdict(lambda: [0, 0.0])
for r in rows:
    t = total[r[name][:70]]
    t[0] += 1
    t[1] += float(r[value].replace(",", "")) * scale.get(r[unit], float("nan"))
for k, (c, us) in sorted(total.items(), key=lambda x: -x[1][1]):
    print(f"{us:10.1f} us {c:4d} x  {k}")
print(f"{sum(t[1] for t in total.values()):10.1f} us in all (kernels of one gradient call, segments of 50)")
PY
      ;;
    check)
      run pytest_network_gradients 200 python3 -m pytest -q -p no:logging tests/python/test_network_gradients.py -k gpu
      ;;
    memcheck | racecheck)
      run "sanitize_$what" 150 env XLA_PYTHON_CLIENT_PREALLOCATE=false SPIKEFORGE_NETWORK_ADJOINT_FAST=walk,deliveries \
        compute-sanitizer --tool "$what" --error-exitcode 9 --kernel-name kns=sf_network_adjoint \
        python3 scripts/network_grad_tiny.py
      ;;
    *) echo "unknown step: $what" && status=1 ;;
  esac
done
exit $status
