#!/usr/bin/env bash
# GPU checks of the cluster kernel's balanced deliveries (issue 10, COBA x1; helper cluster-fast),
# on the device, against a library built elsewhere (SPIKEFORGE_LIBRARY) and this checkout's
# python_shim. Every step runs under `timeout`; logs go to $OUT (or /tmp).
#   bash scripts/cluster_fast_gpu.sh bench     # COBA x1 10 s: auto, grid, block, cluster of 16 and of 8
#   bash scripts/cluster_fast_gpu.sh scaling   # 1 s at 1000, 2000, 4000, 8000 neurons, the same paths
#   bash scripts/cluster_fast_gpu.sh check     # test_network_cluster.py, test_network_one_barrier.py
#   bash scripts/cluster_fast_gpu.sh sanitize  # memcheck, racecheck, synccheck of a short cluster run
#   bash scripts/cluster_fast_gpu.sh ncu       # ncu of one cluster launch (COBA x1, 2000 steps, 16 blocks)
#   bash scripts/cluster_fast_gpu.sh final final-check   # the session's one run: 60 s, then 40 s
# STRATEGIES overrides the paths timed. The cluster kernel's target cache (SPIKEFORGE_CLUSTER_TARGETS,
# shared by default) is measured and tested against `global` too.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/gpu_run.sh"
TAIL_LINES=30
paths="${STRATEGIES:-auto,grid,block,cluster::16,cluster::8}"
for what in "$@"; do
  case "$what" in
    bench)
      run bench_x1_10s 150 python3 bench/bench_networks.py --models coba_be --scales 1 \
        --duration 10000 --baselines none --strategy "$paths"
      run bench_x1_10s_global 100 env SPIKEFORGE_CLUSTER_TARGETS=global python3 bench/bench_networks.py \
        --models coba_be --scales 1 --duration 10000 --baselines none --strategy cluster::16,cluster::8
      ;;
    scaling)
      run scaling_1s 150 python3 bench/bench_networks.py --models coba_be --scales 0.25,0.5,1,2 \
        --duration 1000 --baselines none --strategy "$paths"
      ;;
    check)
      run pytest_cluster 200 python3 -m pytest -q -p no:logging tests/python/test_network_cluster.py \
        tests/python/test_network_one_barrier.py
      run pytest_cluster_global 100 env SPIKEFORGE_CLUSTER_TARGETS=global python3 -m pytest -q -p no:logging \
        tests/python/test_network_cluster.py
      ;;
    sanitize)
      run sanitize_memcheck 100 compute-sanitizer --tool memcheck --error-exitcode 3 \
        python3 scripts/cluster_short.py 4000 200 float64 grid cluster::16 cluster::8
      for tool in racecheck synccheck; do
        run "sanitize_$tool" 100 compute-sanitizer --tool "$tool" --error-exitcode 3 \
          python3 scripts/cluster_short.py 4000 200 float64 cluster::16 cluster::8
      done
      ;;
    ncu)
      run ncu_cluster 120 ncu --set full -k regex:sf_network_cluster --launch-count 1 -f \
        -o "$LOG/ncu_cluster" python3 scripts/cluster_short.py 4000 2000 float32 cluster::16
      ncu -i "$LOG/ncu_cluster.ncu-rep" --page details >"$LOG/ncu_cluster_details.txt" 2>&1
      ncu -i "$LOG/ncu_cluster.ncu-rep" --page source --csv --print-source sass >"$LOG/ncu_cluster_sass.csv" 2>&1
      grep -iE "Duration|Registers|Achieved Occupancy|Stall|Warp Cycles|Shared Memory|Issue" \
        "$LOG/ncu_cluster_details.txt" | head -50
      ;;
    final)
      # the one GPU run of session 7 (60 s): COBA x1 10 s, every cluster variant beside the grid
      # in one process; 1 s at 1000, 2000 and 8000 neurons
      run final_x1_10s 40 python3 bench/bench_networks.py --models coba_be --scales 1 --duration 10000 \
        --baselines none --strategy grid,cluster::16,cluster::8,cluster:global:16,cluster:warp:16
      run final_scaling_1s 30 python3 bench/bench_networks.py --models coba_be --scales 0.25,0.5,2 \
        --duration 1000 --baselines none --strategy grid,block,cluster::16,cluster:warp:16
      ;;
    final-check)
      # its tests and sanitizer (40 s)
      run final_pytest 25 python3 -m pytest -q -p no:logging tests/python/test_network_cluster.py \
        tests/python/test_network_one_barrier.py -k "cluster or auto"
      run final_memcheck 15 compute-sanitizer --tool memcheck --error-exitcode 3 \
        python3 scripts/cluster_short.py 4000 100 float64 cluster::16 cluster::8 cluster:warp:16
      ;;
    *) echo "unknown step: $what" && status=1 ;;
  esac
done
exit $status
