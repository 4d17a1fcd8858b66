"""Custom kernels from source: CUDA C (compiled by NVRTC) and an optional C twin (compiled by the
system C compiler), launched from Rust through the ``spikeforge_custom_call`` XLA FFI target.

The shapes of brainevent's ``numba_cuda_kernel`` / ``numba_cuda_callable``, without Numba and
without Python at launch time: a call is described once per input shape as a *plan* (source,
buffers, launches), sent to the handler as a string attribute, and the handler does the rest.

Conventions (the one contract between your source and spikeforge):

* **CUDA.** Each kernel is ``extern "C" __global__`` and takes one pointer per buffer, in the
  order of the call: inputs, then outputs (for :func:`cuda_callable`, the order of the step's
  ``args``). With ``sizes=True`` it also takes, after the pointers, one ``long long`` element
  count per pointer, in the same order. Arrays are C-contiguous (row-major).
* **C twin.** For each kernel a C function ``void name(void **args, const int64_t *sizes)``:
  ``args[k]`` is the k-th buffer of the launch, ``sizes[k]`` its element count. It does the work
  of the whole launch (it loops over the elements itself). ``<stdint.h>``, ``<stddef.h>``,
  ``<stdbool.h>`` and ``<math.h>`` are included for you.
* **In place.** ``input_output_aliases={input: output}`` (indices or names) makes an output share
  its input's buffer: the kernel receives the same pointer twice and must be correct when it
  reads and writes the same memory (an element-wise update is). In a ``lax.fori_loop`` /
  ``lax.scan`` that carries the array this saves XLA a copy per iteration. Outside a donated
  argument XLA copies the input first, so the caller's array never changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import _native
from .errors import KernelError
from .ffi_primitive import FfiCall, ffi_primitive, fold_batch, folded_shape

__all__ = [
    "CustomKernel",
    "KernelError",
    "Launch",
    "compile_cuda",
    "cuda_callable",
    "cuda_kernel",
    "custom_call_p",
    "kernel_generator",
    "launch_config",
]

#: No CUDA device lets a block use more dynamic shared memory than this (227 KiB, Hopper and
#: Blackwell); the handler checks the actual device's limit at launch.
MAX_SHARED_MEM = 227 * 1024
_MAX_THREADS = 1024
_VMAP_METHODS = (None, "sequential", "broadcast_all")
_AUTO_BLOCK = {2: (16, 16), 3: (8, 8, 8)}


# -- launch configuration --------------------------------------------------------------------


def _dims(value, what: str) -> tuple[int, ...]:
    dims = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if not 1 <= len(dims) <= 3:
        raise ValueError(f"{what} must have 1 to 3 dimensions, got {value!r}")
    out = []
    for d in dims:
        if not isinstance(d, (int, np.integer)) or isinstance(d, bool):
            raise TypeError(f"{what} must be integers, got {value!r}")
        if d < 1:
            raise ValueError(f"{what}={value!r}: every dimension must be >= 1 (zero threads is not a launch)")
        out.append(int(d))
    return tuple(out)


def _pad3(dims: tuple[int, ...]) -> list[int]:
    return list(dims) + [1] * (3 - len(dims))


def launch_config(launch_dims, threads_per_block: int = 256) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(grid, block)`` covering ``launch_dims`` threads: block ``(threads_per_block,)`` in 1-D,
    ``(16, 16)`` in 2-D, ``(8, 8, 8)`` in 3-D (each capped by the extent), grid rounded up."""
    dims = _dims(launch_dims, "launch_dims")
    if len(dims) == 1:
        tpb = _dims(threads_per_block, "threads_per_block")
        if len(tpb) != 1:
            raise ValueError(f"threads_per_block must be one integer, got {threads_per_block!r}")
        caps = tpb
    else:
        caps = _AUTO_BLOCK[len(dims)]
    block = tuple(min(c, d) for c, d in zip(caps, dims))
    grid = tuple(-(-d // b) for d, b in zip(dims, block))
    return grid, block


@dataclasses.dataclass(frozen=True)
class Launch:
    """One launch of a :func:`cuda_callable`: ``kernel`` (the CUDA name) on the buffers named in
    ``args`` (inputs, outputs or temps, in the order of the kernel's parameters), with either
    ``grid`` and ``block`` or ``launch_dims`` (and ``threads_per_block``). ``c_kernel`` names
    the C twin when it is not called like the CUDA kernel."""

    kernel: str
    args: Sequence[str]
    grid: object = None
    block: object = None
    launch_dims: object = None
    threads_per_block: int = 256
    shared_mem: int = 0
    c_kernel: str | None = None

    def __post_init__(self):
        if isinstance(self.args, str):
            raise TypeError(f"Launch({self.kernel!r}): args must be a list of buffer names, got a string")
        object.__setattr__(self, "args", tuple(self.args))
        _policy(self.grid, self.block, self.launch_dims, self.threads_per_block, self.shared_mem, self.kernel)


def _policy(grid, block, launch_dims, threads_per_block, shared_mem, kernel):
    """Validates a launch configuration; returns ``("explicit", grid, block)`` or
    ``("dims", launch_dims, threads_per_block)``."""
    where = f"kernel {kernel!r}"
    explicit = grid is not None or block is not None
    if explicit and launch_dims is not None:
        raise ValueError(f"{where}: give either grid= and block=, or launch_dims=, not both")
    if explicit and (grid is None or block is None):
        raise ValueError(f"{where}: grid= and block= go together (got grid={grid!r}, block={block!r})")
    if not explicit and launch_dims is None:
        raise ValueError(f"{where}: give a launch configuration: grid= and block=, or launch_dims=")
    if not isinstance(shared_mem, (int, np.integer)) or shared_mem < 0:
        raise ValueError(f"{where}: shared_mem must be a number of bytes >= 0, got {shared_mem!r}")
    if shared_mem > MAX_SHARED_MEM:
        raise ValueError(
            f"{where}: shared_mem={shared_mem} bytes is more than any CUDA device gives a block "
            f"({MAX_SHARED_MEM} bytes)"
        )
    if explicit:
        g, b = _dims(grid, "grid"), _dims(block, "block")
        if int(np.prod(b)) > _MAX_THREADS:
            raise ValueError(f"{where}: block={block!r} has {int(np.prod(b))} threads, more than CUDA's {_MAX_THREADS}")
        return ("explicit", g, b)
    dims = _dims(launch_dims, "launch_dims")
    tpb = int(threads_per_block) if isinstance(threads_per_block, (int, np.integer)) else threads_per_block
    if not isinstance(tpb, int) or tpb < 1 or tpb > _MAX_THREADS:
        raise ValueError(f"{where}: threads_per_block must be in 1..{_MAX_THREADS}, got {threads_per_block!r}")
    return ("dims", dims, tpb)


def _grid_block(policy, batch: int):
    if policy[0] == "explicit":
        return policy[1], policy[2]
    dims = policy[1]
    if batch > 1:
        dims = (dims[0] * batch,) + dims[1:]
    return launch_config(dims, policy[2])


# -- outputs and buffers ---------------------------------------------------------------------


#: The most bytes one buffer can have (what an allocation can be: 2**63 - 1).
MAX_BUFFER_BYTES = 2**63 - 1


def _struct(o, what: str) -> jax.ShapeDtypeStruct:
    if isinstance(o, jax.ShapeDtypeStruct):
        struct = o
    elif hasattr(o, "shape") and hasattr(o, "dtype"):
        struct = jax.ShapeDtypeStruct(tuple(o.shape), o.dtype)
    elif isinstance(o, tuple) and len(o) == 2:
        shape = (o[0],) if isinstance(o[0], (int, np.integer)) else tuple(o[0])
        struct = jax.ShapeDtypeStruct(tuple(int(d) for d in shape), np.dtype(o[1]))
    else:
        raise TypeError(f"{what}: expected a jax.ShapeDtypeStruct (or (shape, dtype)), got {o!r}")
    # Exact (Python ints): a size that wraps in 64 bits must be an error here, not a small buffer.
    nbytes = math.prod(int(d) for d in struct.shape) * np.dtype(struct.dtype).itemsize
    if nbytes > MAX_BUFFER_BYTES:
        raise ValueError(
            f"{what}: {np.dtype(struct.dtype).name}{list(struct.shape)} is {nbytes} bytes, more than "
            f"one buffer can hold ({MAX_BUFFER_BYTES})"
        )
    return struct


def _buffer(name: str, shape, dtype) -> dict:
    return {"name": name, "dtype": np.dtype(dtype).name, "shape": [int(d) for d in shape]}


def _has_identifier(source: str, name: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", source) is not None


# -- the primitive -----------------------------------------------------------------------------


def _lowering(*, plan, key, temps, program, batch) -> FfiCall:
    # The temps are results of the call after the outputs: XLA allocates them with its other
    # buffers (so no call allocates), and the primitive drops them.
    return FfiCall(attributes=dict(plan=plan, key=key), scratch=temps, input_output_aliases=dict(program.aliases))


def _replan(size, operands, params):
    """A broadcast_all batch: the same kernels over a ``size`` times longer launch."""
    program, batch = params["program"], params["batch"] * size
    plan, key, outs, temps = program._plan(tuple((tuple(a.shape), np.dtype(a.dtype)) for a in operands), batch)
    return dict(params, plan=plan, key=key, outs=outs, temps=temps, batch=batch)


_fold_into_launch = fold_batch(_replan)


def _batch_rule(primitive, args, dims, *, program, batch, **params):
    method = program.vmap_method
    if method is None:
        raise ValueError(
            f"{program!r} cannot be vmapped: pass vmap_method='sequential' (one launch per batch "
            "element, through lax.map) or vmap_method='broadcast_all' (an element-wise kernel: "
            "one launch over the whole batch)"
        )
    if method == "broadcast_all":
        # Every argument gets the batch axis, folded into its leading axis: a longer element-wise
        # launch (the kernel reads its length from the size parameters).
        return _fold_into_launch(primitive, args, dims, program=program, batch=batch, **params)
    batched = [i for i, d in enumerate(dims) if d is not None]
    xs = tuple(jnp.moveaxis(args[i], dims[i], 0) for i in batched)

    def one(slices):
        full = list(args)
        for i, s in zip(batched, slices):
            full[i] = s
        return tuple(program._bind(full, batch))

    res = lax.map(one, xs)
    return list(res), [0] * len(res)


custom_call_p = ffi_primitive("spikeforge_custom_call", _lowering, batching=_batch_rule)


class CustomKernel:
    """A callable of input arrays running user kernels (see :func:`cuda_kernel` and
    :func:`cuda_callable`). Works eagerly and under ``jax.jit``; under ``jax.vmap`` as declared
    by ``vmap_method``."""

    def __init__(
        self,
        *,
        cuda_source: str,
        c_source: str | None,
        inputs: Sequence[str] | None,
        in_specs: Mapping[str, jax.ShapeDtypeStruct] | None = None,
        outs: Mapping[str, jax.ShapeDtypeStruct],
        single: bool,
        steps: Sequence[tuple[Launch, tuple]],
        temps: Mapping[str, jax.ShapeDtypeStruct],
        sizes: bool,
        vmap_method: str | None,
        fast_math: bool,
        label: str,
        input_output_aliases: Mapping | None = None,
    ):
        if not isinstance(cuda_source, str):
            raise TypeError(f"the CUDA source must be a string, got {type(cuda_source).__name__}")
        if c_source is not None and not isinstance(c_source, str):
            raise TypeError(f"c_source must be a string or None, got {type(c_source).__name__}")
        if vmap_method not in _VMAP_METHODS:
            raise ValueError(f"vmap_method must be one of {_VMAP_METHODS}, got {vmap_method!r}")
        if vmap_method == "broadcast_all":
            for launch, policy in steps:
                if policy[0] != "dims" or len(policy[1]) != 1:
                    has = "grid/block" if policy[0] == "explicit" else "multi-dimensional launch_dims"
                    raise ValueError(
                        f"vmap_method='broadcast_all' needs 1-D launch_dims in every launch (kernel "
                        f"{launch.kernel!r} has {has}): the batch is folded into the launch"
                    )
            if not sizes:
                raise ValueError(
                    "vmap_method='broadcast_all' needs sizes=True: the batched launch is longer, so the "
                    "kernel must read its length from the size parameters"
                )
        for launch, _ in steps:
            if not _has_identifier(cuda_source, launch.kernel):
                raise ValueError(f"kernel {launch.kernel!r} does not appear in the CUDA source")
            c_name = launch.c_kernel or launch.kernel
            if c_source is not None and not _has_identifier(c_source, c_name):
                raise ValueError(
                    f"C function {c_name!r} (the twin of kernel {launch.kernel!r}) does not appear in c_source"
                )
        self.cuda_source = cuda_source
        self.c_source = c_source
        self.inputs = None if inputs is None else tuple(inputs)
        self.in_specs = dict(in_specs) if in_specs else None
        self.outs = dict(outs)
        self.temps = dict(temps)
        self.steps = tuple(steps)
        self.sizes = bool(sizes)
        self.vmap_method = vmap_method
        self.fast_math = bool(fast_math)
        self._single = single
        self._label = label
        self._plans: dict = {}
        self.aliases = self._resolve_aliases(input_output_aliases)

    def __repr__(self):
        return f"<spikeforge {self._label}>"

    def _resolve_aliases(self, aliases) -> tuple[tuple[int, int], ...]:
        """``input_output_aliases`` as sorted (input index, output index) pairs; names are looked
        up among the inputs and outputs. Shapes are compared per call (see :meth:`_plan`)."""
        if aliases is None:
            return ()
        if not isinstance(aliases, Mapping):
            raise TypeError(f"input_output_aliases must be a mapping input -> output, got {aliases!r}")
        outs = list(self.outs)

        def index(key, names, what):
            if isinstance(key, str):
                if names is None or key not in names:
                    raise ValueError(f"input_output_aliases: unknown {what} {key!r}; the {what}s are {names}")
                return names.index(key)
            if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or key < 0:
                raise TypeError(f"input_output_aliases: {what}s are indices >= 0 or names, got {key!r}")
            if names is not None and key >= len(names):
                raise ValueError(f"input_output_aliases: {what} {key} does not exist ({len(names)} {what}s)")
            return int(key)

        pairs = sorted(
            (index(i, None if self.inputs is None else list(self.inputs), "input"), index(o, outs, "output"))
            for i, o in aliases.items()
        )
        targets = [o for _, o in pairs]
        if len(set(targets)) != len(targets):
            raise ValueError(f"input_output_aliases: an output can share the buffer of one input only, got {aliases!r}")
        return tuple(pairs)

    # -- plan ---------------------------------------------------------------------------------

    def _plan(self, in_avals: tuple, batch: int):
        memo = (in_avals, batch)
        if memo in self._plans:
            return self._plans[memo]
        in_names = self.inputs or tuple(f"input {k}" for k in range(len(in_avals)))

        # A batch (vmap_method="broadcast_all") is folded into the leading axis of every buffer.
        def shape(s):
            return folded_shape(s, batch) if batch > 1 else tuple(s)

        out_structs = tuple(jax.ShapeDtypeStruct(shape(o.shape), o.dtype) for o in self.outs.values())
        for i, o in self.aliases:
            if i >= len(in_avals):
                raise ValueError(
                    f"{self!r}: input_output_aliases names input {i}, but the call has {len(in_avals)} inputs"
                )
            got, want = in_avals[i], out_structs[o]
            if tuple(got[0]) != tuple(want.shape) or np.dtype(got[1]) != np.dtype(want.dtype):
                raise ValueError(
                    f"{self!r}: input {in_names[i]!r} ({np.dtype(got[1]).name}{list(got[0])}) cannot be updated in "
                    f"place as output {list(self.outs)[o]!r} ({np.dtype(want.dtype).name}{list(want.shape)}): "
                    "input_output_aliases needs the same shape and dtype"
                )
        temp_structs = tuple(jax.ShapeDtypeStruct(shape(t.shape), t.dtype) for t in self.temps.values())
        temps = [_buffer(n, t.shape, t.dtype) for n, t in zip(self.temps, temp_structs)]
        index = {n: k for k, n in enumerate(list(in_names) + list(self.outs) + list(self.temps))}
        steps = []
        for launch, policy in self.steps:
            grid, block = _grid_block(policy, batch)
            steps.append(
                {
                    "kernel": launch.kernel,
                    "c_kernel": launch.c_kernel,
                    "args": [index[a] for a in launch.args],
                    "grid": _pad3(grid),
                    "block": _pad3(block),
                    "shared_mem": int(launch.shared_mem),
                }
            )
        plan = {
            "cuda_source": self.cuda_source,
            "c_source": self.c_source,
            "inputs": [_buffer(n, s, d) for n, (s, d) in zip(in_names, in_avals)],
            "outputs": [_buffer(n, o.shape, o.dtype) for n, o in zip(self.outs, out_structs)],
            "temps": temps,
            "steps": steps,
            "sizes": self.sizes,
            "fast_math": self.fast_math,
        }
        text = json.dumps(plan, sort_keys=True)
        entry = (text, hashlib.sha256(text.encode("utf-8")).hexdigest(), out_structs, temp_structs)
        self._plans[memo] = entry
        return entry

    def _bind(self, args, batch: int):
        in_avals = tuple((tuple(a.shape), np.dtype(a.dtype)) for a in args)
        plan, key, outs, temps = self._plan(in_avals, batch)
        return custom_call_p.bind(*args, outs=outs, temps=temps, plan=plan, key=key, program=self, batch=batch)

    # -- calling ------------------------------------------------------------------------------

    def __call__(self, *ins):
        if self.inputs is not None and len(ins) != len(self.inputs):
            raise TypeError(f"{self!r} takes {len(self.inputs)} inputs {self.inputs}, got {len(ins)}")
        args = [jnp.asarray(x) for x in ins]
        for (name, spec), a in zip((self.in_specs or {}).items(), args):
            if tuple(a.shape) != tuple(spec.shape):
                raise ValueError(f"{self!r}: input {name!r} has shape {tuple(a.shape)}, expected {tuple(spec.shape)}")
            if np.dtype(a.dtype) != np.dtype(spec.dtype):
                raise TypeError(f"{self!r}: input {name!r} has dtype {a.dtype}, expected {np.dtype(spec.dtype)}")
        res = self._bind(args, 1)
        return res[0] if self._single else tuple(res)

    def check_cuda(self, arch=(9, 0)) -> str:
        """Compiles the CUDA source with NVRTC (no GPU needed) and checks every kernel is in it;
        returns the PTX. Raises :class:`KernelError`."""
        return compile_cuda(self.cuda_source, [s.kernel for s, _ in self.steps], arch=arch, fast_math=self.fast_math)


def _outs(outs, what="outs"):
    """(mapping name -> struct, single?) from a struct, a sequence or a mapping."""
    if isinstance(outs, Mapping):
        if not outs:
            raise ValueError(f"{what} must name at least one output")
        return {str(k): _struct(v, f"{what}[{k!r}]") for k, v in outs.items()}, len(outs) == 1
    if isinstance(outs, (jax.ShapeDtypeStruct,)) or hasattr(outs, "dtype"):
        return {"output 0": _struct(outs, what)}, True
    outs = list(outs)
    if not outs:
        raise ValueError(f"{what} must describe at least one output")
    return {f"output {k}": _struct(o, f"{what}[{k}]") for k, o in enumerate(outs)}, False


def cuda_kernel(
    source: str,
    name: str,
    outs,
    *,
    grid=None,
    block=None,
    launch_dims=None,
    threads_per_block: int = 256,
    shared_mem: int = 0,
    c_source: str | None = None,
    c_name: str | None = None,
    sizes: bool = False,
    vmap_method: str | None = None,
    fast_math: bool = False,
    inputs: Sequence | None = None,
    input_output_aliases: Mapping | None = None,
) -> CustomKernel:
    """One CUDA kernel from source, as a function of its input arrays (the shape of brainevent's
    ``numba_cuda_kernel``).

    ``source`` holds ``extern "C" __global__ void name(in..., out...)``; ``outs`` is a
    ``jax.ShapeDtypeStruct`` (the call returns one array) or a list of them (it returns a
    tuple). Launch with ``grid`` and ``block`` (ints or tuples), or ``launch_dims`` (1-3 ints;
    block ``(threads_per_block,)``, ``(16, 16)`` or ``(8, 8, 8)``, grid rounded up).
    ``shared_mem``: dynamic shared memory in bytes. ``c_source``: the C twin
    (``void name(void **args, const int64_t *sizes)``) that runs the same primitive on the CPU.
    ``sizes=True`` appends a ``long long`` element count per pointer to the CUDA parameters.
    ``vmap_method``: ``None`` (vmap is an error), ``"sequential"`` or ``"broadcast_all"``.
    ``inputs``: optionally the expected inputs (``jax.ShapeDtypeStruct`` s), checked at each
    call with an error naming the input. ``input_output_aliases``: ``{input index: output
    index}`` of outputs written in place over their input (see the module's conventions).
    """
    out_map, single = _outs(outs)
    in_specs = None
    if inputs is not None:
        in_specs = {f"input {k}": _struct(i, f"inputs[{k}]") for k, i in enumerate(inputs)}
    launch = Launch(
        name,
        tuple(out_map),  # placeholder, replaced below once the input count is known
        grid=grid,
        block=block,
        launch_dims=launch_dims,
        threads_per_block=threads_per_block,
        shared_mem=shared_mem,
        c_kernel=c_name,
    )
    policy = _policy(grid, block, launch_dims, threads_per_block, shared_mem, name)
    return _SingleKernel(
        cuda_source=source,
        c_source=c_source,
        inputs=None if in_specs is None else tuple(in_specs),
        in_specs=in_specs,
        outs=out_map,
        single=single,
        steps=[(launch, policy)],
        temps={},
        sizes=sizes,
        vmap_method=vmap_method,
        fast_math=fast_math,
        label=f"cuda_kernel {name!r}",
        input_output_aliases=input_output_aliases,
    )


class _SingleKernel(CustomKernel):
    """A single kernel takes every input, then every output: its argument list follows the call."""

    def _plan(self, in_avals, batch):
        launch, policy = self.steps[0]
        names = tuple(f"input {k}" for k in range(len(in_avals))) + tuple(self.outs)
        if launch.args != names:
            self.steps = ((dataclasses.replace(launch, args=names), policy),)
        return super()._plan(in_avals, batch)


def cuda_callable(
    source: str,
    *,
    inputs: Sequence[str] | Mapping,
    outs,
    steps: Sequence[Launch],
    temps: Mapping | None = None,
    c_source: str | None = None,
    sizes: bool = False,
    vmap_method: str | None = None,
    fast_math: bool = False,
    input_output_aliases: Mapping | None = None,
) -> CustomKernel:
    """Several kernels of one source launched in order on XLA's stream, with temporary buffers
    from XLA's allocator (the shape of brainevent's ``numba_cuda_callable``, declared instead
    of written as Python, so no Python runs at launch time).

    ``inputs``: the names of the call's arguments, in order; or a mapping name ->
    ``jax.ShapeDtypeStruct`` (or ``(shape, dtype)``), and each call checks its inputs against
    it, with errors naming the input. ``outs``: a mapping name ->
    ``jax.ShapeDtypeStruct`` (the call returns one array, or a tuple in this order). ``temps``:
    name -> ``jax.ShapeDtypeStruct`` or ``(shape, dtype)``, allocated by XLA with the call's
    other buffers and dropped after it (their contents are undefined at the start). ``steps``: :class:`Launch` es, each
    naming its buffers in ``args``. ``input_output_aliases``: ``{input: output}`` (names or
    indices) of outputs written in place over their input (see the module's conventions).
    """
    if isinstance(inputs, str):
        raise TypeError("inputs must be a list of names, got a string")
    in_specs = None
    if isinstance(inputs, Mapping):
        in_specs = {str(k): _struct(v, f"inputs[{k!r}]") for k, v in inputs.items()}
    inputs = tuple(str(i) for i in inputs)
    if not isinstance(outs, Mapping):
        raise TypeError("cuda_callable: outs must be a mapping name -> jax.ShapeDtypeStruct")
    out_map, single = _outs(outs)
    temp_map = {str(k): _struct(v, f"temps[{k!r}]") for k, v in (temps or {}).items()}
    names = list(inputs) + list(out_map) + list(temp_map)
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"cuda_callable: buffer names must be distinct, repeated: {sorted(dup)}")
    steps = list(steps)
    if not steps:
        raise ValueError("cuda_callable: steps must hold at least one Launch")
    planned = []
    for s in steps:
        if not isinstance(s, Launch):
            raise TypeError(f"cuda_callable: steps must be sf.Launch objects, got {s!r}")
        for a in s.args:
            if a not in names:
                raise ValueError(f"Launch({s.kernel!r}): unknown buffer {a!r}; the buffers are {names}")
        planned.append((s, _policy(s.grid, s.block, s.launch_dims, s.threads_per_block, s.shared_mem, s.kernel)))
    written = {a for s in steps for a in s.args}
    unwritten = [o for o in out_map if o not in written]
    if unwritten:
        raise ValueError(f"cuda_callable: outputs {unwritten} are not an argument of any step")
    return CustomKernel(
        cuda_source=source,
        c_source=c_source,
        inputs=inputs,
        in_specs=in_specs,
        outs=out_map,
        single=single,
        steps=planned,
        temps=temp_map,
        sizes=sizes,
        vmap_method=vmap_method,
        fast_math=fast_math,
        label="cuda_callable " + "+".join(s.kernel for s in steps),
        input_output_aliases=input_output_aliases,
    )


def _c_literal(name: str, value, single: bool = False) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            raise ValueError(f"keyword argument {name!r}={value!r} must be finite to become a #define")
        text = repr(float(value))
        if single:
            return text + ("f" if any(c in text for c in ".e") else ".0f")
        return text
    raise TypeError(f"keyword argument {name!r}={value!r} cannot become a #define (use an int, float or bool)")


def kernel_generator(
    source: str,
    name: str,
    *,
    c_source: str | None = None,
    c_name: str | None = None,
    defines: Sequence[str] = (),
    launch_dims=None,
    threads_per_block: int = 256,
    shared_mem: int = 0,
    sizes: bool = True,
    vmap_method: str | None = None,
):
    """A kernel generator for :class:`XLACustomKernel` / brainevent primitives: ``generator(outs=,
    **kwargs)`` returns :func:`cuda_kernel` of ``source`` for the call's ``outs``.

    ``defines``: keyword arguments of the call that become ``#define NAME value`` lines (the name
    upper-cased) in front of both sources, e.g. ``defines=("alpha",)`` -> ``#define ALPHA 0.1f``
    (a float is written in the float type of the first output: ``0.1f`` for float32, else
    ``0.1``). ``launch_dims``: an int or tuple, a function
    ``(outs, **kwargs) -> launch_dims``, or None for the element count of the first output.
    """
    if isinstance(defines, str):
        defines = (defines,)
    defines = tuple(defines)

    def generator(*, outs, **kwargs):
        missing = [d for d in defines if d not in kwargs]
        if missing:
            raise TypeError(f"kernel {name!r} needs the keyword arguments {missing} (its #defines)")
        outs = tuple(outs)
        single = np.dtype(outs[0].dtype) == np.float32
        prefix = "".join(f"#define {d.upper()} {_c_literal(d, kwargs[d], single)}\n" for d in defines)
        if callable(launch_dims):
            dims = launch_dims(outs, **kwargs)
        elif launch_dims is None:
            dims = max(1, int(np.prod(outs[0].shape)))
        else:
            dims = launch_dims
        return cuda_kernel(
            prefix + source,
            name,
            outs[0] if len(outs) == 1 else list(outs),
            launch_dims=dims,
            threads_per_block=threads_per_block,
            shared_mem=shared_mem,
            c_source=None if c_source is None else prefix + c_source,
            c_name=c_name,
            sizes=sizes,
            vmap_method=vmap_method,
        )

    generator.__name__ = f"kernel_generator_{name}"
    return generator


def compile_cuda(source: str, kernels: Sequence[str] = (), *, arch=(9, 0), fast_math: bool = False) -> str:
    """Compiles CUDA source with NVRTC for ``arch`` (no GPU needed) and checks that each of
    ``kernels`` is an entry point; returns the PTX. Raises :class:`KernelError` carrying NVRTC's
    log on a compile error (``kind="compile"``), ``kind="kernel_not_found"`` for a missing
    kernel and ``kind="nvrtc_missing"`` when NVRTC cannot be loaded."""
    if isinstance(kernels, str):
        kernels = [kernels]
    answer = _native.cuda_compile_check(
        {"source": source, "kernels": list(kernels), "arch": list(arch), "fast_math": bool(fast_math)}
    )
    if not answer.get("ok"):
        err = answer["error"]
        raise KernelError(err.get("kind", "compile"), err["message"])
    return answer["ptx"]
