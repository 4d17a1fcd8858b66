#!/usr/bin/env bash
# Sets up the machine if needed, then runs every check and test: formatting and lints, the Rust
# tests, the NVRTC compile check of all generated CUDA, the Python tests on the newest jax (3.12)
# and the compatibility tests on jax 0.10.2 (3.11), the tutorials and a quick benchmark run.
# scikit-learn: tutorial 04 trains on its digits data set (shipped with the package, no download).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SPIKEFORGE_WITH_PY311=1 SPIKEFORGE_SETUP_EXTRA="nvidia-cuda-nvrtc brian2 brainevent scikit-learn"
# The committed XLA FFI bindings are checked against .venv311's and .venv's jaxlib headers
# (tests/xla_ffi_bindings.rs); setup.sh installs the libclang that this needs.
export SPIKEFORGE_REQUIRE_BINDINGS_CHECK=1
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
step() { printf '\n== %s\n' "$*"; }

step "format and lints"
cargo fmt --check
cargo clippy --release --all-targets -- -D warnings
.venv/bin/ruff check python_shim tests bench tutorials

step "Rust tests (the NVRTC compile check uses the NVRTC wheel from PyPI)"
NVRTC_DIR="$(.venv/bin/python -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))')"
export SPIKEFORGE_REQUIRE_NVRTC=1
if command -v cargo-nextest >/dev/null; then
  LD_LIBRARY_PATH="$NVRTC_DIR:${LD_LIBRARY_PATH:-}" cargo nextest run --release --no-fail-fast
else
  LD_LIBRARY_PATH="$NVRTC_DIR:${LD_LIBRARY_PATH:-}" cargo test --release
fi
unset SPIKEFORGE_REQUIRE_NVRTC

step "Python tests, Python 3.12, newest jax (GPU tests run where a GPU is present)"
(cd /tmp && "$ROOT/.venv/bin/python" -m pytest -q "$ROOT/tests/python")

step "compatibility: Python 3.11, jax 0.10.2, the same library"
LIB="$(.venv/bin/python -c 'import spikeforge._native as n; print(n.LIBRARY_PATH)')"
(cd /tmp && SPIKEFORGE_LIBRARY="$LIB" PYTHONPATH="$ROOT/python_shim" "$ROOT/.venv311/bin/python" -m pytest -q \
  -p no:logging "$ROOT/tests/python")

step "tutorials: every source runs, every committed notebook is built from its source"
(cd /tmp && "$ROOT/.venv/bin/python" "$ROOT/tutorials/build.py" --check)

step "benchmark smoke run"
(cd /tmp && "$ROOT/.venv/bin/python" "$ROOT/bench/bench_neurons.py" --quick)
(cd /tmp && "$ROOT/.venv/bin/python" "$ROOT/bench/bench_custom_kernels.py" --quick)
(cd /tmp && "$ROOT/.venv/bin/python" "$ROOT/bench/bench_reductions.py" --quick)
(cd /tmp && "$ROOT/.venv/bin/python" "$ROOT/bench/bench_call_overhead.py" --quick)
(cd /tmp && "$ROOT/.venv/bin/python" "$ROOT/bench/bench_networks.py" --quick)
# the three networks in float64 for 50 ms: spike counts equal to pure JAX's, neuron by neuron
(cd /tmp && "$ROOT/.venv/bin/python" "$ROOT/bench/bench_networks.py" --quick --models all --dtype float64 --baselines jax --duration 50)
(cd /tmp && "$ROOT/.venv/bin/python" "$ROOT/bench/bench_plasticity.py" --quick)
(cd /tmp && "$ROOT/.venv/bin/python" "$ROOT/bench/bench_microcircuit.py" --quick)
(cd /tmp && "$ROOT/.venv/bin/python" "$ROOT/bench/bench_gradients.py" --quick)
(cd /tmp && "$ROOT/.venv/bin/python" "$ROOT/bench/bench_network_gradients.py" --quick)
(cd /tmp && "$ROOT/.venv/bin/python" "$ROOT/bench/bench_network_loop.py" --steps 100 --scale 0.25 --settings default)
