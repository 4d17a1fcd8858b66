#!/usr/bin/env bash
# GPU checks of the neuron-gradient work at 1M (issue 12; helper grad1m3, session 7), on the
# device, against a library built elsewhere (SPIKEFORGE_LIBRARY) and this checkout's python_shim.
# Every step runs under `timeout` within an overall budget (BUDGET seconds, default 345, so that
# the whole script stays within the round's 6 minutes); logs go to $OUT (or /tmp).
#   bash scripts/grad1m3_gpu.sh all        # kernels bench tests sanitize variants nettests sass ncu, as the budget allows
#   bash scripts/grad1m3_gpu.sh kernels    # the forward under grad and the adjoint timed alone (CuPy): k, registers, block, unroll
#   bash scripts/grad1m3_gpu.sh bench      # bench_gradients 1M and 10k: forward, fwd+bwd, lax.scan in one process each
#   bash scripts/grad1m3_gpu.sh variants   # grad_variants at 1M: tunings (registers), k, block size
#   bash scripts/grad1m3_gpu.sh tests      # GPU neuron-gradient tests (poisoned outputs)
#   bash scripts/grad1m3_gpu.sh nettests   # GPU network-gradient tests (their adjoint's surrogate reciprocal)
#   bash scripts/grad1m3_gpu.sh sanitize   # compute-sanitizer memcheck of the forward under grad and the neuron adjoint
#   bash scripts/grad1m3_gpu.sh sass       # instructions of the compiled kernels' loops (the cache's CUBINs)
#   bash scripts/grad1m3_gpu.sh ncu        # ncu of one forward under grad and one adjoint at 1M (short sections)
# VARIANTS / BLOCKS override grad_variants'.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/gpu_run.sh"
TAIL_LINES=30
BUDGET="${BUDGET:-345}"
export SPIKEFORGE_CACHE_DIR="${SPIKEFORGE_CACHE_DIR:-/tmp/cache_grad1m3}"
# `run` with its limit cut to what is left of the budget; skipped when under 20 s are left.
within() {
  local name="$1" limit="$2" left=$((BUDGET - SECONDS))
  shift 2
  if [ "$left" -lt 20 ]; then echo "** $name: skipped, ${left}s of the budget left" && status=1 && return 0; fi
  [ "$limit" -gt "$left" ] && limit=$left
  run "$name" "$limit" "$@"
}
steps=("$@")
[ "${1:-all}" = all ] && steps=(kernels bench tests sanitize variants nettests sass ncu)
nvidia-smi --query-gpu=index,name,clocks.sm,clocks.mem --format=csv,noheader
for what in "${steps[@]}"; do
  case "$what" in
    kernels)
      within neuron_grad_kernels 70 python3 scripts/neuron_grad_kernels.py --neurons 1000000 --repeats 7
      ;;
    bench)
      within bench_gradients 120 python3 bench/bench_gradients.py --neurons 1000000,10000 --repeats 7
      ;;
    variants)
      within grad_variants 80 python3 bench/grad_variants.py --neurons 1000000 --repeats 10 \
        --variants "${VARIANTS:-none:8,registers=48:8,none:16,streaming:8}" \
        --blocks "${BLOCKS:-0}"
      ;;
    tests)
      within pytest_grad_gpu 110 python3 -m pytest -q -p no:logging -k gpu \
        tests/python/test_gradients.py tests/python/test_gradient_outputs.py
      ;;
    nettests)
      within pytest_network_grad_gpu 90 python3 -m pytest -q -p no:logging -k gpu tests/python/test_network_gradients.py
      ;;
    sanitize)
      within memcheck_neuron_grad 90 env XLA_PYTHON_CLIENT_PREALLOCATE=false compute-sanitizer --tool memcheck \
        --error-exitcode 9 --kernel-name regex:sf_neuron python3 scripts/neuron_grad_small.py
      ;;
    sass)
      within sass_loops 20 bash -c 'python3 scripts/sass_loops.py --per 8 "$SPIKEFORGE_CACHE_DIR"/cuda/*.cubin | grep -B1 -A6 "sf_neuron"'
      ;;
    ncu)
      within ncu_grad 60 ncu --kernel-name regex:sf_neuron --launch-count 2 --section SpeedOfLight \
        --section Occupancy --section LaunchStats --section SchedulerStats --section WarpStateStats \
        python3 bench/grad_variants.py --profile --neurons 1000000
      ;;
    *) echo "unknown step: $what" && status=1 ;;
  esac
done
echo "total ${SECONDS}s"
exit $status
