#!/usr/bin/env bash
# Rewrites the golden kernels (tests/kernels/) from the current code generator. Run it after an
# intended change to generated code, read the diff (`git diff tests/kernels`), and explain it in
# the commit.
set -euo pipefail
cd "$(dirname "$0")/.."
SPIKEFORGE_BLESS=1 cargo test --release --test golden_kernels "$@"
git status --short tests/kernels | head -50
