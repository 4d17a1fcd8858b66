# %% [markdown]
# # Tutorial 4: training a spiking network with surrogate gradients
#
# `jax.grad` differentiates `model.run`: the backward pass is an **adjoint kernel generated from
# the same equations** as the forward one (the derivative of one step, taken symbolically, run
# backwards in time). The threshold's derivative, zero almost everywhere, is replaced by a
# **surrogate** named in the model, so that gradient descent learns through spikes.
#
# Here a small spiking network learns to classify scikit-learn's **digits** (8x8 images of
# handwritten digits, 10 classes):
#
# 1. each pixel's intensity is the probability that an input neuron spikes in a step (rate
#    coding, 25 steps of 1 ms);
# 2. the input spikes reach a hidden population of leaky integrate-and-fire neurons through a
#    trainable weight matrix: a JAX matmul gives the hidden neurons' **per-step input currents**;
# 3. the hidden population is **run by spikeforge** (`model.run` with per-step inputs), which
#    returns each neuron's spike train;
# 4. the hidden spike counts, through a second trainable matrix, are the class scores (logits);
#    the loss is the cross-entropy, plus a small penalty that keeps the population rate (made
#    from the spike train) near a target.
#
# Both matrices are trained with Adam (optax's when it is installed, else six lines below),
# backpropagating through the spiking run.

# %%
import os
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import spikeforge as sf
from sklearn.datasets import load_digits

try:
    import optax
except ImportError:  # Adam in a few lines below
    optax = None

# The size of the run: small by default (it runs in CI on two CPU cores in well under a minute);
# SPIKEFORGE_TUTORIAL_FULL=1 trains on the whole data set for longer.
FULL = os.environ.get("SPIKEFORGE_TUTORIAL_FULL", "0") == "1"
N_TRAIN, N_TEST, EPOCHS = (1347, 450, 30) if FULL else (400, 200, 8)
print("spikeforge", sf.__version__, "| jax", jax.__version__, "| running on:", jax.devices()[0])
print("optax" if optax else "Adam written here (optax not installed)", "| full size" if FULL else "| small size")

# %% [markdown]
# ## 1. The data
#
# 1797 images of 8x8 pixels with intensities 0..16, scaled to 0..1; a random split into training
# and test images.

# %%
digits = load_digits()
images = (digits.data / 16.0).astype(np.float32)
labels = digits.target.astype(np.int32)
order = np.random.default_rng(0).permutation(len(labels))
train_idx, test_idx = order[:N_TRAIN], order[N_TRAIN : N_TRAIN + N_TEST]
x_train, y_train = jnp.asarray(images[train_idx]), jnp.asarray(labels[train_idx])
x_test, y_test = jnp.asarray(images[test_idx]), jnp.asarray(labels[test_idx])
print("training images:", x_train.shape, "| test images:", x_test.shape)

fig, axes = plt.subplots(1, 10, figsize=(10, 1.3))
for digit, ax in enumerate(axes):
    ax.imshow(images[labels == digit][0].reshape(8, 8), cmap="gray_r")
    ax.set_title(str(digit))
    ax.axis("off")
plt.show()

# %% [markdown]
# ## 2. The hidden population, with a surrogate
#
# A leaky integrate-and-fire neuron driven by an input current `I` given per step. The model names
# its surrogate: the fast sigmoid (SuperSpike), `s(z) = 1 / (1 + k|z|)^2` with `z = v - 1`, stands
# in for the threshold's derivative in the backward pass; the forward pass is unchanged (the same
# spikes). The reset is differentiated (`detach_reset=True` would drop its term, as snnTorch does).

# %%
STEPS, DT, HIDDEN = 25, 1.0, 128

lif = sf.NeuronModel(
    """
    dv/dt = (I - v) / tau : 1
    I : 1
    """,
    threshold="v > 1",
    reset="v = 0",
    constants=dict(tau=10.0),  # ms
    method="exact",
    surrogate=sf.surrogate.fast_sigmoid(10.0),
)
state0 = lif.init_state(HIDDEN, dtype=jnp.float32)
print(lif)


def hidden_spikes(currents):
    """One image: the hidden population's spike train (STEPS, HIDDEN), real (with the surrogate it
    carries gradients), from its per-step input currents (STEPS, HIDDEN)."""
    _, out = lif.run(state0, dt=DT, steps=STEPS, inputs={"I": currents}, record_spike_train=True)
    return out.spike_train


# %% [markdown]
# ## 3. The network and the loss
#
# The input spikes are drawn once per image and epoch (a Bernoulli draw per pixel and step). The
# hidden currents are a JAX matmul; `jax.vmap` runs the whole batch through the spiking
# population as **one** kernel launch (the batch is folded into the neuron axis). The logits are
# the hidden spike counts through the output matrix.
#
# The population rate (`sf.population_rate_trace`, in Hz per step) is made from the spike train;
# a small penalty keeps its mean near 50 Hz, so that the hidden neurons neither fall silent nor
# fire at every step. Its gradient flows through the spike train like the cross-entropy's does
# through the counts.

# %%
TARGET_RATE = 50.0  # Hz


def init_params(key):
    k_in, k_out = jax.random.split(key)
    return {
        "w_in": jax.random.normal(k_in, (64, HIDDEN)) * 0.6,
        "w_out": jax.random.normal(k_out, (HIDDEN, 10)) * 0.3,
        "b_out": jnp.zeros(10),
    }


def encode(key, x):
    """Rate coding: input spikes (batch, STEPS, 64), a pixel of intensity p spikes with probability
    p in each step."""
    return (jax.random.uniform(key, (x.shape[0], STEPS, 64)) < x[:, None, :]).astype(jnp.float32)


