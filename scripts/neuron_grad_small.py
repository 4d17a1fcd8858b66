"""Neuron-run gradients on the GPU at small sizes, for compute-sanitizer on the forward pass
under differentiation (``sf_neuron_run`` with checkpoints) and the neuron adjoint kernel
(``sf_neuron_adjoint``):

    XLA_PYTHON_CLIENT_PREALLOCATE=false compute-sanitizer --tool memcheck --error-exitcode 9 \\
        --kernel-name regex:sf_neuron python scripts/neuron_grad_small.py

``bench_gradients.py``'s LIF (refractory period, per-step input, fast sigmoid) on 1000 neurons
(not a multiple of the block): 100 steps in segments of 8 (full segments only, in registers),
103 steps (a shorter last segment), 103 steps in segments of 40 (the scratch), a loss that also
reads the spike train (its per-step cotangent), a batch of two (vmap); float32 then float64.
``--quick``: float32, 103 steps in segments of 8 only. Prints the gradients' norms and "ok" when
every one is finite.
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
from bench_gradients import DT, model, spikeforge_loss  # noqa: E402

jax.config.update("jax_enable_x64", True)
N = 1000
# --quick: float32 only, 103 steps in segments of 8 (the shorter last segment too).
QUICK = "--quick" in sys.argv[1:]
m = model()
ok = True
for dtype in (jnp.float32,) if QUICK else (jnp.float32, jnp.float64):
    rng = np.random.default_rng(0)
    state0 = m.init_state(N, dtype=dtype)
    w = jnp.asarray(rng.normal(size=N), dtype)
    for steps, k in ((103, 8),) if QUICK else ((100, 8), (103, 8), (103, 40)):
        v0 = jnp.asarray(rng.uniform(0.0, 0.9, N), dtype)
        currents = jnp.asarray(rng.uniform(0.8, 1.6, (steps, N)), dtype)
        grads = jax.grad(spikeforge_loss(m, state0, w, steps, k), argnums=(0, 1))(v0, currents)

        def train_loss(v0, c, steps=steps, k=k, state0=state0):
            run = dict(dt=DT, steps=steps, inputs={"I": c}, record_spike_train=True, checkpoint_every=k)
            _, out = m.run(dict(state0, v=v0), **run)
            return (out.spike_train * jnp.arange(out.spike_train.shape[0])[:, None]).sum()

        grads += jax.grad(train_loss, argnums=(0, 1))(v0, currents)
        batched = jax.vmap(jax.grad(spikeforge_loss(m, state0, w, steps, k), argnums=(0, 1)))(
            jnp.stack([v0, v0[::-1]]), jnp.stack([currents, currents[::-1]])
        )
        grads += tuple(batched)
        norms = [float(jnp.linalg.norm(g)) for g in grads]
        ok = ok and all(np.isfinite(norms))
        print(jnp.dtype(dtype).name, steps, k, " ".join(f"{x:.6e}" for x in norms))
print("ok" if ok else "NOT FINITE")
sys.exit(0 if ok else 1)
