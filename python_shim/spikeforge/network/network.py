"""``Network``: groups, synapses, inputs and monitors simulated together, Brian2's ``Network``.

::

    net = sf.Network(P, Ce, Ci, spikes=sf.SpikeMonitor(P), v=sf.StateMonitor(P, "v", record=[0, 5]),
                     dt=0.1)
    state = net.init_state(seed=0, P=dict(v=v0))            # a pytree: a dict per object
    state, out = jax.jit(lambda s: net.run(s, duration=1000.0))(state)
    out.spikes.i, out.spikes.t, out.v.v, out.spike_count["P"]

The network is checked by the library when it is made (every mistake a ``ModelError`` naming the
object and the field). ``init_state`` builds the synapses (explicit ``i``/``j`` arrays sorted
here, rules by the library's connectivity kernels) and every buffer the kernels carry from step
to step; ``run`` is one FFI call (``spikeforge_network_run``) that runs every step without a host
round-trip, so it works under ``jax.jit`` and ``jax.vmap``; ``step`` is one step, for a
``lax.scan`` of one's own. Brian2's schedule is followed exactly (docs/NETWORKS.md).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from .. import arguments, connectivity
from ..errors import ModelError
from ..units import to_kernel_units
from . import _abi, gradients, primitive
from . import csr as csr_mod
from .base import describe
from .collect import collect
from .groups import NeuronGroup, PoissonGroup, SpikeGeneratorGroup
from .monitors import RateRecord, SpikeRecord, StateRecord
from .output import NetworkOutput
from .progress import ProgressBar, chunk_steps
from .spec import Variant, network_spec
from .synapses import ExplicitSynapses, GeneratedSynapses
from .table_model import compile_spec

__all__ = ["Network"]

_REAL = ("float32", "float64")

# A network keeps its own int32 step clock (docs/NETWORKS.md): the step of the last spike of a
# neuron that never spiked, far enough in the past for any refractory period the kernels accept.
NEVER_SPIKED_STEP = -(10**9)


def _is_traced(tree) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(tree))


def _delay_steps(delay_ms, dt: float) -> np.ndarray:
    """Brian2's rounding of a delay to steps, ``int(d/dt + 0.5)``, in float64 ms."""
    return np.floor(np.asarray(delay_ms, dtype=np.float64) / dt + 0.5).astype(np.int64)


