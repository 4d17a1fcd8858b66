"""The runtime against a damaged or hostile disk cache, a compiler that never returns, and a
process that runs many models: each scenario in fresh Python processes, as a user meets it."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

# One small model, run in a fresh process; prints v after 10 ms.
RUN_MODEL = """
import json
import jax.numpy as jnp
import numpy as np
import spikeforge as sf

m = sf.NeuronModel("dv/dt = (drive - v) / tau : 1", constants=dict(tau=10.0, drive=0.5))
new, _ = m.run(m.init_state(3, dtype=jnp.float64), dt=0.1, steps=100)
print("V", json.dumps(np.asarray(new["v"]).tolist()))
"""

# Many distinct models in one process; prints its memory-mapping count after each. JAX's caches
# are cleared after each model, as if the program had moved on: a kernel is only unloaded once
# XLA no longer holds an executable that calls it.
RUN_MANY = """
import gc
import sys
import jax
import jax.numpy as jnp
import numpy as np
import spikeforge as sf

counts = []
for i in range(int(sys.argv[1])):
    m = sf.NeuronModel(f"dv/dt = -v / tau + {i + 1}.0 / 1000 : 1", constants=dict(tau=10.0))
    new, _ = m.run(m.init_state(4, dtype=jnp.float64), dt=0.1, steps=10)
    # v after 1 ms of dv/dt = -v/tau + c from 0 is c * tau * (1 - exp(-t/tau)).
    want = (i + 1) / 1000 * 10.0 * (1 - np.exp(-0.1))
    assert np.allclose(np.asarray(new["v"]), want, rtol=1e-2), (i, new["v"], want)
    del m, new
    jax.clear_caches()
    gc.collect()
    with open("/proc/self/maps") as f:
        counts.append(sum(1 for _ in f))
