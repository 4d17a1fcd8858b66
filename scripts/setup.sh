#!/usr/bin/env bash
# Prepares a fresh machine: system packages, Python environments, the Rust library.
# Idempotent: a second run only re-checks. Sourced by demo.sh and test.sh.
#
#   .venv     Python 3.12, newest jax (< 0.13), spikeforge installed with pip (builds the Rust library)
#   .venv311  Python 3.11, jax 0.10.2: the oldest supported jax, used by the compatibility tests
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '\n== %s\n' "$*"; }

need_apt=()
# A C compiler links the Rust library and compiles the CPU kernels at run time.
command -v cc >/dev/null || need_apt+=(gcc)
# Building needs no libclang (the XLA FFI bindings are committed); only the test that checks them
# against the installed jaxlib headers runs bindgen. libclang.so itself comes with libclang-N-dev
# (with clang's own headers), not with the libclang-cpp or libclang1 that other packages bring.
if [ "${SPIKEFORGE_REQUIRE_BINDINGS_CHECK:-0}" = 1 ]; then
  ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || need_apt+=(libclang-dev)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing system packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)"; exit 1; }

find_python() {  # $1 = major.minor: a Python that really runs (pyenv shims may not)
  local candidates=()
  if command -v pyenv >/dev/null; then
    local v; v="$(pyenv versions --bare 2>/dev/null | grep "^$1" | tail -1)"
    [ -n "$v" ] && candidates+=("$(PYENV_VERSION="$v" pyenv which python 2>/dev/null)")
  fi
  candidates+=($(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$1"*/bin/python 2>/dev/null | sort -V | tail -1))
  candidates+=("$(command -v "python$1" 2>/dev/null)")
  for py in "${candidates[@]}"; do
    if [ -n "$py" ] && "$py" -c 'import sys' >/dev/null 2>&1; then
      echo "$py"
      return
    fi
  done
}

make_venv() {  # $1 = dir, $2 = python version, rest = pip requirements
  local dir=$1 ver=$2; shift 2
  if [ ! -x "$dir/bin/python" ]; then
    local py; py="$(find_python "$ver")"
    [ -n "$py" ] || { echo "Python $ver not found (pyenv or python$ver)"; return 1; }
    log "creating $dir with $py"
    "$py" -m venv "$dir"
    "$dir/bin/python" -m pip install -q --upgrade pip
  fi
  "$dir/bin/python" -m pip install -q "$@"
}

log "Python 3.12 environment (.venv)"
make_venv .venv 3.12 "jax>=0.11,<0.13" "jaxlib>=0.11,<0.13" numpy setuptools setuptools-rust wheel \
  pytest matplotlib nbclient nbformat ipykernel jupytext ruff ${SPIKEFORGE_SETUP_EXTRA:-}

log "building and installing spikeforge (Rust, release)"
.venv/bin/python -m pip install -q --no-deps --force-reinstall .

if [ "${SPIKEFORGE_WITH_PY311:-0}" = 1 ]; then
  log "Python 3.11 environment with the oldest supported jax (.venv311)"
  make_venv .venv311 3.11 "jax==0.10.2" "jaxlib==0.10.2" numpy pytest
fi
