"""Connectivity: which synapses a projection has, built on the device from a rule and a seed.

Why: a network's synapses are chosen once, when its state is built, by Brian2's rules
(``connect(condition, p, n)``, ``i``/``j`` arrays) or by a fixed in- or out-degree (BrainPy's and
brainevent's benchmarks). At the scale that matters (400 k neurons, p = 0.02: 3.2e9 candidate
pairs, 32 M synapses) drawing them in Python is far too slow, so each rule becomes a generated
kernel (``src/codegen/connect_kernel.rs``) run through the ``spikeforge_connect`` FFI target, on
the GPU when there is one and on the CPU otherwise. Every random number is a pure function of
``(seed, stream, row, draw)`` (Philox4x32-10, ``src/connect/mod.rs`` describes the stream), so
the same seed gives the same synapses on both.

How: a count pass gives each row's number of synapses; this module adds them up on the host (this
runs in ``init_state``, outside ``jit``), allocates exactly the targets and runs the fill pass,
which writes every row's targets into its slice. ``i``/``j`` arrays are checked and sorted into
rows here, without a kernel.

The result, :class:`Connectivity`, is CSR by presynaptic neuron in Brian2's synapse order (by
``i``, then in creation order): ``row_offsets`` ``(n_pre + 1,)`` int32 (int64 as int32 word
pairs, ``(n_pre + 1, 2)``, when the synapse count passes 2^31 - 1) and ``targets`` ``(n_syn,)``
int32, the postsynaptic index within the target group. Optionally ``sources`` (Brian2's ``i`` per
synapse) and a by-post index (``col_offsets``, ``synapses_by_post``; :func:`with_by_post`).
:func:`sort_rows` sorts each
row by a per-synapse key (a delay) and returns the permutation for the synapses' variables.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import numbers
import os
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from . import _native
from .errors import ModelError
from .ffi_primitive import FfiCall, ffi_primitive
from .units import DIMENSIONLESS, to_kernel_units

__all__ = [
    "Pairs",
    "FixedOutDegree",
    "FixedInDegree",
    "Explicit",
    "Connectivity",
    "connect_rule",
    "check_rule",
    "build",
    "with_by_post",
    "sort_rows",
    "source",
    "connect_p",
    "NO_SELF",
]

INT32_MAX = 2**31 - 1

NO_SELF = -(2**62)
"""``self_offset`` when the two sides are different groups (must match ``connect::NO_SELF``)."""

# -- rules -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pairs:
    """Brian2's ``connect(condition, p, n)``: every pair ``(i, j)`` for which ``condition`` holds
    is connected with probability ``p`` by ``n`` synapses.

    ``condition``: an expression of ``i``, ``j``, ``N_pre``, ``N_post``, the groups' variables
    (``x_pre``, ``x_post``, given to :func:`build`), constants and unit names (``None``: every
    pair). ``p``: a number in [0, 1] (a constant ``p`` below 1 is drawn by geometric skipping, so
    the work is proportional to the synapses, not to the pairs) or an expression of the same names
    (then every pair that passes the condition is visited). ``n``: a whole number, or an
    expression. ``allow_self=False`` leaves out each neuron's pair with itself (as
    ``condition="i != j"`` does for one group onto itself; see ``self_offset`` in :func:`build`).
    """

    condition: str | None = None
    p: float | str = 1.0
    n: int | str = 1
    allow_self: bool = True


@dataclasses.dataclass(frozen=True)
class FixedOutDegree:
    """``k`` postsynaptic targets drawn uniformly for every presynaptic neuron. With
    replacement (multapses possible), the targets keep the order they were drawn in; without,
    they are ``k`` distinct neurons in increasing order. ``allow_self=False`` never draws the
    neuron itself."""

    k: int
    replace: bool = True
    allow_self: bool = True


@dataclasses.dataclass(frozen=True)
class FixedInDegree:
    """``k`` presynaptic sources drawn uniformly for every postsynaptic neuron (as
    :class:`FixedOutDegree`, from the other side), then stored by presynaptic neuron: within a
    row, by postsynaptic neuron, then in the order drawn."""

    k: int
    replace: bool = True
    allow_self: bool = True


@dataclasses.dataclass(frozen=True, eq=False)
class Explicit:
    """Given pairs (Brian2's ``connect(i=..., j=...)``): ``i`` and ``j`` integer arrays of one
    length (or scalars), each pair connected by ``n`` synapses. Out-of-range indices are an
    error, or dropped with ``skip_if_invalid=True`` (Brian2's flag)."""

    i: object
    j: object
    n: int = 1
    skip_if_invalid: bool = False


Rule = Pairs | FixedOutDegree | FixedInDegree | Explicit


def connect_rule(
    condition=None,
    i=None,
    j=None,
    p=1.0,
    n=1,
    skip_if_invalid: bool = False,
    *,
    fixed_out_degree: int | None = None,
    fixed_in_degree: int | None = None,
    replace: bool = True,
    allow_self: bool = True,
) -> Rule:
    """The rule of a Brian2-style ``Synapses.connect(...)`` call (Brian2's keywords and
    defaults, plus ``fixed_out_degree=`` / ``fixed_in_degree=`` with ``replace=`` and
    ``allow_self=``). Combinations Brian2 does not allow are errors here too."""
    if isinstance(condition, (bool, np.bool_)):
        condition, p = None, (p if condition else 0.0)
    if condition is not None and not isinstance(condition, str):
        raise ModelError(f"condition must be a string or a bool, got {condition!r}", field="condition")
    degrees = [
        (name, k)
        for name, k in (("fixed_out_degree", fixed_out_degree), ("fixed_in_degree", fixed_in_degree))
        if k is not None
    ]
    if len(degrees) == 2:
        raise ModelError("give fixed_out_degree or fixed_in_degree, not both", field="fixed_in_degree")
    if degrees:
        ((name, k),) = degrees
        others = [
            a
            for a, given in (
                ("condition", condition is not None),
                ("i", i is not None),
                ("j", j is not None),
                ("p", not _is_one(p)),
                ("n", not _is_one(n)),
            )
            if given
        ]
        if others:
            raise ModelError(f"{name} cannot be combined with {', '.join(others)}", field=name)
        k = _whole(k, name, lo=0, hi=INT32_MAX)
        cls = FixedOutDegree if name == "fixed_out_degree" else FixedInDegree
        return cls(k=k, replace=_flag(replace, "replace"), allow_self=_flag(allow_self, "allow_self"))
    if i is not None or j is not None:
        if i is None or j is None:
            raise ModelError(
                "give both i and j (arrays of pairs); generator syntax (j='...' alone) is not supported",
                field="j" if i is not None else "i",
            )
        if isinstance(i, str) or isinstance(j, str):
            raise ModelError("i and j must be integer arrays (generator syntax is not supported)", field="j")
        if condition is not None or not _is_one(p):
            raise ModelError(
                "condition= and p= cannot be combined with i/j arrays",
                field="condition" if condition is not None else "p",
            )
        return Explicit(
            i=i, j=j, n=_whole(n, "n", lo=0, hi=INT32_MAX), skip_if_invalid=_flag(skip_if_invalid, "skip_if_invalid")
        )
    return Pairs(condition=condition, p=p, n=n, allow_self=_flag(allow_self, "allow_self"))


def _is_one(value) -> bool:
    return not isinstance(value, str) and isinstance(value, numbers.Real) and value == 1


def _flag(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ModelError(f"{name} must be True or False, got {value!r}", field=name)
    return bool(value)


def _whole(value, name: str, *, lo: int, hi: int) -> int:
    """An integer in [lo, hi] (an integral float is accepted; bools are not)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ModelError(f"{name} must be an integer, got {value!r}", field=name)
    if not float(value).is_integer() or not lo <= value <= hi:
        raise ModelError(f"{name} must be an integer in {lo}..{hi}, got {value!r}", field=name)
    return int(value)


# -- the primitive -----------------------------------------------------------------------------


def _lowering(*, spec, key, phase, n_pre, n_post, self_offset) -> FfiCall:
    return FfiCall(
        attributes=dict(spec=spec, key=key, phase=phase, n_pre=n_pre, n_post=n_post, self_offset=self_offset)
    )


def _no_batching(primitive, args, dims, **params):
    raise NotImplementedError(
        "spikeforge_connect: connectivity is built once, outside jit and vmap (by build(), when a "
        "network's state is made); vmap over seeds is not supported"
    )


connect_p = ffi_primitive("spikeforge_connect", _lowering, batching=_no_batching)
"""The ``spikeforge_connect`` primitive (``src/handlers/connect.rs`` documents its operands)."""


@functools.lru_cache(maxsize=256)
def _compile(spec_json: str) -> dict:
    info = _native.connect_compile(spec_json)
    if not info["ok"]:
        raise ModelError.from_native(info["error"])
    return info


def _spec(rule: Rule, pre_values: Mapping, post_values: Mapping, constants: Mapping) -> dict:
    if isinstance(rule, Pairs):
        condition = rule.condition
        if condition is not None and not isinstance(condition, str):
            raise ModelError(f"condition must be a string, got {condition!r}", field="condition")
        body = dict(
            kind="pairs",
            condition=condition,
            p=_number_or_code(rule.p, "p"),
            n=_number_or_code(rule.n, "n"),
            allow_self=_flag(rule.allow_self, "allow_self"),
        )
    elif isinstance(rule, (FixedOutDegree, FixedInDegree)):
        name = "fixed_out_degree" if isinstance(rule, FixedOutDegree) else "fixed_in_degree"
        body = dict(
            kind=name,
            k=_whole(rule.k, name, lo=0, hi=INT32_MAX),
            replace=_flag(rule.replace, "replace"),
            allow_self=_flag(rule.allow_self, "allow_self"),
        )
    else:
        raise TypeError(f"rule must be Pairs, FixedOutDegree, FixedInDegree or Explicit, got {type(rule).__name__}")
    # Only numbers are visible to a rule (a projection's constants may hold other things).
    folded = {}
    for name, value in constants.items():
        value = to_kernel_units(value, f"constants[{name!r}]")
        if not isinstance(value, (bool, np.bool_)) and np.ndim(value) == 0 and np.asarray(value).dtype.kind in "iuf":
            folded[str(name)] = float(value)
    return dict(
        rule=body,
        pre_variables=sorted(map(str, pre_values)),
        post_variables=sorted(map(str, post_values)),
        constants=folded,
    )


def _number_or_code(value, name: str):
    if isinstance(value, str):
        return value
    return _real(to_kernel_units(value, name, expect=DIMENSIONLESS), name)


def _real(value, name: str) -> float:
    """One real number (a Python or numpy scalar, or a 0-d array), not a bool."""
    a = np.asarray(value)
    if isinstance(value, (bool, np.bool_)) or a.ndim != 0 or a.dtype.kind not in "iuf":
        raise ModelError(f"{name} must be a number or an expression (a string), got {value!r}", field=name)
    return float(a)


def check_rule(rule: Rule, *, pre_variables=(), post_variables=(), constants=None) -> dict:
    """Checks ``rule`` against the names it may read (the groups' variables, constants), without
    building anything: a mistake raises :class:`ModelError` with its place (``condition``, ``p``,
    ``n``, with a caret), as when ``Synapses.connect`` is called. Returns what the library
    answers: the canonical spec and key, the variables the rule reads (``pre_variables``,
    ``post_variables``), ``rows`` (``"pre"``, or ``"post"`` for a fixed in-degree). :class:`Explicit`
    rules read no names; their arrays are checked by :func:`build`."""
    if isinstance(rule, Explicit):
        return {}
    spec = _spec(rule, dict.fromkeys(pre_variables), dict.fromkeys(post_variables), constants or {})
    return _compile(json.dumps(spec, sort_keys=True))


def source(rule: Rule, target: str = "c", *, pre_variables=(), post_variables=(), constants=None) -> str:
    """The generated kernels of ``rule`` for ``target`` (``"c"`` or ``"cuda"``), to read."""
    spec = _spec(rule, dict.fromkeys(pre_variables), dict.fromkeys(post_variables), constants or {})
    info = _native.connect_source(json.dumps(spec, sort_keys=True), target)
    if not info["ok"]:
        raise ModelError.from_native(info["error"])
    return info["source"]


# -- the result --------------------------------------------------------------------------------


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Connectivity:
    """A projection's synapses, CSR by presynaptic neuron, in Brian2's order (by ``i``, then in
    creation order). Arrays live on the device they were built on."""

    row_offsets: jax.Array
    """``(n_pre + 1,)`` int32; ``(n_pre + 1, 2)`` int32 little-endian word pairs of int64
    offsets when ``wide`` (more than 2^31 - 1 synapses, or asked for)."""
    targets: jax.Array
    """``(n_syn,)`` int32: the postsynaptic neuron of each synapse, within the target group."""
    sources: jax.Array | None = None
    """``(n_syn,)`` int32: the presynaptic neuron of each synapse (Brian2's ``i``), if asked."""
    col_offsets: jax.Array | None = None
    """``(n_post + 1,)`` int32, if the by-post index was asked for (:func:`with_by_post`)."""
    synapses_by_post: jax.Array | None = None
    """``(n_syn,)`` int32: the synapses of each postsynaptic neuron, in increasing synapse order,
    ``synapses_by_post[col_offsets[j]:col_offsets[j + 1]]``."""
    n_pre: int = dataclasses.field(default=0, metadata=dict(static=True))
    n_post: int = dataclasses.field(default=0, metadata=dict(static=True))
    n_synapses: int = dataclasses.field(default=0, metadata=dict(static=True))

    @property
    def wide(self) -> bool:
        """Whether the row offsets are int64 (as int32 word pairs)."""
        return self.row_offsets.ndim == 2

    def offsets(self) -> np.ndarray:
        """The row offsets as an int64 numpy array, whatever their storage."""
        o = np.asarray(self.row_offsets)
        return np.ascontiguousarray(o).view(np.int64).reshape(-1) if self.wide else o.astype(np.int64)

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """``(i, j)`` of every synapse, in synapse order, as numpy arrays (to inspect, compare,
        or hand to Brian2)."""
        counts = np.diff(self.offsets())
        i = np.repeat(np.arange(self.n_pre, dtype=np.int32), counts)
        return i, np.asarray(self.targets)

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays."""
        arrays = (self.row_offsets, self.targets, self.sources, self.col_offsets, self.synapses_by_post)
        return sum(int(a.size) * a.dtype.itemsize for a in arrays if a is not None)

    @property
    def floor_bytes(self) -> int:
        """The least any CSR by pre can take: 4 bytes per synapse and the row offsets."""
        return 4 * self.n_synapses + (8 if self.wide else 4) * (self.n_pre + 1)


# -- building ----------------------------------------------------------------------------------


def build(
    rule: Rule,
    n_pre: int,
    n_post: int,
    *,
    seed: int = 0,
    stream: int = 0,
    pre_values: Mapping | None = None,
    post_values: Mapping | None = None,
    constants: Mapping | None = None,
    self_offset: int | None = 0,
    platform: str | None = None,
    sources: bool = False,
    by_post: bool = False,
    wide: bool | None = None,
) -> Connectivity:
    """The synapses ``rule`` gives between ``n_pre`` and ``n_post`` neurons (a :class:`Pairs`,
    :class:`FixedOutDegree`, :class:`FixedInDegree` or :class:`Explicit`; :func:`connect_rule`
    makes one from Brian2's keywords).

    ``seed`` and ``stream`` (each in 0..2^32-1) key the random numbers: one seed per network,
    and a different stream for every ``connect`` call in it (e.g. the projection's index), so
    projections draw independently. ``pre_values`` / ``post_values``: name -> ``(n_pre,)`` /
    ``(n_post,)`` values of the groups' variables, read as ``name_pre`` / ``name_post`` in the
    rule's expressions (numbers or quantities; computed in float64). ``constants``: name ->
    number. ``self_offset``: the postsynaptic index of presynaptic neuron 0 when both sides are
    (parts of) one group, so that ``allow_self=False`` leaves out pair ``(i, i + self_offset)``;
    ``None`` when the groups differ (no pair is a self-connection). ``platform``: ``"cpu"``,
    ``"gpu"`` or ``None`` (JAX's default device). ``sources=True`` adds each synapse's ``i``,
    ``by_post=True`` the by-post index; ``wide`` forces (or refuses) int64 row offsets.
    """
    n_pre = _whole(n_pre, "n_pre", lo=0, hi=INT32_MAX)
    n_post = _whole(n_post, "n_post", lo=0, hi=INT32_MAX)
    seed = _whole(seed, "seed", lo=0, hi=2**32 - 1)
    stream = _whole(stream, "stream", lo=0, hi=2**32 - 1)
    if self_offset is not None:
        self_offset = _whole(self_offset, "self_offset", lo=-INT32_MAX, hi=INT32_MAX)
    device = _device(platform)
    pre_values, post_values = dict(pre_values or {}), dict(post_values or {})
    in_degree = isinstance(rule, FixedInDegree)
    # int32 arrays besides the targets: sources, the by-post index, the transposition's order.
    extra = int(sources) + int(by_post) + int(in_degree)
    with jax.default_device(device):
        if isinstance(rule, Explicit):
            if pre_values or post_values or constants:
                raise ModelError("i/j arrays read no variables or constants", field="pre_values")
            offsets, targets = _explicit(rule, n_pre, n_post)
            _check_fits(int(offsets[-1]), device, extra_int32=extra)
        else:
            spec = _spec(rule, pre_values, post_values, constants or {})
            info = _compile(json.dumps(spec, sort_keys=True))
            values = [
                _values(pre_values, info["pre_variables"], n_pre, "pre_values"),
                _values(post_values, info["post_variables"], n_post, "post_values"),
            ]
            call = dict(
                spec=info["spec"],
                key=info["key"],
                n_pre=n_pre,
                n_post=n_post,
                self_offset=NO_SELF if self_offset is None else self_offset,
            )
            operands = [jax.device_put(x, device) for x in [np.array([seed, stream], np.uint32), *values]]
            offsets, targets = _run(rule, info, call, operands, device, n_pre, n_post, self_offset, extra)
        n_syn = int(offsets[-1])
        if in_degree:
            return _transposed(targets, rule.k, n_pre, n_post, wide=wide, sources=sources, by_post=by_post)
        return _finish(offsets, targets, n_pre, n_post, wide=wide, sources=sources, by_post=by_post, n_syn=n_syn)


def _device(platform):
    if platform is None:
        return jax.devices()[0]
    if not isinstance(platform, str) or platform.lower() not in ("cpu", "gpu", "cuda"):
        raise ModelError(f"platform must be 'cpu', 'gpu' or None, got {platform!r}", field="platform")
    name = "cpu" if platform.lower() == "cpu" else "gpu"
    try:
        return jax.devices(name)[0]
    except RuntimeError as e:
        raise ModelError(f"platform {platform!r} is not available here ({e})", field="platform") from None


def _values(given: Mapping, names, n: int, what: str) -> np.ndarray:
    """The variables the kernel reads, float64, as ``(k, n, 2)`` int32 word pairs."""
    out = np.zeros((len(names), n), np.float64)
    for k, name in enumerate(names):
        where = f"{what}[{name!r}]"
        value = np.asarray(to_kernel_units(given[name], where))
        if value.dtype.kind not in "biuf":
            raise ModelError(f"{where} must be numbers, got dtype {value.dtype}", field=what)
        if value.ndim == 0:
            value = np.full((n,), value)
        if value.shape != (n,):
            raise ModelError(f"{where} has shape {value.shape}, but the group has {n} neurons: give ({n},)", field=what)
        out[k] = value
    return out.view(np.int32).reshape(len(names), n, 2)


def _run(rule, info, call, operands, device, n_pre, n_post, self_offset, extra: int):
    """Count, check, allocate, fill: the row offsets (numpy int64) and the targets (device)."""
    rows = n_pre if info["rows"] == "pre" else n_post
    (counts,) = connect_p(*operands, outs=[jax.ShapeDtypeStruct((rows, 2), jnp.int32)], phase="count", **call)
    counts = np.ascontiguousarray(np.asarray(counts)).view(np.int64).reshape(rows)
    bad = np.flatnonzero(counts < 0)
    if bad.size:
        codes = {code: name for name, code in info["error_codes"].items()}
        raise _row_error(codes.get(int(counts[bad[0]]), "unknown"), int(bad[0]), rule, n_pre, n_post, self_offset)
    offsets = _offsets(counts)
    _check_fits(int(offsets[-1]), device, extra_int32=extra)
    n_syn = int(offsets[-1])
    if n_syn == 0:
        return offsets, jnp.zeros((0,), jnp.int32)
    table = jax.device_put(offsets.view(np.int32).reshape(rows + 1, 2), device)
    (targets,) = connect_p(*operands, table, outs=[jax.ShapeDtypeStruct((n_syn,), jnp.int32)], phase="fill", **call)
    return offsets, targets


def _offsets(counts: np.ndarray) -> np.ndarray:
    """Row offsets from row counts, in int64, refusing a total past 2^63 - 1."""
    counts = counts.astype(np.int64, copy=False)
    if counts.size and int(counts.max()) > (2**63 - 1) // counts.size:
        total = sum(int(c) for c in counts)
        if total > 2**63 - 1:
            raise ModelError(f"the rule gives {total} synapses, more than 2^63 - 1", field="n")
    offsets = np.zeros(counts.size + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def _memory_limit(device) -> int | None:
    """Bytes the device can hold at most (None: unknown)."""
    if device.platform == "cpu":
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return None
    stats = getattr(device, "memory_stats", lambda: None)() or {}
    return stats.get("bytes_limit")


def _check_fits(n_syn: int, device, *, extra_int32: int = 0) -> None:
    """Refuses, before allocating, a synapse count whose arrays cannot exist on the device."""
    need = 4 * n_syn * (1 + extra_int32)
    limit = _memory_limit(device)
    if limit is not None and need > limit:
        raise ModelError(
            f"the rule gives {n_syn} synapses: {need / 2**30:.1f} GiB of int32 arrays, more than the "
            f"{limit / 2**30:.1f} GiB of {device}",
            field="p",
        )
    if extra_int32 and n_syn > INT32_MAX:
        raise ModelError(
            f"the rule gives {n_syn} synapses: sources= and by_post= number synapses in int32, which "
            "holds at most 2^31 - 1",
            field="by_post",
        )


def _row_error(name: str, row: int, rule, n_pre: int, n_post: int, self_offset) -> ModelError:
    """The count pass's error code for ``row`` as a message about the rule."""
    if name == "bad_multiplicity":
        return ModelError(
            f"n={rule.n!r} is not a whole number in 0..2^31-1 for a pair of presynaptic neuron i={row} (the "
            "first neuron where it happens)",
            field="n",
        )
    if name == "bad_probability":
        return ModelError(
            f"p={rule.p!r} is outside [0, 1] (or NaN) for a pair of presynaptic neuron i={row} (the first neuron "
            "where it happens); clip it, e.g. 'clip(..., 0, 1)'",
            field="p",
        )
    out = isinstance(rule, FixedOutDegree)
    field = "fixed_out_degree" if out else "fixed_in_degree"
    side, other, population = ("presynaptic", "targets", n_post) if out else ("postsynaptic", "sources", n_pre)
    own = None if self_offset is None else (row + self_offset if out else row - self_offset)
    excluded = not rule.allow_self and own is not None and 0 <= own < population
    detail = f"{population} neurons" + (" less itself" if excluded else "")
    if name == "nothing_to_draw":
        return ModelError(f"{field}={rule.k}: {side} neuron {row} has no {other} to draw from ({detail})", field=field)
    if name == "degree_too_large":
        return ModelError(
            f"{field}={rule.k} without replacement: {side} neuron {row} has only {population - excluded} possible "
            f"{other} ({detail}); draw with replace=True or lower the degree",
            field=field,
        )
    return ModelError(f"the connectivity kernel reported an unknown error for row {row}", field=field)


def _explicit(rule: Explicit, n_pre: int, n_post: int):
    """Checked pairs sorted stably by ``i`` (creation order kept within a row)."""
    i, j = _indices(rule.i, "i"), _indices(rule.j, "j")
    if i.ndim == 0 or j.ndim == 0:  # a scalar pairs with every index of the other side (Brian2)
        i, j = np.broadcast_arrays(np.atleast_1d(i), np.atleast_1d(j))
    if i.shape != j.shape:
        raise ModelError(f"i and j must have the same length, got {i.shape[0]} and {j.shape[0]}", field="j")
    n = _whole(rule.n, "n", lo=0, hi=INT32_MAX)
    valid = (i >= 0) & (i < n_pre) & (j >= 0) & (j < n_post)
    if not valid.all():
        if rule.skip_if_invalid:
            i, j = i[valid], j[valid]
        else:
            k = int(np.flatnonzero(~valid)[0])
            which, value, size = ("i", i[k], n_pre) if not 0 <= i[k] < n_pre else ("j", j[k], n_post)
            raise ModelError(
                f"{which}[{k}] = {value} is out of range: indices must be in 0..{size - 1} (the group has {size} "
                "neurons); pass skip_if_invalid=True to drop such pairs",
                field=which,
            )
    if n != 1:
        i, j = np.repeat(i, n), np.repeat(j, n)
    order = np.argsort(i, kind="stable")
    counts = np.bincount(i, minlength=n_pre) if i.size else np.zeros(n_pre, np.int64)
    offsets = _offsets(counts)
    return offsets, jnp.asarray(j[order].astype(np.int32))


def _indices(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.size == 0 and a.dtype.kind == "f":  # an empty list
        a = a.astype(np.int64)
    if a.dtype.kind not in "iu":
        raise ModelError(f"{name} must hold integers, got dtype {a.dtype}", field=name)
    if a.ndim > 1:
        raise ModelError(f"{name} must be one-dimensional, got shape {a.shape}", field=name)
    if a.dtype.kind == "u" and a.size and int(a.max()) > 2**63 - 1:
        raise ModelError(f"{name} holds indices past 2^63 - 1", field=name)
    return a.astype(np.int64)


# -- layouts: offsets, sources, the by-post index, sorting -----------------------------------


def _row_offsets(offsets: np.ndarray, wide: bool | None) -> jax.Array:
    big = int(offsets[-1]) > INT32_MAX
    if wide is False and big:
        raise ModelError(f"{int(offsets[-1])} synapses need int64 row offsets (wide=False was asked)", field="wide")
    if wide or big:
        return jnp.asarray(offsets.view(np.int32).reshape(-1, 2))
    return jnp.asarray(offsets.astype(np.int32))


def _finish(offsets, targets, n_pre, n_post, *, wide, sources, by_post, n_syn) -> Connectivity:
    conn = Connectivity(
        row_offsets=_row_offsets(offsets, wide), targets=targets, n_pre=n_pre, n_post=n_post, n_synapses=n_syn
    )
    if sources:
        conn = dataclasses.replace(conn, sources=_sources(np.diff(offsets), n_syn))
    return with_by_post(conn) if by_post else conn


def _sources(counts: np.ndarray, n_syn: int) -> jax.Array:
    return jnp.repeat(
        jnp.arange(counts.size, dtype=jnp.int32), jnp.asarray(counts.astype(np.int32)), total_repeat_length=n_syn
    )


def _stable_order(*keys) -> jax.Array:
    """The permutation that sorts by ``keys`` (first key first), ties in index order."""
    iota = jnp.arange(keys[0].shape[0], dtype=jnp.int32)
    return jax.lax.sort((*keys, iota), num_keys=len(keys), is_stable=True)[-1]


def _bincount(x: jax.Array, length: int) -> jax.Array:
    return jnp.zeros((length,), jnp.int32).at[x].add(1, mode="drop")


def _with_zero(counts: jax.Array) -> jax.Array:
    return jnp.concatenate([jnp.zeros((1,), jnp.int32), jnp.cumsum(counts, dtype=jnp.int32)])


def _transposed(entries, k: int, n_pre, n_post, *, wide, sources, by_post) -> Connectivity:
    """A fixed in-degree's draws (``k`` sources per postsynaptic neuron, by post) as CSR by pre:
    stably by source, so within a row by postsynaptic neuron, then in the order drawn."""
    n_syn = k * n_post
    counts = np.bincount(np.asarray(entries), minlength=n_pre).astype(np.int64)
    order = _stable_order(entries)
    conn = Connectivity(
        row_offsets=_row_offsets(_offsets(counts), wide),
        targets=order // max(k, 1),  # entry e belongs to postsynaptic neuron e // k
        n_pre=n_pre,
        n_post=n_post,
        n_synapses=n_syn,
    )
    if sources:
        conn = dataclasses.replace(conn, sources=entries[order])
    return with_by_post(conn) if by_post else conn


def with_by_post(conn: Connectivity) -> Connectivity:
    """``conn`` with the by-post index: ``col_offsets`` ``(n_post + 1,)`` and ``synapses_by_post``
    ``(n_syn,)`` (each postsynaptic neuron's synapses in increasing synapse order), computed on the
    device the targets are on."""
    if conn.n_synapses > INT32_MAX:
        raise ModelError(f"{conn.n_synapses} synapses are too many for int32 synapse ids", field="by_post")
    with jax.default_device(_device_of(conn.targets)):
        order = _stable_order(conn.targets)
        col = _with_zero(_bincount(conn.targets, conn.n_post))
    return dataclasses.replace(conn, col_offsets=col, synapses_by_post=order)


def sort_rows(conn: Connectivity, key) -> tuple[Connectivity, jax.Array]:
    """Sorts each row's synapses by ``key`` (``(n_syn,)``, e.g. the delay in steps), stably (so
    creation order within equal keys). Returns the sorted connectivity and the permutation:
    synapse ``s`` of the result is synapse ``perm[s]`` of ``conn`` (``w[perm]`` reorders a
    per-synapse variable). A by-post index present is rebuilt for the new order. Runs on the
    device the connectivity is on."""
    device = _device_of(conn.targets)
    key = jax.device_put(jnp.asarray(key), device)
    if key.shape != (conn.n_synapses,):
        raise ModelError(
            f"key has shape {key.shape}, expected ({conn.n_synapses},): one value per synapse", field="key"
        )
    if conn.n_synapses > INT32_MAX:
        raise ModelError(f"{conn.n_synapses} synapses are too many for an int32 permutation", field="key")
    with jax.default_device(device):
        counts = np.diff(conn.offsets())
        rows = jnp.repeat(
            jnp.arange(conn.n_pre, dtype=jnp.int32),
            jnp.asarray(counts.astype(np.int32)),
            total_repeat_length=conn.n_synapses,
        )
        perm = _stable_order(rows, key)
        new = dataclasses.replace(
            conn,
            targets=conn.targets[perm],
            sources=None if conn.sources is None else conn.sources[perm],
            col_offsets=None,
            synapses_by_post=None,
        )
    return (with_by_post(new) if conn.synapses_by_post is not None else new), perm


def _device_of(x: jax.Array):
    devices = list(x.devices()) if hasattr(x, "devices") else []
    return devices[0] if devices else jax.devices()[0]