print("MAPS", " ".join(map(str, counts)))
"""


def run(script, cache, *args, **env):
    """Runs `script` in a fresh Python on the CPU with its own cache folder."""
    full = dict(os.environ, JAX_PLATFORMS="cpu", JAX_ENABLE_X64="1", SPIKEFORGE_CACHE_DIR=str(cache))
    full.update(env)
    return subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], env=full, capture_output=True, text=True, timeout=300
    )


def v_of(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("V "))
    v = np.array(json.loads(line[2:]))
    # Independent reference: v(t) = drive * (1 - exp(-t / tau)), within the integrator's error.
    np.testing.assert_allclose(v, 0.5 * (1 - np.exp(-1.0)), rtol=1e-2)
    return v


def libraries(cache):
    return sorted((cache / "cpu").glob("*.so"))


def test_truncated_cached_library_is_rebuilt_in_the_next_process(tmp_path):
    cache = tmp_path / "cache"
    first = v_of(run(RUN_MODEL, cache))
    libs = libraries(cache)
    assert libs
    whole = {p: p.read_bytes() for p in libs}
    for p, b in whole.items():
        p.write_bytes(b[: len(b) // 2])  # a disk that filled up, a killed copy
    # This used to kill the process with SIGBUS (and every later one).
    again = v_of(run(RUN_MODEL, cache))
    np.testing.assert_array_equal(first, again)
    for p, b in whole.items():
        assert p.read_bytes() == b, "the damaged entry is rewritten"


def blob(payload):
    """A cache entry as the runtime writes it: magic, SHA-256 of the payload, payload."""
    return b"SPKFBLB1" + hashlib.sha256(payload).digest() + payload


def planted_library(tmp_path, marker):
    src = tmp_path / "planted.c"
    src.write_text(
        "#include <stdio.h>\n"
        "__attribute__((constructor)) static void planted(void) {\n"
        f'  FILE *f = fopen("{marker}", "w"); if (f) fclose(f);\n'
        "}\n"
    )
    so = tmp_path / "planted.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(so), str(src)], check=True)
    return blob(so.read_bytes())


def test_library_planted_in_a_cache_others_can_write_never_runs(tmp_path):
    cache = tmp_path / "cache"
    v_of(run(RUN_MODEL, cache))
    marker = tmp_path / "planted-constructor-ran"
    # Every library of the model replaced by a valid, checksummed entry whose constructor leaves a
    # mark: what another user who can write the folder would plant.
    planted = planted_library(tmp_path, marker)
    for p in libraries(cache):
        p.write_bytes(planted)

    hostile = [("world-writable", lambda: cache.chmod(0o777))]
    if os.geteuid() == 0:

        def foreign_owner():
            cache.chmod(0o755)
            for p in [cache, *cache.rglob("*")]:
                os.lchown(p, 65534, 65534)

        hostile.append(("owned by another user", foreign_owner))
    for what, make in hostile:
        make()
        proc = run(RUN_MODEL, cache)
        assert proc.returncode != 0, what
        assert "refusing to use the cache folder" in proc.stderr, (what, proc.stderr[-3000:])
        assert str(cache) in proc.stderr
        assert "SPIKEFORGE_CACHE_DIR" in proc.stderr
        assert not marker.exists(), f"{what}: the planted constructor ran"

    # Control: the same files in the user's own private folder are the user's own code and do
    # run, so the plant above was where the model looks.
    for p in [cache, *cache.rglob("*")]:
        os.lchown(p, os.geteuid(), os.getegid())
    cache.chmod(0o700)
    run(RUN_MODEL, cache)
    assert marker.exists()


def test_default_cache_without_home_is_per_user_and_private(tmp_path):
    env = {k: "" for k in ("SPIKEFORGE_CACHE_DIR", "XDG_CACHE_HOME", "HOME")}
    env["TMPDIR"] = str(tmp_path)
    proc = run(RUN_MODEL, "", **env)
    v_of(proc)
    folder = tmp_path / f"spikeforge-cache-{os.geteuid()}"
    assert libraries(folder)
    assert folder.stat().st_mode & 0o777 == 0o700


def hanging_compiler(tmp_path):
    pids = tmp_path / "pids"
    script = tmp_path / "hang-cc"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo hang-cc 1.0; exit 0; fi\n'
        f"sleep 1000 & echo $! > {pids}; echo $$ >> {pids}\n"
        "sleep 1000\n"
    )
    script.chmod(0o755)
    return script, pids


def running(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def test_a_compiler_that_never_returns_is_stopped_with_a_clear_error(tmp_path):
    script, pids = hanging_compiler(tmp_path)
    t = time.monotonic()
    proc = run(RUN_MODEL, tmp_path / "cache", CC=str(script), SPIKEFORGE_COMPILE_TIMEOUT="2")
    took = time.monotonic() - t
    assert proc.returncode != 0
    assert "took longer than 2 s, so the C compiler" in proc.stderr, proc.stderr[-3000:]
    assert "SPIKEFORGE_COMPILE_TIMEOUT=<seconds>" in proc.stderr
    assert took < 60, took
    deadline = time.monotonic() + 10
    for pid in pids.read_text().split():
        while running(pid):
            assert time.monotonic() < deadline, f"compiler process {pid} still runs"
            time.sleep(0.05)


def test_a_bad_timeout_setting_is_named(tmp_path):
    proc = run(RUN_MODEL, tmp_path / "cache", SPIKEFORGE_COMPILE_TIMEOUT="soon")
    assert proc.returncode != 0
    assert "SPIKEFORGE_COMPILE_TIMEOUT=soon: expected a number of seconds" in proc.stderr, proc.stderr[-3000:]


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_many_models_keep_the_memory_mappings_bounded(tmp_path):
    # Each loaded model library costs ~5 mappings; kept forever, ~13,000 models exhaust the
    # kernel's limit (65530) and dlopen fails. With a bound of 4 the count stays flat once XLA
    # lets go of the executables.
    proc = run(RUN_MANY, tmp_path / "cache", 40, SPIKEFORGE_MAX_LOADED_MODULES="4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = [int(c) for c in next(ln for ln in proc.stdout.splitlines() if ln.startswith("MAPS"))[5:].split()]
    assert max(counts[10:]) - counts[10] < 40, counts
