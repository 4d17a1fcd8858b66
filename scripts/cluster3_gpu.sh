#!/usr/bin/env bash
# GPU round of helper cluster3 (issue 10, COBA x1 on the cluster kernel): the register grid
# (auto) and the cluster kernel's variants timed in one process, the cluster kernel's phase
# profile (SPIKEFORGE_CLUSTER_PROFILE=on: clock cycles a step of each phase, a line a block), its
# GPU tests, compute-sanitizer on a short run, and ncu of one launch. Against a library built
# elsewhere (SPIKEFORGE_LIBRARY) and this checkout's python_shim; logs in $OUT (or /tmp).
#   bash scripts/cluster3_gpu.sh            # everything, about 3-4 minutes
#   bash scripts/cluster3_gpu.sh bench profile check sanitize ncu
# STRATEGIES overrides the rows timed.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/gpu_run.sh"
TAIL_LINES=24
paths="${STRATEGIES:-auto,cluster::16,cluster:add:16,cluster::8,cluster:add:8,cluster:warp:16}"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(bench profile check sanitize ncu)
for what in "${steps[@]}"; do
  case "$what" in
    bench)
      # COBA x1, 10 s biological: auto (the register grid) as the baseline, the cluster's variants
      run bench_x1_10s 120 python3 bench/bench_networks.py --models coba_be --scales 1 \
        --duration 10000 --baselines none --strategy "$paths"
      ;;
    profile)
      # the phases of a step (clock cycles, mean of a block's warps / its slowest warp), 20,000
      # steps in one launch; float32 as the benchmark
      run profile_x1 60 env SPIKEFORGE_CLUSTER_PROFILE=on python3 scripts/cluster_short.py 4000 20000 \
        float32 cluster::16 cluster:add:16 cluster::8 cluster:warp:16
      grep -h "spikeforge cluster profile" "$LOG/profile_x1.log" | head -80
      ;;
    check)
      run pytest_cluster 150 python3 -m pytest -q -p no:logging tests/python/test_network_cluster.py \
        tests/python/test_network_one_barrier.py -k "cluster or auto"
      ;;
    sanitize)
      run sanitize_memcheck 60 compute-sanitizer --tool memcheck --error-exitcode 3 \
        python3 scripts/cluster_short.py 4000 100 float64 grid cluster::16 cluster:add:16 cluster::8
      for tool in racecheck synccheck; do
        run "sanitize_$tool" 60 compute-sanitizer --tool "$tool" --error-exitcode 3 \
          python3 scripts/cluster_short.py 4000 20 float64 cluster::16 cluster:add:16
      done
      ;;
    ncu)
      run ncu_cluster 90 ncu --section WarpStateStats --section SourceCounters --section SchedulerStats \
        --section LaunchStats -k regex:sf_network_cluster --launch-count 1 -f -o "$LOG/ncu_cluster" \
        python3 scripts/cluster_short.py 4000 2000 float32 cluster::16
      ncu -i "$LOG/ncu_cluster.ncu-rep" --page details >"$LOG/ncu_cluster_details.txt" 2>&1
      ncu -i "$LOG/ncu_cluster.ncu-rep" --page source --csv --print-source sass >"$LOG/ncu_cluster_sass.csv" 2>&1
      grep -iE "Duration|Registers|Stall|Warp Cycles|Issue|Eligible" "$LOG/ncu_cluster_details.txt" | head -40
      ;;
    *) echo "unknown step: $what" && status=1 ;;
  esac
done
exit $status
