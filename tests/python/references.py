"""Independent float64 references (numpy) for the models of tests/models."""

import json
from pathlib import Path

import numpy as np

MODELS = Path(__file__).resolve().parent.parent / "models"


def load_spec(name: str) -> dict:
    return json.loads((MODELS / f"{name}.json").read_text())


def hh_rates(v):
    am = 0.1 * (v + 40) / (1 - np.exp(-(v + 40) / 10))
    bm = 4 * np.exp(-(v + 65) / 18)
    ah = 0.07 * np.exp(-(v + 65) / 20)
    bh = 1 / (1 + np.exp(-(v + 35) / 10))
    an = 0.01 * (v + 55) / (1 - np.exp(-(v + 55) / 10))
    bn = 0.125 * np.exp(-(v + 65) / 80)
    return am, bm, ah, bh, an, bn


def hh_derivatives(y, current, p):
    v, m, h, n = y
    am, bm, ah, bh, an, bn = hh_rates(v)
    i_ion = p["gNa"] * m**3 * h * (v - p["ENa"]) + p["gK"] * n**4 * (v - p["EK"]) + p["gL"] * (v - p["EL"])
    return np.stack([(current - i_ion) / p["Cm"], am * (1 - m) - bm * m, ah * (1 - h) - bh * h, an * (1 - n) - bn * n])


def hh_rk4(current, dt, steps, p, y0=(-65.0, 0.05, 0.6, 0.32)):
    """Classical RK4 in float64; returns the final state and the number of upward 0 mV crossings."""
    current = np.asarray(current, dtype=np.float64)
    y = np.stack([np.full_like(current, c) for c in y0])
    spikes = np.zeros(current.shape, dtype=np.int64)
    for _ in range(steps):
        k1 = hh_derivatives(y, current, p)
        k2 = hh_derivatives(y + dt / 2 * k1, current, p)
        k3 = hh_derivatives(y + dt / 2 * k2, current, p)
        k4 = hh_derivatives(y + dt * k3, current, p)
        y_new = y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        spikes += (y[0] <= 0) & (y_new[0] > 0)
        y = y_new
    return y, spikes


def lif_euler(v0, current, dt, steps, p, refractory_steps):
    """Brian2-semantics LIF with forward Euler in float64: v trace (start of each step), spike steps."""
    v = np.asarray(v0, dtype=np.float64).copy()
    lastspike = np.full(v.shape, -(10**9), dtype=np.int64)
    trace = np.empty((steps,) + v.shape)
    spike_steps = []
    for s in range(steps):
        trace[s] = v
        not_ref = (s - lastspike) >= refractory_steps
        dv = (p["v_rest"] - v + p["R"] * current) / p["tau"]
        v = np.where(not_ref, v + dt * dv, v)
        spike = (v > p["v_th"]) & not_ref
        v = np.where(spike, p["v_reset"], v)
        lastspike = np.where(spike, s, lastspike)
        spike_steps.append(np.nonzero(spike)[0])
    return v, trace, spike_steps


def hh_exponential_euler(current, dt, steps, p, y0=(-65.0, 0.05, 0.6, 0.32)):
    """Exponential Euler in Brian2's form, in float64: each variable x with dx/dt = A + B x
    (A, B at the start of the step) becomes -A/B + (x + A/B) exp(B dt). Returns the final state
    and the number of upward 0 mV crossings."""
    current = np.asarray(current, dtype=np.float64)
    v, m, h, n = (np.full_like(current, c) for c in y0)
    spikes = np.zeros(current.shape, dtype=np.int64)

    def update(x, a, b):
        ab = a / b
        return -ab + (x + ab) * np.exp(b * dt)

    for _ in range(steps):
        am, bm, ah, bh, an, bn = hh_rates(v)
        g = p["gNa"] * m**3 * h + p["gK"] * n**4 + p["gL"]
        a_v = (current + p["gNa"] * m**3 * h * p["ENa"] + p["gK"] * n**4 * p["EK"] + p["gL"] * p["EL"]) / p["Cm"]
        v_new = update(v, a_v, -g / p["Cm"])
        m, h, n = update(m, am, -(am + bm)), update(h, ah, -(ah + bh)), update(n, an, -(an + bn))
        spikes += (v <= 0) & (v_new > 0)
        v = v_new
    return np.stack([v, m, h, n]), spikes
