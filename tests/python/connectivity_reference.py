"""A float64 numpy reference of spikeforge's connectivity rules with the same random stream,
written from the description in src/connect/mod.rs, independently of the generated kernels:
its own Philox4x32-10, numpy's logarithm, exact integer products in Python ints, sets for
Floyd's algorithm. Each function returns ``(i, j)`` of every synapse in Brian2's order (by ``i``,
then creation order)."""

from __future__ import annotations

import numpy as np

MASK = np.uint64(0xFFFFFFFF)
TAG = 0x434F4E4E  # "CONN"
SPACING = 2.0**-53


def philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 (Salmon et al. 2011) on arrays of counters; words held in uint64."""
    c = [np.asarray(x, dtype=np.uint64) & MASK for x in np.broadcast_arrays(c0, c1, c2, c3)]
    k0, k1 = np.uint64(k0), np.uint64(k1)
    for _ in range(10):
        p0 = np.uint64(0xD2511F53) * c[0]
        p1 = np.uint64(0xCD9E8D57) * c[2]
        hi0, lo0 = p0 >> np.uint64(32), p0 & MASK
        hi1, lo1 = p1 >> np.uint64(32), p1 & MASK
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
        k0 = (k0 + np.uint64(0x9E3779B9)) & MASK
        k1 = (k1 + np.uint64(0xBB67AE85)) & MASK
    return c


def bits(seed, stream, row, draw):
    """The 64 random bits of draw ``draw`` of ``row`` (arrays broadcast)."""
    draw = np.asarray(draw, dtype=np.uint64)
    c = philox(np.asarray(row, dtype=np.uint64), draw & MASK, draw >> np.uint64(32), TAG, seed, stream)
    return (c[0] << np.uint64(32)) | c[1]


def below(w, bound: int) -> list:
    """floor(w * bound / 2^64), exactly, with Python integers."""
    return [(int(x) * bound) >> 64 for x in np.asarray(w).reshape(-1)]


def _skip_candidates(seed, stream, row, n_post, p):
    """The candidates of one row by geometric skipping (ascending)."""
    log_q = np.log1p(-p)
    out, at, d, block = [], -1.0, 0, max(16, int(2 * n_post * p) + 16)
    while True:
        w = bits(seed, stream, row, np.arange(d, d + block))
        u = ((w >> np.uint64(11)) + np.uint64(1)).astype(np.float64) * SPACING
        steps = np.floor(np.log(u) / log_q) + 1.0
        positions = at + np.cumsum(steps)
        inside = positions < n_post
        out.extend(positions[inside].astype(np.int64))
        if not inside.all():
            return np.asarray(out, dtype=np.int64)
        at, d = positions[-1], d + block


def pairs(seed, stream, n_pre, n_post, *, p=1.0, condition=None, n=1, allow_self=True, self_offset=0):
    """Brian2's connect(condition, p, n). ``condition(i, j)`` -> bool array, ``p`` a number or
    ``p(i, j)`` -> float array, ``n`` an int or ``n(i, j)`` -> array (all vectorised over j)."""
    rows_i, rows_j = [], []
    for i in range(n_pre):
        if callable(p):
            js = np.arange(n_post, dtype=np.int64)
        elif p == 0:
            continue
        elif p == 1:
            js = np.arange(n_post, dtype=np.int64)
        else:
            js = _skip_candidates(seed, stream, i, n_post, p)
        if not allow_self:
            js = js[js != i + self_offset]
        ii = np.full(js.shape, float(i))
        if condition is not None:
            js = js[condition(ii, js.astype(np.float64))]
            ii = np.full(js.shape, float(i))
        if callable(p):
            pv = p(ii, js.astype(np.float64))
            assert ((pv >= 0) & (pv <= 1)).all()
            w = bits(seed, stream, i, js.astype(np.uint64))
            u = (w >> np.uint64(11)).astype(np.float64) * SPACING
            js = js[(pv >= 1) | (u < pv)]
            ii = np.full(js.shape, float(i))
        counts = np.asarray(n(ii, js.astype(np.float64)) if callable(n) else np.full(js.shape, n)).astype(np.int64)
        js = np.repeat(js, counts)
        rows_i.append(np.full(js.shape, i))
        rows_j.append(js)
    return _concat(rows_i, rows_j)


def _draws(seed, stream, row, k, population, replace, own):
    excluded = own is not None and 0 <= own < population
    m = population - int(excluded)
    w = bits(seed, stream, row, np.arange(k, dtype=np.uint64))
    if replace:
        values = [int(v) for v in below(w, m)]
    else:
        chosen = set()
        for t in range(k):
            top = m - k + t
            r = below(w[t : t + 1], top + 1)[0]
            chosen.add(top if r in chosen else r)
        values = sorted(chosen)
    return [v + 1 if excluded and v >= own else v for v in values]


def fixed_out_degree(seed, stream, n_pre, n_post, k, *, replace=True, allow_self=True, self_offset=0):
    rows_i, rows_j = [], []
    for i in range(n_pre):
        own = None if allow_self else i + self_offset
        js = _draws(seed, stream, i, k, n_post, replace, own)
        rows_i.append(np.full(len(js), i))
        rows_j.append(np.asarray(js, dtype=np.int64))
    return _concat(rows_i, rows_j)


def fixed_in_degree(seed, stream, n_pre, n_post, k, *, replace=True, allow_self=True, self_offset=0):
    """Draws per postsynaptic neuron, then ordered by i (within i: by j, then draw order)."""
    entries = []
    for j in range(n_post):
        own = None if allow_self else j - self_offset
        for t, i in enumerate(_draws(seed, stream, j, k, n_pre, replace, own)):
            entries.append((i, j, t))
    entries.sort()
    i = np.asarray([e[0] for e in entries], dtype=np.int64)
    j = np.asarray([e[1] for e in entries], dtype=np.int64)
    return i, j


def _concat(rows_i, rows_j):
    if not rows_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows_i).astype(np.int64), np.concatenate(rows_j).astype(np.int64)