def forward(params, spikes_in):
    currents = spikes_in @ params["w_in"]  # (batch, STEPS, HIDDEN): the per-step inputs
    train = jax.vmap(hidden_spikes)(currents)  # (batch, STEPS, HIDDEN), one launch
    logits = train.sum(axis=1) @ params["w_out"] / STEPS + params["b_out"]
    return logits, train


def loss_fn(params, spikes_in, y):
    logits, train = forward(params, spikes_in)
    cross_entropy = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))
    rate = jax.vmap(lambda t: sf.population_rate_trace(t, dt=DT))(train)  # (batch, STEPS), Hz
    penalty = 1e-4 * (jnp.mean(rate) - TARGET_RATE) ** 2
    return cross_entropy + penalty, (logits, jnp.mean(rate))


# %% [markdown]
# ## 4. Training
#
# Adam on mini-batches of 50 images; one jitted step computes the loss and its gradient with
# respect to both matrices, through the spiking run (forward kernel in checkpointed segments,
# then the adjoint kernel backwards over each).

# %%
LEARNING_RATE, BATCH = 2e-2, 50

if optax is not None:
    optimizer = optax.adam(LEARNING_RATE)
    opt_init, opt_update = optimizer.init, optimizer.update
else:

    def opt_init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return (zeros, zeros, 0)

    def opt_update(grads, opt_state, params=None, b1=0.9, b2=0.999, eps=1e-8):
        m, v, t = opt_state
        t = t + 1
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
        scale = LEARNING_RATE * jnp.sqrt(1 - b2**t) / (1 - b1**t)
        return jax.tree.map(lambda m, v: -scale * m / (jnp.sqrt(v) + eps), m, v), (m, v, t)


@jax.jit
def train_step(params, opt_state, spikes_in, y):
    (loss, (logits, rate)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, spikes_in, y)
    updates, opt_state = opt_update(grads, opt_state, params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
    return params, opt_state, loss, rate


@jax.jit
def accuracy(params, key, x, y):
    logits, _ = forward(params, encode(key, x))
    return jnp.mean(jnp.argmax(logits, axis=1) == y)


key = jax.random.PRNGKey(0)
key, k_init = jax.random.split(key)
params = init_params(k_init)
opt_state = opt_init(params)
losses, rates, test_accuracy = [], [], []
start = time.perf_counter()
for epoch in range(EPOCHS):
    key, k_perm, k_enc, k_test = jax.random.split(key, 4)
    perm = jax.random.permutation(k_perm, N_TRAIN)
    spikes_all = encode(k_enc, x_train)
    for b in range(N_TRAIN // BATCH):
        batch = perm[b * BATCH : (b + 1) * BATCH]
        params, opt_state, loss, rate = train_step(params, opt_state, spikes_all[batch], y_train[batch])
        losses.append(float(loss))
        rates.append(float(rate))
    test_accuracy.append(float(accuracy(params, k_test, x_test, y_test)))
    epoch_loss, epoch_rate = np.mean(losses[-(N_TRAIN // BATCH) :]), np.mean(rates[-(N_TRAIN // BATCH) :])
    accuracy_now = test_accuracy[-1]
    print(f"epoch {epoch + 1:2d}: loss {epoch_loss:.3f}, rate {epoch_rate:5.1f} Hz, test accuracy {accuracy_now:.3f}")
print(f"trained in {time.perf_counter() - start:.1f} s; test accuracy {test_accuracy[-1]:.3f} (chance: 0.1)")

# %%
steps_per_epoch = N_TRAIN // BATCH
fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
ax_loss.plot(np.arange(len(losses)) / steps_per_epoch, losses)
ax_loss.set_xlabel("epoch")
ax_loss.set_ylabel("training loss (mini-batch)")
ax_acc.plot(np.arange(1, EPOCHS + 1), test_accuracy, "o-")
ax_acc.axhline(0.1, color="gray", linestyle="--", label="chance")
ax_acc.set_ylim(0, 1)
ax_acc.set_xlabel("epoch")
ax_acc.set_ylabel("test accuracy")
ax_acc.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 5. What the network does
#
# The hidden population's spikes for one test image of each of two classes, and the class scores.

# %%
key, k_show = jax.random.split(key)
logits, train = forward(params, encode(k_show, x_test[:2]))
fig, axes = plt.subplots(1, 3, figsize=(12, 3))
for i in range(2):
    t, n = np.nonzero(np.asarray(train[i]))
    axes[i].plot(t * DT, n, "|", markersize=3)
    axes[i].set_title(f"test image {i}: label {int(y_test[i])}, predicted {int(jnp.argmax(logits[i]))}")
    axes[i].set_xlabel("time (ms)")
    axes[i].set_ylabel("hidden neuron")
axes[2].bar(np.arange(10) - 0.2, jax.nn.softmax(logits[0]), width=0.4, label="image 0")
axes[2].bar(np.arange(10) + 0.2, jax.nn.softmax(logits[1]), width=0.4, label="image 1")
axes[2].set_xticks(range(10))
axes[2].set_xlabel("class")
axes[2].set_ylabel("softmax")
axes[2].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## What else differentiates
#
# - Gradients flow from the **new state**, the recorded **traces**, the **spike counts** and the
#   **spike train** (`record_spike_train=True`; with `record_every=k`, the spikes of each window of
#   `k` steps), with respect to the initial state, parameters, constants given per neuron and
#   per-step inputs (README, "Gradients").
# - `jax.grad` / `jax.vjp` / `jax.jacrev`, under `jax.jit` and `jax.vmap`; forward mode
#   (`jax.jvp`, `jax.jacfwd`) raises an error that says so.
# - Surrogates: `fast_sigmoid`, `sigmoid`, `arctan`, `piecewise_linear`, each with a slope.
