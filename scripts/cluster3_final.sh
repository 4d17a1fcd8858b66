#!/usr/bin/env bash
# Final GPU check of helper cluster3 (session 8, issue 10: COBA x1 on the cluster kernel with
# counted arrivals) on the merged main, about 100 s: COBA x1 10 s with the register grid (the
# baseline) and auto (the cluster where it counts every arrival) in one process, the cluster's
# variants beside them; the cluster and one-barrier GPU tests; memcheck of the cluster kernel's
# block and warp deliveries (float64, same spikes as the grid); the phase profile of both.
# Logs in $OUT (or /tmp).
#   bash scripts/cluster3_final.sh                 # bench check memcheck profile
#   bash scripts/cluster3_final.sh scaling         # extra: 8000 neurons, 1 s (for widening auto)
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/gpu_run.sh"
TAIL_LINES=16
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(bench check memcheck profile)
for what in "${steps[@]}"; do
  case "$what" in
    bench)
      run final_x1_10s 50 python3 bench/bench_networks.py --models coba_be --scales 1 --duration 10000 \
        --baselines none --strategy grid,auto,cluster:block:16,cluster:warp:16,cluster:add:16
      ;;
    check)
      run final_pytest 45 python3 -m pytest -q -p no:logging tests/python/test_network_cluster.py \
        tests/python/test_network_one_barrier.py -k "cluster or auto"
      ;;
    memcheck)
      run final_memcheck 40 compute-sanitizer --tool memcheck --error-exitcode 3 \
        python3 scripts/cluster_short.py 4000 100 float64 grid cluster:block:16 cluster:warp:16
      ;;
    profile)
      run final_profile 25 env SPIKEFORGE_CLUSTER_PROFILE=on python3 scripts/cluster_short.py 4000 20000 \
        float32 cluster:block:16 cluster:warp:16
      grep -h "block 0,\|block 15,\|ns a step\|cluster::\|cluster:warp" "$LOG/final_profile.log" | head -12
      ;;
    scaling)
      run final_scaling 40 python3 bench/bench_networks.py --models coba_be --scales 2 --duration 1000 \
        --baselines none --strategy grid,cluster:block:16,cluster:warp:16
      ;;
    *) echo "unknown step: $what" && status=1 ;;
  esac
done
exit $status
