"""COBA x1 (bench/bench_network_gradients.py's network: 4000 neurons, 1000 steps, float32): the
spikeforge gradient called twice (compile, then once more), for Nsight Compute on the network
adjoint kernel:

    ncu --kernel-name sf_network_adjoint --launch-skip 21 --launch-count 1 --set full \\
        -o adjoint python scripts/network_grad_profile.py

(20 segments of 50 steps a call at the default spacing: skip 21 lands on one of the second call.)
``--steps``/``--neurons``/``--checkpoint-every`` as the benchmark's. Prints the gradients' norms.
"""

import argparse
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
from bench_network_gradients import gradient_functions  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--neurons", type=int, default=4000)
p.add_argument("--steps", type=int, default=1000)
p.add_argument("--checkpoint-every", type=int, default=None)
a = p.parse_args()
_, args, _, sf_grad, *_ = gradient_functions(a.neurons, a.steps, np.float32, a.checkpoint_every)
for _ in range(2):
    grads = jax.block_until_ready(sf_grad(*args))
print("gradient norms", [float(np.linalg.norm(np.asarray(g))) for g in grads])
