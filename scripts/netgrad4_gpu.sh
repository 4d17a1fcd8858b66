#!/usr/bin/env bash
# GPU checks of the network gradients' one-call forward (issue 12, COBA x1 gradients; helper
# netgrad4), on the device, against a library built elsewhere (SPIKEFORGE_LIBRARY) and this
# checkout's python_shim. Every step runs under `timeout`; logs go to $OUT (or /tmp).
#   bash scripts/netgrad4_gpu.sh bench     # bench_network_gradients.py; the forward under jax.grad as one call a
#                                          # segment (main's, SPIKEFORGE_NETWORK_GRAD_FORWARD=segments) and as one
#                                          # checkpointed call; the adjoint's barrier (fence, main's, or
#                                          # acquire_release) and block (1024, main's, 512, 256); same process
#   bash scripts/netgrad4_gpu.sh p2p       # the same benchmark: the adjoint's walk with a barrier a step (main's)
#                                          # or without (SPIKEFORGE_NETWORK_ADJOINT_FAST=walk,deliveries,p2p)
#   bash scripts/netgrad4_gpu.sh check     # GPU network gradient tests (poisoned outputs)
#   bash scripts/netgrad4_gpu.sh memcheck  # compute-sanitizer memcheck of scripts/network_grad_tiny.py --quick
#                                          # (the checkpoint copies, the persistent kernel's chunks, the adjoint's
#                                          # barrier-free walk: SPIKEFORGE_NETWORK_ADJOINT_FAST=walk,deliveries,p2p)
#   bash scripts/netgrad4_gpu.sh profile   # ncu: every kernel's time in one gradient call (COBA x1, segments of 50)
#   bash scripts/netgrad4_gpu.sh stalls    # ncu: one adjoint launch's warp states and top stall locations
#   bash scripts/netgrad4_gpu.sh bench2    # round 2: the defaults against main's (the fence barrier) and the p2p walk
#   bash scripts/netgrad4_gpu.sh check2    # round 2: the p2p walk's and the checkpointed call's GPU tests
# A step that would start after ${BUDGET:-170} s is skipped (the round's 4 minutes).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/gpu_run.sh"
TAIL_LINES=30
FORWARD="SPIKEFORGE_NETWORK_GRAD_FORWARD=segments;one_call"
BARRIER="SPIKEFORGE_NETWORK_ADJOINT_BARRIER=fence;acquire_release"
BLOCK="SPIKEFORGE_NETWORK_ADJOINT_BLOCK=1024;512;256"
FAST="SPIKEFORGE_NETWORK_ADJOINT_FAST=walk,deliveries;walk,deliveries,p2p"
for what in "$@"; do
  if [ "$SECONDS" -gt "${BUDGET:-170}" ]; then
    echo "** $what: skipped (${SECONDS} s spent)" && continue
  fi
  case "$what" in
    bench)
      run bench 120 python3 bench/bench_network_gradients.py --repeats 7 --setting "$FORWARD" \
        --setting "$BARRIER" --setting "$BLOCK" ${BENCH_ARGS:-} --json "$LOG/bench.json"
      ;;
    p2p)  # apart: a fault of the new walk (a trap) must not take the other figures with it
      run bench_p2p 90 python3 bench/bench_network_gradients.py --repeats 7 --no-check --setting "$FAST" \
        --json "$LOG/bench_p2p.json"
      ;;
    bench2)  # round 2: the defaults (acquire-release barrier) against main's (fence), the release barrier, the p2p walk
      run bench2 120 python3 bench/bench_network_gradients.py --repeats 7 \
        --configuration "SPIKEFORGE_NETWORK_ADJOINT_BARRIER=fence" \
        --setting "SPIKEFORGE_NETWORK_ADJOINT_BARRIER=release" \
        --setting "SPIKEFORGE_NETWORK_ADJOINT_FAST=walk,deliveries,p2p" --json "$LOG/bench2.json"
      ;;
    check2)  # round 2: what changed since round 1's check (the p2p walk; the checkpoint test)
      run pytest_network_gradients2 90 python3 -m pytest -q -p no:logging tests/python/test_network_gradients.py \
        -k "gpu and (warp_a_neuron or checkpointed or one_call)"
      ;;
    check)
      run pytest_network_gradients 120 python3 -m pytest -q -p no:logging tests/python/test_network_gradients.py -k gpu
      ;;
    memcheck)
      run sanitize_memcheck 70 env XLA_PYTHON_CLIENT_PREALLOCATE=false SPIKEFORGE_NETWORK_ADJOINT_FAST="${MEMCHECK_FAST:-walk,deliveries,p2p}" \
        compute-sanitizer --tool memcheck --error-exitcode 9 --kernel-name kns=sf_network \
        python3 scripts/network_grad_tiny.py --quick
      ;;
    profile)
      run profile 90 ncu --profile-from-start off --metrics gpu__time_duration.sum --csv --log-file "$LOG/ncu_times.csv" \
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
    stalls)
      run stalls 90 ncu --kernel-name regex:sf_network_adjoint --launch-skip 21 --launch-count 1 \
        --section LaunchStats --section Occupancy --section WarpStateStats --section SchedulerStats \
        --section SourceCounters python3 scripts/network_grad_profile.py
      ;;
    *) echo "unknown step: $what" && status=1 ;;
  esac
done
exit $status