class Network:
    """A network of groups, synapses, inputs and monitors with one time step ``dt`` (ms or a
    time quantity).

    Objects are given positionally (lists of them too); groups used only by a synapse, an input
    or a monitor are added with it. Monitors given as keywords (``spikes=sf.SpikeMonitor(P)``)
    come back under that keyword (``out.spikes``); monitors given positionally under their own
    name. ``deterministic=True`` makes GPU runs bit-identical from run to run (ordered
    accumulation instead of float atomics; the CPU always is).

    ``strategy`` says how a GPU runs the steps (docs/NETWORKS.md, "Launches and limits"):
    ``"per_step"`` (two or three kernel launches a step), ``"block"`` (one persistent kernel for
    the whole run, one block per network), ``"grid"`` (one persistent kernel as a cooperative
    grid; an error where the device cannot hold it), ``"cluster"`` (the one-barrier kernel as one
    thread-block cluster per network, its accumulators in distributed shared memory; compute
    capability 9.0 and a network of at most 16 blocks' register slots, else an error), or
    ``"auto"`` (one block for small networks, a grid where the device holds one, else per step).
    Every path gives the same spikes. After a run, :attr:`last_strategy` says which path it took."""

    MAX_DELAY_STEPS = 65535
    """The longest delay, in steps, that a spike queue holds (a longer one is an error)."""
    MAX_PER_SYNAPSE_DELAY_STEPS = 4095
    """The longest per-synapse delay, in steps (their delay buckets take ``n_pre`` entries a step)."""

    STRATEGIES = ("auto", "per_step", "block", "grid", "cluster")
    """The values of ``strategy``."""

    def __init__(self, *objects, dt=0.1, deterministic: bool = False, strategy: str = "auto", **named_monitors):
        self.dt = arguments.time_step(dt)
        self.deterministic = bool(deterministic)
        if not isinstance(strategy, str):
            raise ModelError(
                f"strategy must be one of {', '.join(map(repr, self.STRATEGIES))}, got {strategy!r}", field="strategy"
            )
        self.strategy = strategy
        self._last_key = None
        self.members = collect(objects, named_monitors)
        for p in self.members.inputs:
            p.check_dt(self.dt)
        for g in self.members.groups:
            if isinstance(g, PoissonGroup):
                g.check_dt(self.dt)
        self._spikes = {
            g.name: g.spike_steps(self.dt) for g in self.members.groups if isinstance(g, SpikeGeneratorGroup)
        }
        for s in self.members.synapses:
            for pathway, delay in s.delays().items():
                if isinstance(delay, str):
                    continue
                d = int(_delay_steps(delay, self.dt))
                if d > self.MAX_DELAY_STEPS:
                    field = f"delay[{pathway!r}]" if isinstance(s.delay, dict) else "delay"
                    raise s.error(
                        f"{field} {delay} ms is {d} steps of dt = {self.dt} ms: longer than the spike queue holds "
                        f"({self.MAX_DELAY_STEPS} steps)",
                        field=field,
                    )
        self._compiled: dict = {}
        self._chunk_fns: dict = {}
        # Compiled once now, so that every mistake is reported where the network is made.
        self._definition = self._compile(self._default_variant("float32", steps=1))

    # -- what the network holds ------------------------------------------------------------------

    @property
    def last_strategy(self) -> str | None:
        """The path the last run of this network took: ``"per_step"``, ``"block"`` or ``"grid"``
        on a GPU, ``"cpu"`` on the CPU; None before a run has executed. (Recorded per compiled
        network by the library when the run executes: a network with an identical definition
        shares the record.)"""
        if self._last_key is None:
            return None
        return _abi.network_last_path(self._last_key)

    @property
    def last_path_detail(self) -> str | None:
        """How the last GPU run of this network ran its path, e.g. ``"grid: 313 blocks of 128
        threads, flat barrier, 4 register slots"`` (the grid's barrier: ``SPIKEFORGE_GRID_BARRIER``;
        its blocks: ``SPIKEFORGE_GRID_BLOCKS``; ``", balanced deliveries"`` at the end where
        ``SPIKEFORGE_GRID_DELIVERY=balanced`` chose them); None before one."""
        if self._last_key is None:
            return None
        return _abi.network_last_path_detail(self._last_key)

    @property
    def groups(self) -> tuple:
        return tuple(self.members.groups)

    @property
    def synapses(self) -> tuple:
        return tuple(self.members.synapses)

    @property
    def monitors(self) -> dict:
        return dict(self.members.monitors)

    def __repr__(self):
        names = [o.name for o in (*self.members.groups, *self.members.synapses, *self.members.inputs)]
        return f"Network({', '.join(names)}; monitors {tuple(self.members.monitors)}; dt={self.dt} ms)"

    # -- compiled variants -------------------------------------------------------------------------

    def _default_variant(self, dtype: str, *, steps: int, per_neuron=(), max_delay=()) -> Variant:
        capacity = tuple((k, m.capacity_for(steps, self.dt)) for k, m in self.members.spike_monitors.items())
        if not max_delay:
            max_delay = tuple((s.name, 0.0) for s in self.members.synapses if self._per_synapse_delay(s) is not None)
        return Variant(dtype=dtype, per_neuron=tuple(per_neuron), max_delay=tuple(max_delay), capacity=capacity)

    @staticmethod
    def _per_synapse_delay(s):
        return s.delay_variable()

    def _compile(self, variant: Variant) -> dict:
        if variant not in self._compiled:
            spec = network_spec(
                self.members, dt=self.dt, deterministic=self.deterministic, variant=variant, strategy=self.strategy
            )
            self._compiled[variant] = compile_spec(spec)
        return self._compiled[variant]

    def _layout(self, answer: dict, dtype: str, every: dict | None = None):
        from .layout import NetworkLayout

        if every is None:
            every = {k: m.every for k, m in self.members.state_monitors.items()}
        return NetworkLayout(answer["layout"], dtype, every)

    def source(self, target: str = "cuda", *, dtype="float32") -> str:
        """The generated kernels of the network (``"cuda"`` or ``"c"``), for reading."""
        spec = network_spec(
            self.members,
            dt=self.dt,
            deterministic=self.deterministic,
            variant=self._default_variant(jnp.dtype(dtype).name, steps=1),
        )
        out = _abi.network_source(json.dumps(spec), target)
        if not out.get("ok"):
            raise ModelError.from_native(out["error"])
        return out["source"]

    # -- the state -------------------------------------------------------------------------------

    def init_state(self, seed: int = 0, dtype=jnp.float32, **initial_values) -> dict:
        """The state of the network: a dict with the step counter ``t_step``, the seed
        ``rng_seed`` where something draws random numbers, and one dict per object (group,
        projection, TimedArray) holding its buffers.

        ``initial_values``: per object, a dict of values: ``P=dict(v=array_or_number, ...)`` for
        a group (state variables, parameters, and constants given per neuron), ``S=dict(w=...,
        d=...)`` for a projection (one value, or one per synapse in creation order: the order of
        the ``connect`` calls, and within one the order of its ``i``/``j`` or of the rule's
        draws; or a function of the number of synapses returning one per synapse, for values
        drawn for synapses built by a rule, whose number is known only here). Numbers may be
        quantities. Connectivity is built here (outside ``jit``: its size becomes a shape), from
        ``seed`` unless a ``connect`` call gave its own."""
        dtype = jnp.dtype(dtype).name
        if dtype not in _REAL:
            raise TypeError(f"init_state: dtype must be float32 or float64, got {dtype}")
        if dtype == "float64" and not jax.config.jax_enable_x64:
            raise TypeError(
                "init_state: dtype float64 needs 64-bit JAX: jax.config.update('jax_enable_x64', True) first"
            )
        if isinstance(seed, jax.core.Tracer):
            raise ModelError(
                "init_state: seed is a traced value: the connectivity is built here, outside jit", field="seed"
            )
        seed = arguments.count(seed, "init_state: seed", minimum=0)
        if seed >= 2**31:
            raise ModelError("init_state: seed must fit in int32 (< 2**31)", field="seed")
        by_name = self.members.by_name()
        for name, values in initial_values.items():
            if name not in by_name or by_name[name] in self.members.monitors.values():
                raise ModelError(
                    f"init_state: the network has no group or synapses called {name!r} (it has "
                    f"{', '.join(o.name for o in (*self.members.groups, *self.members.synapses))})",
                    field=name,
                )
            if not isinstance(values, Mapping):
                raise ModelError(
                    f"init_state: {name}= must be a dict of initial values (variable -> value), got "
                    f"{type(values).__name__}",
                    field=name,
                )
        per_neuron = []
        for g in self.members.groups:
            if isinstance(g, NeuronGroup):
                given = initial_values.get(g.name, {})
                consts = tuple(sorted(k for k in given if k in g.model.constants))
                if consts:
                    per_neuron.append((g.name, consts))
        synapses = {}
        max_delay = []
        generated = any(isinstance(c, GeneratedSynapses) for s in self.members.synapses for c in s.connections)
        group_values = self._group_values(initial_values) if generated else {}
        for index, s in enumerate(self.members.synapses):
            built = self._build_synapses(index, s, seed, initial_values.get(s.name, {}), group_values)
            synapses[s.name] = built
            if built["delay_var"] is not None:
                max_delay.append((s.name, built["max_steps"] * self.dt))
        variant = self._default_variant(dtype, steps=1, per_neuron=per_neuron, max_delay=max_delay)
        answer = self._compile(variant)
        layout = self._layout(answer, dtype)
        return self._fill_state(layout, seed, dtype, initial_values, synapses)

    def _group_values(self, initial_values: Mapping) -> dict:
        """Each neuron group's initial variables as float64 numpy arrays (what connect rules read)."""
        out = {}
        for g in self.members.groups:
            if not isinstance(g, NeuronGroup):
                continue
            given = initial_values.get(g.name, {})
            values = {}
            for name in tuple(g.model.state_variables) + tuple(g.model.parameters):
                where = f"init_state: {g.name}[{name!r}]"
                value = to_kernel_units(given.get(name, self._default_value(g, name)), where)
                values[name] = np.broadcast_to(np.asarray(value, dtype=np.float64), (g.n,))
            out[g.name] = values
        return out

    def _build_synapses(self, index: int, s, seed: int, values: Mapping, group_values: Mapping) -> dict:
        """The projection's CSR (row offsets, targets), the per-synapse values in stored order,
        and its delay buckets when its delays are per synapse."""
        parts = []
        for k, conn in enumerate(s.connections):
            if isinstance(conn, ExplicitSynapses):
                parts.append((conn.i.astype(np.int64), conn.j.astype(np.int64)))
                continue
            pre = {n: v[s.source.start : s.source.stop] for n, v in group_values.get(s.source.root.name, {}).items()}
            post = {n: v[s.target.start : s.target.stop] for n, v in group_values.get(s.target.root.name, {}).items()}
            same = s.source.root is s.target.root
            try:
                built = connectivity.build(
                    conn.rule,
                    s.source.n,
                    s.target.n,
                    seed=seed if conn.seed is None else conn.seed,
                    stream=(index << 16) + k,
                    pre_values=pre,
                    post_values=post,
                    constants=s.constants,
                    self_offset=s.source.start - s.target.start if same else None,
                )
            except ModelError as err:
                raise s.error(f"connect call {k + 1}: {err}", field=err.field or "connect") from None
            if built.wide:
                raise s.error(f"{built.n_synapses} synapses: more than 2^31 - 1 in one projection", field="connect")
            parts.append(built)
        delay_var = self._per_synapse_delay(s)
        table = None
        plastic = s.on_post is not None or s.has_dynamics()
        if len(parts) == 1 and not isinstance(parts[0], tuple) and delay_var is None and not plastic:
            # One rule: its CSR as built, on the device (creation order is its order).
            row_offsets, targets, n_syn = parts[0].row_offsets, parts[0].targets, parts[0].n_synapses
        else:
            pairs = [p if isinstance(p, tuple) else tuple(np.asarray(x, np.int64) for x in p.pairs()) for p in parts]
            i = np.concatenate([p[0] for p in pairs]) if pairs else np.zeros(0, np.int64)
            j = np.concatenate([p[1] for p in pairs]) if pairs else np.zeros(0, np.int64)
            n_syn = int(i.size)
            table = i, j
        converted = {}
        for var, value in values.items():
            if callable(value):  # drawn once the number of synapses is known
                value = value(n_syn)
            x = np.asarray(to_kernel_units(value, f"init_state: {s.name}[{var!r}]"))
            if x.ndim > 1 or (x.ndim == 1 and x.shape[0] != n_syn):
                raise s.error(
                    f"init_state: {var!r} has shape {x.shape}, but the projection has {n_syn} synapses "
                    "(give one value, or one per synapse in creation order)",
                    field=var,
                )
            converted[var] = x
        steps = None
        max_steps = 0
        if delay_var is not None:
            d = np.broadcast_to(np.asarray(converted.get(delay_var, 0.0), dtype=np.float64), (n_syn,))
            if not np.isfinite(d).all():
                raise s.error(f"init_state: the delays {delay_var!r} must be finite", field=delay_var)
            if (d < 0).any():
                k = int(np.nonzero(d < 0)[0][0])
                raise s.error(f"init_state: synapse {k} has a negative delay {d[k]} ms", field=delay_var)
            steps = _delay_steps(d, self.dt)
            max_steps = int(steps.max()) if n_syn else 0
            if max_steps > self.MAX_PER_SYNAPSE_DELAY_STEPS:
                k = int(np.argmax(steps))
                raise s.error(
                    f"init_state: synapse {k}'s delay {d[k]} ms is {max_steps} steps of dt = {self.dt} ms: longer "
                    f"than per-synapse delays may be ({self.MAX_PER_SYNAPSE_DELAY_STEPS} steps)",
                    field=delay_var,
                )
        stored = converted
        buckets = None
        by_post = None
        if table is not None:
            csr = csr_mod.from_pairs(*table, s.source.n, steps)
            row_offsets, targets = csr.row_offsets, csr.targets
            stored = {var: (x if x.ndim == 0 else csr.permute(x)) for var, x in converted.items()}
            if steps is not None:
                buckets = csr_mod.delay_buckets(csr, steps[csr.order], max_steps)
            if plastic:
                by_post = csr_mod.by_post(csr, s.target.n)
        return dict(
            row_offsets=row_offsets,
            targets=targets,
            n_syn=n_syn,
            values=stored,
            delay_var=delay_var,
            max_steps=max_steps,
            buckets=buckets,
            by_post=by_post,
        )

    def _fill_state(self, layout, seed: int, dtype: str, initial_values: Mapping, synapses: dict) -> dict:
        state: dict = {}
        by_name = self.members.by_name()
        used = {name: set() for name in initial_values}
        for a in layout.inputs:
            owner, name, role = a["owner"], a["name"], a["role"]
            want = layout.dtype(a)
            if not owner:
                state[name] = jnp.asarray(0 if role == "start_step" else seed, want)
                continue
            obj = by_name[owner]
            given = initial_values.get(owner, {})
            box = state.setdefault(owner, {})
            shape = layout.shape(a, steps=1, n_syn={k: v["n_syn"] for k, v in synapses.items()})
            if role in ("state", "param", "per_neuron_constant"):
                used.setdefault(owner, set()).add(name)
                value = given[name] if name in given else self._default_value(obj, name)
                box[name] = self._array(obj, name, value, shape, want)
            elif role == "lastspike_step":
                box[name] = jnp.full(shape, NEVER_SPIKED_STEP, want)
            elif role == "not_refractory":
                box[name] = jnp.ones(shape, want)
            elif role == "rates":
                box[name] = self._array(obj, "rates", obj.rates, shape, want)
            elif role in ("spike_indices", "spike_steps"):
                steps, idx, _ = self._spikes[owner]
                box[name] = jnp.asarray(idx if role == "spike_indices" else steps, want)
            elif role == "spike_cursor":
                box[name] = jnp.zeros(shape, want)
            elif role in ("spike_queue", "spike_queue_counts"):
                box[name] = jnp.zeros(shape, want)
            elif role == "row_offsets":
                box[name] = jnp.asarray(synapses[owner]["row_offsets"], want)
            elif role == "targets":
                box[name] = jnp.asarray(synapses[owner]["targets"], want)
            elif role == "delay_buckets":
                box[name] = jnp.asarray(synapses[owner]["buckets"], want)
            elif role in ("post_offsets", "post_synapses", "sources"):
                box[name] = jnp.asarray(synapses[owner]["by_post"][role], want)
            elif role in ("synapse_param", "shared_param"):
                used.setdefault(owner, set()).add(name)
                stored = synapses[owner]["values"]
                value = stored[name] if name in stored else obj.constants.get(name, 0.0)
                box[name] = self._array(obj, name, value, shape, want)
            elif role == "timed_array":
                box[name] = jnp.asarray(obj.values, want)
            else:  # pragma: no cover - a role this shim does not know: a library/shim mismatch
                raise RuntimeError(f"init_state: the layout has a buffer of unknown role {role!r} ({owner}.{name})")
        for owner, names in initial_values.items():
            unknown = sorted(set(names) - used.get(owner, set()))
            if unknown:
                obj = by_name[owner]
                known = sorted(used.get(owner, set()))
                raise obj.error(
                    f"init_state: no variable {', '.join(map(repr, unknown))} "
                    f"(its variables: {', '.join(known) or 'none'})",
                    field=unknown[0],
                )
        return state

    @staticmethod
    def _default_value(obj, name: str):
        if isinstance(obj, NeuronGroup):
            model = obj.model
            return model.definition.initial.get(name, model.constants.get(name, 0.0))
        return 0.0

    @staticmethod
    def _array(obj, name: str, value, shape: tuple, dtype) -> jax.Array:
        value = to_kernel_units(value, f"init_state: {obj.name}[{name!r}]")
        if isinstance(value, str):
            raise obj.error(
                f"init_state: {name!r} is the string {value!r}: give a number or an array "
                "(expressions are not evaluated here)",
                field=name,
            )
        x = jnp.asarray(value, dtype)
        if x.ndim == 0:
            return jnp.full(shape, x, dtype)
        if x.shape != shape:
            raise obj.error(
                f"init_state: {name!r} has shape {x.shape}, but it needs one value or shape {shape}", field=name
            )
        return x

    # -- batches (jax.vmap) ----------------------------------------------------------------------

    CONNECTIVITY = ("row_offsets", "targets", "delay_buckets", "post_offsets", "post_synapses", "sources")
    """A projection's entries that the members of a batch share."""

    def batch_axes(self, state: Mapping) -> dict:
        """``in_axes`` (and ``out_axes``) for ``jax.vmap`` over states of this network whose
        members share their connectivity (as :meth:`stack` makes them): 0 for every entry, None
        for the projections' connectivity, so that it is passed once, not once per member."""
        projections = {s.name for s in self.members.synapses}
        axes = {}
        for key, value in state.items():
            if isinstance(value, Mapping):
                shared = key in projections
                axes[key] = {k: (None if shared and k in self.CONNECTIVITY else 0) for k in value}
            else:
                axes[key] = 0
        return axes

    def stack(self, states) -> dict:
        """Member states (from :meth:`init_state`, one per member of a parameter sweep) as one
        batched state: every entry stacked on a new leading axis, except the connectivity, which
        must be the same in every member and is kept once (see :meth:`batch_axes`)."""
        states = list(states)
        if not states:
            raise ValueError("stack: give at least one state")
        first = states[0]
        axes = self.batch_axes(first)
        out = {}
        for key, axis in axes.items():
            if isinstance(axis, dict):
                out[key] = {}
                for k, a in axis.items():
                    values = [s[key][k] for s in states]
                    if a is None:
                        for m, v in enumerate(values[1:], 1):
                            if np.shape(v) != np.shape(values[0]) or not np.array_equal(v, values[0]):
                                raise ValueError(
                                    f"stack: member {m} has other connectivity than member 0 ({key}.{k}); members "
                                    "with their own synapses are stacked with jnp.stack and run one call each"
                                )
                        out[key][k] = values[0]
                    else:
                        out[key][k] = jnp.stack(values)
            else:
                out[key] = jnp.stack([s[key] for s in states])
        return out

    # -- running ---------------------------------------------------------------------------------

    def _variant_of(self, state: Mapping, steps: int) -> tuple[Variant, str]:
        """The compiled variant that ``state`` needs for a run of ``steps`` steps."""
        dtype = None
        per_neuron = []
        max_delay = []
        for g in self.members.groups:
            if not isinstance(g, NeuronGroup):
                continue
            box = state.get(g.name)
            if not isinstance(box, Mapping):
                raise KeyError(f"the state is missing {g.name!r} (build it with net.init_state)")
            name = (g.model.state_variables + g.model.parameters)[0]
            if name in box and dtype is None:
                dtype = jnp.dtype(box[name].dtype).name
            consts = tuple(sorted(k for k in box if k in g.model.constants))
            if consts:
                per_neuron.append((g.name, consts))
        for s in self.members.synapses:
            if self._per_synapse_delay(s) is not None:
                buckets = state.get(s.name, {}).get("delay_buckets")
                if buckets is None:
                    raise KeyError(f"the state is missing {s.name!r}'s 'delay_buckets' (build it with net.init_state)")
                depth = (int(np.shape(buckets)[0]) - 1) // max(1, s.source.n)
                max_delay.append((s.name, (depth - 1) * self.dt))
        if dtype is None:
            dtype = "float32"
            for leaf in jax.tree_util.tree_leaves(state):
                if jnp.dtype(leaf.dtype).name in _REAL:
                    dtype = jnp.dtype(leaf.dtype).name
                    break
        if dtype not in _REAL:
            raise TypeError(f"the state holds {dtype} values: a network runs in float32 or float64")
        return self._default_variant(dtype, steps=steps, per_neuron=per_neuron, max_delay=max_delay), dtype

    def _steps(self, duration, steps) -> int:
        if (steps is None) == (duration is None):
            raise ModelError("run: give either duration= or steps=", field="duration")
        if steps is None:
            steps = arguments.steps_for(arguments.duration(duration, "duration", allow_zero=False), self.dt)
        steps = arguments.count(steps, "steps")
        if steps >= 2**31:
            raise ModelError(f"steps={steps} is more than the step counter (int32) can count", field="steps")
        return steps

    def _call(
        self, state: Mapping, steps: int, variant: Variant, dtype: str, answer=None, every=None, checkpoint_every=0
    ):
        """One FFI call of ``steps`` steps: (new state, raw outputs by (owner, name)). ``answer``
        and ``every``: another compiled spec of the network and its state monitors' ``every``
        (the gradients' recording runs). ``checkpoint_every`` > 0: the raw outputs also hold
        the state at the start of every segment of that many steps, under ``(owner, name,
        "checkpoints")`` (``[segments, ...]``, src/handlers/network_checkpoints.rs)."""
        if answer is None:
            answer = self._compile(variant)
            self._last_key = answer["key"]
        layout = self._layout(answer, dtype, every)
        n_syn = layout.synapse_counts(state)
        operands = layout.operands(state, steps=steps)
        stored = layout.checkpointed() if checkpoint_every else []
        segments = -(-steps // checkpoint_every) if checkpoint_every else 0
        results = primitive.bind(
            operands,
            outs=layout.result_structs(steps=steps, n_syn=n_syn) + layout.checkpoint_structs(stored, segments),
            spec=answer["spec"],
            key=answer["key"],
            steps=steps,
            scratch=[
                (tuple(layout.shape(a, steps=0, n_syn={})), str(layout.dtype(a)), a["batched"]) for a in layout.scratch
            ],
            unbatched=layout.unbatched_inputs(),
            batched_outs=[a["batched"] for a in layout.outputs] + [True] * len(stored),
            checkpoint_every=checkpoint_every,
        )
        new_state, raw = layout.unpack(state, results[: len(layout.outputs)], steps=steps)
        for a, r in zip(stored, results[len(layout.outputs) :]):
            raw[(a["owner"], a["name"], "checkpoints")] = r.reshape(r.shape[1:])
        return new_state, raw

    def _records(self, raw: dict, start_step, steps: int, dtype: str) -> NetworkOutput:
        time_dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
        records = {}
        for key, m in self.members.monitors.items():
            if key in self.members.spike_monitors:
                i = raw[(key, "i")]
                step = raw[(key, "t_step")]
                count = raw[(key, "count")]
                valid = jnp.arange(i.shape[0]) < count
                t = jnp.where(valid, step.astype(time_dtype) * self.dt, jnp.nan)
                records[key] = SpikeRecord(i=jnp.where(valid, i, -1), t=t, count=count, dropped=raw[(key, "dropped")])
            elif key in self.members.state_monitors:
                values = {v: raw[(key, v)] for v in m.variables}
                n_rows = next(iter(values.values())).shape[0]
                t = (start_step + jnp.arange(n_rows, dtype=jnp.int32) * m.every).astype(time_dtype) * self.dt
                records[key] = StateRecord(values=values, t=t, indices=jnp.asarray(m.record))
            else:
                rate = raw[(key, "rate")]
                t = (start_step + jnp.arange(steps, dtype=jnp.int32)).astype(time_dtype) * self.dt
                records[key] = RateRecord(rate=rate, t=t)
        counts = {g.name: raw[(g.name, "spike_count")] for g in self.members.groups}
        return NetworkOutput(records, counts)

    def _warn_dropped(self, out: NetworkOutput):
        for key, mon in self.members.spike_monitors.items():
            rec = out.records[key]

            def report(dropped, count, key=key, mon=mon):
                dropped, count = np.asarray(dropped), np.asarray(count)
                if (dropped > 0).any():
                    warnings.warn(
                        f"{describe(mon)} ({key!r}): {int(dropped.sum())} spikes were not recorded, its buffer holds "
                        f"{int(count.max())}; give it a larger capacity (SpikeMonitor(..., capacity=...))",
                        RuntimeWarning,
                        stacklevel=2,
                    )

            jax.debug.callback(report, rec.dropped, rec.count)

    def run(
        self,
        state: Mapping,
        duration=None,
        *,
        steps: int | None = None,
        progress: bool | None = None,
        checkpoint_every: int | None = None,
    ):
        """Advances ``state`` by ``duration`` (ms or a time quantity; counted in steps as Brian2
        counts them) or ``steps`` steps. Returns ``(new_state, out)``: ``out.<monitor>`` for each
        monitor, ``out.spike_count[group]`` the spikes of each neuron during the run.

        Under ``jax.jit`` (or ``vmap``) the run is one call. Called from Python, a run shows a
        progress bar (``progress=False`` to hide it): it is then cut into equal chunks, each one
        call of the same compiled program, with the same result. A SpikeMonitor whose buffer
        overflowed warns (through ``jax.debug.callback``) with the number of spikes lost.

        ``jax.grad`` / ``jax.vjp`` differentiate a run (``spikeforge.network.gradients``: static
        synapses, groups with a surrogate threshold, on the CPU); ``checkpoint_every``: steps
        between the checkpoints its backward pass recomputes from (default about
        ``sqrt(steps)``)."""
        steps = self._steps(duration, steps)
        if not isinstance(state, Mapping):
            raise TypeError(f"run: state must be the dict net.init_state returned, got {type(state).__name__}")
        traced = _is_traced(state)
        if progress is None:
            progress = not traced
        variant, dtype = self._variant_of(state, steps)
        if traced:
            return gradients.differentiable_run(
                self, dict(state), steps=steps, variant=variant, dtype=dtype, checkpoint_every=checkpoint_every
            )
        if not progress:
            new_state, out = self._chunk_function(variant, dtype, steps)(state)
            self._warn_dropped_now(out)
        else:
            new_state, out = self._run_chunked(state, steps, variant, dtype)
        # As under jax.jit: the counts of groups with a surrogate are real (they carry gradients).
        return new_state, gradients.realify_counts(self, out, jnp.dtype(dtype))

    def _run_chunk(self, state, steps: int, variant: Variant, dtype: str, warn: bool = True):
        start = jnp.asarray(state["t_step"])
        new_state, raw = self._call(state, steps, variant, dtype)
        out = self._records(raw, start, steps, dtype)
        if warn:
            self._warn_dropped(out)
        return new_state, out

    def _run_chunked(self, state, steps: int, variant: Variant, dtype: str):
        every = [m.every for m in self.members.state_monitors.values()]
        multiple = int(np.lcm.reduce(every)) if every else 1
        chunks = chunk_steps(steps, multiple)
        bar = ProgressBar(steps * self.dt)
        outs = []
        try:
            for n in chunks:
                state, out = self._chunk_function(variant, dtype, n)(state)
                outs.append(out)
                jax.block_until_ready(state["t_step"])
                bar.update(n * self.dt)
        finally:
            bar.close()
        out = outs[0] if len(outs) == 1 else self._join(outs, variant)
        self._warn_dropped_now(out)
        return state, out

    def _chunk_function(self, variant: Variant, dtype: str, steps: int):
        """The run of ``steps`` steps as one jitted call (one per variant and length, kept:
        chunks and later runs reuse it). The jitted function returns only the state that the
        call writes; what it only reads (connectivity, weights that nothing changes: most of a
        large network's bytes) is put back from the given state outside ``jit``, since every
        output of an XLA program is a buffer of its own (returned from ``jit``, the synapses
        would be copied by every run, doubling the peak device memory)."""
        key = (variant, dtype, steps)
        if key not in self._chunk_fns:

            def chunk(s):
                new_state, out = self._run_chunk(s, steps, variant, dtype, warn=False)
                return _written(s, new_state), out

            self._chunk_fns[key] = jax.jit(chunk)
        run = self._chunk_fns[key]

        def call(state):
            written, out = run(state)
            return _with_unwritten(state, written), out

        return call

    def _warn_dropped_now(self, out: NetworkOutput):
        for key, mon in self.members.spike_monitors.items():
            rec = out.records[key]
            if int(rec.dropped) > 0:
                warnings.warn(
                    f"{describe(mon)} ({key!r}): {int(rec.dropped)} spikes were not recorded, its buffer holds "
                    f"{int(rec.count)}; give it a larger capacity (SpikeMonitor(..., capacity=...))",
                    RuntimeWarning,
                    stacklevel=3,
                )

    def _join(self, outs: list, variant: Variant) -> NetworkOutput:
        """The records of consecutive chunks as those of one run."""
        capacity = dict(variant.capacity)
        records = {}
        for key in outs[0].records:
            parts = [o.records[key] for o in outs]
            if isinstance(parts[0], SpikeRecord):
                records[key] = _join_spikes(parts, capacity[key])
            elif isinstance(parts[0], StateRecord):
                values = {v: jnp.concatenate([p.values[v] for p in parts]) for v in parts[0].values}
                records[key] = StateRecord(
                    values=values, t=jnp.concatenate([p.t for p in parts]), indices=parts[0].indices
                )
            else:
                records[key] = RateRecord(
                    rate=jnp.concatenate([p.rate for p in parts]), t=jnp.concatenate([p.t for p in parts])
                )
        counts = {g: sum(o.spike_count[g] for o in outs) for g in outs[0].spike_count}
        return NetworkOutput(records, counts)

    def step(self, state: Mapping):
        """One step: ``(new_state, out)``, for a ``lax.scan`` of one's own (JAX code between
        steps). ``out.spike_count[group]`` is then each neuron's spike (0 or 1) of this step."""
        variant, dtype = self._variant_of(state, 1)
        return self._run_chunk(state, 1, variant, dtype)


def _written(old, new):
    """``new`` (a state, under ``jit``) with ``None`` for each leaf that is ``old``'s leaf at the
    same place: passed through by the call, not written."""
    if isinstance(new, Mapping):
        return {k: _written(old.get(k) if isinstance(old, Mapping) else None, v) for k, v in new.items()}
    return None if new is old else new


def _with_unwritten(old, written):
    """The new state: ``written`` with each ``None`` (see :func:`_written`) taken from ``old``."""
    if isinstance(written, Mapping):
        return {k: _with_unwritten(old.get(k) if isinstance(old, Mapping) else None, v) for k, v in written.items()}
    if written is None and old is not None:
        return old if isinstance(old, jax.Array) else jnp.asarray(old)
    return written


def _join_spikes(parts: list, capacity: int) -> SpikeRecord:
    """Spike records of consecutive chunks in one buffer of the run's capacity (what one call
    would have kept: the first ``capacity`` spikes; the others counted as dropped)."""
    i_out = jnp.full((capacity,), -1, jnp.int32)
    t_out = jnp.full((capacity,), jnp.nan, parts[0].t.dtype)
    offset = jnp.zeros((), jnp.int32)
    dropped = jnp.zeros((), jnp.int32)
    for p in parts:
        slots = offset + jnp.arange(p.i.shape[0], dtype=jnp.int32)
        keep = (jnp.arange(p.i.shape[0]) < p.count) & (slots < capacity)
        where = jnp.where(keep, slots, capacity)
        i_out = i_out.at[where].set(p.i, mode="drop")
        t_out = t_out.at[where].set(p.t, mode="drop")
        kept = jnp.minimum(p.count, jnp.maximum(capacity - offset, 0))
        dropped = dropped + p.dropped + (p.count - kept)
        offset = offset + kept
    return SpikeRecord(i=i_out, t=t_out, count=offset, dropped=dropped)
