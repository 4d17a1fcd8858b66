"""The ``spikeforge_network_run`` primitive: one FFI call runs every step of a network.

Its batching rule is what makes ``jax.vmap`` over network states one launch: every buffer the
layout marks ``batched`` has a leading axis of ``nb`` networks, so the members of a vmap are
folded into that axis (``(B, nb, ...) -> (B*nb, ...)``), while the connectivity, which the
members share, is passed once. A vmap whose members each have their own connectivity (the
connectivity itself is batched) cannot share it: it runs as one call per member (``lax.map``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..ffi_primitive import FfiCall, batch_axis_first, ffi_primitive

__all__ = ["network_run_p", "bind"]


def _lowering(*, spec, key, steps, nb, scratch, unbatched, batched_outs, checkpoint_every=0) -> FfiCall:
    del unbatched, batched_outs  # for the batching rule only
    structs = [jax.ShapeDtypeStruct(((nb,) if b else ()) + tuple(shape), np.dtype(dt)) for shape, dt, b in scratch]
    attributes = dict(spec=spec, key=key, steps=steps)
    if checkpoint_every:  # a checkpointed run (src/handlers/network_checkpoints.rs)
        attributes["checkpoint_every"] = int(checkpoint_every)
    return FfiCall(attributes=attributes, scratch=structs)


def _batching(primitive, args, dims, *, outs, nb, unbatched, batched_outs, **params):
    size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
    if any(dims[k] is not None for k in unbatched):
        # Each member has its own connectivity: one call per member.
        _, moved = batch_axis_first(args, dims)

        def member(xs):
            return tuple(
                primitive.bind(*xs, outs=outs, nb=nb, unbatched=unbatched, batched_outs=batched_outs, **params)
            )

        results = lax.map(member, tuple(moved))
        return list(results), [0] * len(results)
    folded = []
    for k, (a, d) in enumerate(zip(args, dims)):
        if k in unbatched:
            folded.append(a)
            continue
        a = jnp.broadcast_to(a, (size,) + a.shape) if d is None else jnp.moveaxis(a, d, 0)
        folded.append(a.reshape((size * a.shape[1],) + a.shape[2:]))
    new_outs = tuple(
        jax.ShapeDtypeStruct((size * o.shape[0],) + tuple(o.shape[1:]), o.dtype) if b else o
        for o, b in zip(outs, batched_outs)
    )
    results = primitive.bind(
        *folded, outs=new_outs, nb=nb * size, unbatched=unbatched, batched_outs=batched_outs, **params
    )
    out = []
    for r, o, b in zip(results, outs, batched_outs):
        out.append(r.reshape((size,) + tuple(o.shape)) if b else jnp.broadcast_to(r, (size,) + r.shape))
    return out, [0] * len(out)


network_run_p = ffi_primitive("spikeforge_network_run", _lowering, batching=_batching)


def bind(operands, *, outs, spec: str, key: str, steps: int, scratch, unbatched, batched_outs, checkpoint_every=0):
    """Runs ``steps`` steps: ``outs`` (with a batch axis of 1 where batched) in layout order;
    ``checkpoint_every`` > 0: ``outs`` ends with the checkpoints (``[1, segments, ...]`` each,
    src/handlers/network_checkpoints.rs)."""
    return network_run_p(
        *operands,
        outs=list(outs),
        spec=spec,
        key=key,
        steps=int(steps),
        nb=1,
        scratch=tuple(scratch),
        unbatched=tuple(unbatched),
        batched_outs=tuple(batched_outs),
        checkpoint_every=int(checkpoint_every),
    )
