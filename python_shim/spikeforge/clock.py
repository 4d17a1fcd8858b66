"""Times in a group's state: float64 milliseconds carried as int32 word pairs.

Why: a state's time and the time of each element's last spike must not wrap or lose steps (a
step counter in int32 wraps after 2^31 steps; a float32 time loses steps long before), and JAX
without x64 has no 64-bit arrays. So the state keeps them as float64 values, each as two int32
words (low, high) along a trailing axis of 2; the kernel reads them as float64 and counts steps
in int64 on the grid of its own ``dt`` (src/codegen/clock.rs), with Brian2's rules, so a run may
continue a state advanced with another ``dt``.

``words(t)`` makes such pairs, ``value(pairs)`` reads them back: float64 when JAX has x64
enabled (exact), else float32 (within one float32 ulp, computed from the bits).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["NEVER_SPIKED", "words", "value", "time_of"]

NEVER_SPIKED = -np.inf
"""The time of the last spike of an element that never spiked."""

# Brian2's Clock.epsilon_dt: a time within this fraction of dt of a step is on that step.
EPSILON_DT = 1e-4


def words(t) -> np.ndarray:
    """float64 times (ms, any shape) -> int32 word pairs, shape ``(..., 2)``."""
    return np.ascontiguousarray(np.asarray(t, dtype="<f8")).view("<i4").reshape(np.shape(t) + (2,))


def value(pairs):
    """int32 word pairs ``(..., 2)`` -> the float64 times they hold (float32 without x64)."""
    pairs = jnp.asarray(pairs)
    if jax.config.jax_enable_x64:
        return jax.lax.bitcast_convert_type(pairs, jnp.float64)
    # No float64: decode sign, exponent and mantissa, and round to float32.
    lo = jax.lax.bitcast_convert_type(pairs[..., 0], jnp.uint32)
    hi = jax.lax.bitcast_convert_type(pairs[..., 1], jnp.uint32)
    sign = jnp.where(hi >> 31 == 1, -1.0, 1.0).astype(jnp.float32)
    exponent = ((hi >> 20) & 0x7FF).astype(jnp.int32)
    top = (hi & 0xFFFFF).astype(jnp.float32) * jnp.float32(2.0**-20)
    low = lo.astype(jnp.float32) * jnp.float32(2.0**-52)
    mantissa = top + low
    normal = jnp.ldexp(1.0 + mantissa, exponent - 1023)
    subnormal = jnp.ldexp(mantissa, -1022)
    finite = jnp.where(exponent == 0, subnormal, normal)
    special = jnp.where(mantissa == 0, jnp.inf, jnp.nan)
    return sign * jnp.where(exponent == 0x7FF, special, finite).astype(jnp.float32)


def time_of(state) -> jax.Array:
    """The time of a state (ms): float64 with x64, else float32."""
    return value(state["t"])


def check_continuation(t_words, dt: float) -> None:
    """Brian2's ``check_dt``: a run continues at the state's time, which must be a whole number
    of steps of ``dt`` (within 1e-4 dt), as it is when ``dt`` did not change. Checked when the
    time is known (not under ``jax.jit``, where the kernel starts at the next step instead, as
    Brian2's ``Clock._calc_timestep`` does)."""
    try:
        pairs = np.asarray(t_words)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return
    if pairs.dtype != np.int32 or pairs.shape[-1:] != (2,):
        return
    times = np.ascontiguousarray(pairs).view("<f8")[..., 0]
    for t in np.ravel(times):
        steps = np.round(t / dt)
        if steps * dt != t and abs(steps * dt - t) / dt > EPSILON_DT:
            raise ValueError(
                f"cannot continue at dt={dt} ms: the state's time {t!r} ms is not a multiple of it "
                f"(Brian2 refuses this too); continue with a dt that divides the time, or under "
                f"jax.jit, where the run starts at the next multiple of dt"
            )
