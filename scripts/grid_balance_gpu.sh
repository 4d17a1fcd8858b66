#!/usr/bin/env bash
# GPU checks of the register grid's balanced deliveries and acquire barrier (issue 10, COBA x10 /
# x100; helper grid-balance), on the device, against a library built elsewhere
# (SPIKEFORGE_LIBRARY) and this checkout's python_shim. Every step runs under `timeout`; logs go
# to $OUT (or /tmp).
#   bash scripts/grid_balance_gpu.sh bench      # COBA x10, x100, 1 s: main's behaviour (auto) and the variants
#                                               # (STRATEGIES10, STRATEGIES100, DURATION override)
#   bash scripts/grid_balance_gpu.sh final      # COBA x1, x10, x100, 10 s, auto
#   bash scripts/grid_balance_gpu.sh check      # tests/python/test_network_one_barrier.py
#   bash scripts/grid_balance_gpu.sh persistent # tests/python/test_network_persistent.py
#   bash scripts/grid_balance_gpu.sh sanitize   # memcheck, racecheck, synccheck of a short x1 run
# final: STRATEGIES, SCALES and DURATION override; its log is $OUT/final${TAG}_x<scales>.log.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/gpu_run.sh"
TAIL_LINES=40
for what in "$@"; do
  case "$what" in
    bench)
      # auto = main's behaviour (warp deliveries, flat barrier: the defaults until measured);
      # x10 and x100 each with the grid sizes that matter there
      run bench_x10 200 python3 bench/bench_networks.py --models coba_be --scales 10 \
        --duration "${DURATION:-1000}" --baselines none \
        --strategy "${STRATEGIES10:-auto,grid:flat::balanced,grid:acquire,grid:acquire::balanced,grid:spread::balanced,grid:split::balanced,grid:flat:157:balanced,grid:acquire:157:balanced,grid:acquire:105:balanced}"
      run bench_x100 240 python3 bench/bench_networks.py --models coba_be --scales 100 \
        --duration "${DURATION:-1000}" --baselines none \
        --strategy "${STRATEGIES100:-auto,grid:flat::balanced,grid:acquire,grid:acquire::balanced,grid:spread,grid:spread::balanced,grid:split::balanced}"
      ;;
    final)
      scales="${SCALES:-1,10,100}"
      run "final${TAG:-}_x${scales//,/_}" 300 python3 bench/bench_networks.py --models coba_be --scales "$scales" \
        --duration "${DURATION:-10000}" --baselines none --strategy "${STRATEGIES:-auto}"
      ;;
    check)
      run pytest_one_barrier 240 python3 -m pytest -q -p no:logging tests/python/test_network_one_barrier.py
      ;;
    persistent)
      run pytest_persistent 240 python3 -m pytest -q -p no:logging tests/python/test_network_persistent.py
      ;;
    sanitize)
      # 4000 neurons = 32 virtual blocks: 132 blocks of one slot (most idle), 11 blocks of 2-3
      # slots (the lists of several slots), 3 blocks (virtual blocks beyond the slots)
      run sanitize_memcheck 150 compute-sanitizer --tool memcheck --error-exitcode 3 \
        python3 scripts/one_barrier_short.py 4000 flat::balanced acquire acquire::balanced spread::balanced flat:11:balanced flat:3:balanced
      run sanitize_racecheck 150 compute-sanitizer --tool racecheck --error-exitcode 3 \
        python3 scripts/one_barrier_short.py 4000 flat::balanced flat:11:balanced
      run sanitize_synccheck 120 compute-sanitizer --tool synccheck --error-exitcode 3 \
        python3 scripts/one_barrier_short.py 4000 acquire::balanced spread::balanced flat:11:balanced
      ;;
    *) echo "unknown step: $what" && status=1 ;;
  esac
done
exit $status
