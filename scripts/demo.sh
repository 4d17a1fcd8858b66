#!/usr/bin/env bash
# Sets up the machine if needed, then runs the demo simulation (GPU when present, else CPU).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT" && exec .venv/bin/python -m spikeforge.demo "$@"
