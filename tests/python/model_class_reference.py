"""A float64 reference for model classes: runs the class's own ode() with numpy, one neuron at a
time (ode() branches on per-neuron values with Python's `if`), and steps it with the semantics
spikeforge documents (docs/DESIGN.md, "Python model classes"):

    y' = clip(E(y) + dt * increment),  E(y): the values ode() leaves in self.x,
    euler: increment = F(y);  rk4: (k1 + 2 k2 + 2 k3 + k4) / 6 with k_i = F(stage point),

where the stage points move only the integrated states (those whose self.d_x ode() assigns).
"""

import inspect

import numpy as np


def _call_ode(cls, values: dict, params: dict, kwargs: dict):
    obj = cls.__new__(cls)
    for k, v in params.items():
        setattr(obj, k, np.float64(v))
    for k, v in values.items():
        setattr(obj, k, np.float64(v))
    cls.ode(obj, **kwargs)
    return obj


def class_layout(cls):
    """(states, internals, bounds, params, argument defaults) of a model class."""
    states, bounds = [], {}
    for k, v in cls.Default_States.items():
        states.append(k)
        bounds[k] = (v[1], v[2]) if isinstance(v, tuple) else (None, None)
    internals = list(getattr(cls, "Default_Inters", {}) or {})
    params = {k: float(v) for k, v in cls.Default_Params.items()}
    sig = inspect.signature(cls.ode)
    args = {p.name: float(p.default) for p in list(sig.parameters.values())[1:]}
    return states, internals, bounds, params, args


def run_reference(cls, init: dict, dt: float, steps: int, method: str, per_neuron=None, per_step=None, record=()):
    """Runs `steps` steps for every neuron; `init` maps every stored variable to an (n,) array,
    `per_neuron` maps parameters/arguments to (n,) arrays, `per_step` arguments to (steps, n).
    Returns (final values dict, traces dict name -> (steps, n))."""
    states, internals, bounds, params, args = class_layout(cls)
    stored = states + internals
    per_neuron = per_neuron or {}
    per_step = per_step or {}
    n = len(np.asarray(init[stored[0]]))
    final = {k: np.empty(n) for k in stored}
    traces = {k: np.empty((steps, n)) for k in record}
    for j in range(n):
        p = dict(params)
        kw = dict(args)
        for k, v in per_neuron.items():
            (p if k in p else kw)[k] = float(v[j])
        y = {k: float(init[k][j]) for k in stored}
        integrated = None
        for s in range(steps):
            for k in record:
                traces[k][s, j] = y[k]
            for k, v in per_step.items():
                kw[k] = float(v[s, j])
            obj = _call_ode(cls, y, p, kw)
            if integrated is None:
                integrated = [k for k in states if hasattr(obj, "d_" + k)]
            end = {k: float(getattr(obj, k)) for k in stored}
            k1 = {k: float(getattr(obj, "d_" + k)) for k in integrated}
            if method == "euler":
                inc = k1
            else:

                def stage(kprev, h, y=y, p=p, kw=kw, integrated=integrated):
                    point = dict(y)
                    for k in integrated:
                        point[k] = y[k] + h * kprev[k]
                    o = _call_ode(cls, point, p, kw)
                    return {k: float(getattr(o, "d_" + k)) for k in integrated}

                k2 = stage(k1, dt / 2)
                k3 = stage(k2, dt / 2)
                k4 = stage(k3, dt)
                inc = {k: (k1[k] + 2 * k2[k] + 2 * k3[k] + k4[k]) / 6 for k in integrated}
            y = dict(end)
            for k in integrated:
                y[k] = end[k] + dt * inc[k]
            for k in states:
                lo, hi = bounds[k]
                if lo is not None:
                    y[k] = max(y[k], lo)
                if hi is not None:
                    y[k] = min(y[k], hi)
        for k in stored:
            final[k][j] = y[k]
    return final, traces
