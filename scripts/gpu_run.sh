# Sourced by the GPU scripts (gpu_persistent.sh, grid_lean_gpu.sh): the environment for a library
# built elsewhere (SPIKEFORGE_LIBRARY, else this checkout's target/release) and this checkout's
# python_shim, the log folder ($OUT, or /tmp), and `run NAME SECONDS COMMAND...`, which runs the
# command under `timeout` (a hang cannot eat the device's time), logs it to $LOG/NAME.log, prints
# its last $TAIL_LINES lines (12) and sets status=1 when it fails.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" LOG="${OUT:-/tmp}" status=0
export PYTHONPATH="$ROOT/python_shim" PYTHONUNBUFFERED=1 \
  SPIKEFORGE_LIBRARY="${SPIKEFORGE_LIBRARY:-$ROOT/target/release/libspikeforge.so}"
cd "$ROOT" || exit 1
run() {
  local name="$1" limit="$2"
  shift 2
  printf '\n== %s (limit %ss)\n' "$name" "$limit"
  timeout --kill-after=10 "$limit" "$@" >"$LOG/$name.log" 2>&1
  local rc=$?
  tail -n "${TAIL_LINES:-12}" "$LOG/$name.log"
  [ $rc -eq 124 ] && echo "** $name: TIMED OUT after ${limit}s (a hang?)"
  [ $rc -ne 0 ] && echo "** $name: exit status $rc" && status=1
  return 0
}
