#!/usr/bin/env bash
# Regenerates the committed XLA FFI bindings, src/xla/sys/c_api.rs, with bindgen from
# xla/ffi/api/c_api.h of the oldest supported jaxlib (the lower bound of `jax` in pyproject.toml),
# then checks them against it (tests/xla_ffi_bindings.rs, which holds the bindgen options).
#
#   scripts/regen_xla_ffi_bindings.sh [PYTHON]
#
# PYTHON has that jaxlib installed; default .venv311/bin/python (scripts/setup.sh makes it with
# SPIKEFORGE_WITH_PY311=1). Needs libclang (Debian: apt-get install libclang-dev, or set
# LIBCLANG_PATH). Building spikeforge itself needs neither.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${1:-.venv311/bin/python}"

read -r installed oldest include < <("$PY" - <<'PY'
import importlib.metadata, os, re, tomllib
import jaxlib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
oldest = next(m.group(1) for d in deps if (m := re.fullmatch(r"jax>=([\d.]+)(,.*)?", d)))
include = os.path.join(os.path.dirname(jaxlib.__file__), "include")
print(importlib.metadata.version("jaxlib"), oldest, include)
PY
)
if [ "$installed" != "$oldest" ]; then
  echo "$PY has jaxlib $installed; the bindings are generated from the oldest supported, $oldest" >&2
  exit 1
fi

export SPIKEFORGE_XLA_FFI_INCLUDE="$include"
cargo test --release --test xla_ffi_bindings -- --ignored --exact regenerate --nocapture
cargo test --release --test xla_ffi_bindings
git --no-pager diff --stat -- src/xla/sys/c_api.rs
