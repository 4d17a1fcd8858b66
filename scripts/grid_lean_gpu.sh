#!/usr/bin/env bash
# GPU checks of the one-barrier register grid's per-step latency work (issue 10, x10/x100; helper
# grid-lean), on the device, against a library built elsewhere (SPIKEFORGE_LIBRARY) and this
# checkout's python_shim. Every step runs under `timeout`; logs and reports go to $OUT (or /tmp).
#   bash scripts/grid_lean_gpu.sh check      # tests/python/test_network_one_barrier.py
#   bash scripts/grid_lean_gpu.sh bench      # COBA x1, x10, x100, 1 s biological: barriers, grid sizes
#   bash scripts/grid_lean_gpu.sh ncu        # ncu of one launch at x10 (200 steps), full set
#   bash scripts/grid_lean_gpu.sh sanitize   # memcheck, racecheck, synccheck of a short x1 run
# STRATEGIES, SCALES and DURATION override the benchmark's; its log is $OUT/bench${TAG}_x<scales>.log.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/gpu_run.sh"
TAIL_LINES=40
for what in "$@"; do
  case "$what" in
    check)
      run pytest_one_barrier 300 python3 -m pytest -q -p no:logging tests/python/test_network_one_barrier.py
      ;;
    bench)
      scales="${SCALES:-1,10,100}"
      run "bench${TAG:-}_x${scales//,/_}" 400 python3 bench/bench_networks.py --models coba_be --scales "$scales" \
        --duration "${DURATION:-1000}" --baselines none \
        --strategy "${STRATEGIES:-auto,grid:flat,grid:release,grid:flat:157,grid:release:157,grid:release:105,grid:release:782}"
      ;;
    ncu)
      run ncu_x10 300 ncu --set full -k regex:sf_network_persistent --launch-count 1 -f \
        -o "$LOG/ncu_x10" python3 scripts/one_barrier_short.py 40000 "${BARRIER:-flat}"
      ncu -i "$LOG/ncu_x10.ncu-rep" --page details >"$LOG/ncu_x10_details.txt" 2>&1
      ncu -i "$LOG/ncu_x10.ncu-rep" --page source --csv --print-source sass >"$LOG/ncu_x10_sass.csv" 2>&1
      grep -iE "Duration|Registers|Achieved Occupancy|Stall|Warp Cycles|Block Limit|Grid Size" \
        "$LOG/ncu_x10_details.txt" | head -60
      ;;
    sanitize)
      for tool in memcheck racecheck synccheck; do
        run "sanitize_$tool" 240 compute-sanitizer --tool "$tool" --error-exitcode 3 \
          python3 scripts/one_barrier_short.py 4000 flat release flat:3 release:3
      done
      ;;
    *) echo "unknown step: $what" && status=1 ;;
  esac
done
exit $status
