"""A projection's synapses as CSR by presynaptic neuron (docs/NETWORKS.md, "Connectivity"):
``row_offsets`` ``(n_pre + 1,)`` and ``targets`` ``(n_syn,)``, both int32; within a row the
synapses are sorted by delay step, stably (creation order within one delay).

Why here: the synapses of one projection come from one or more ``connect`` calls (explicit
``i``/``j`` arrays, sorted here without a kernel, or rules built by the library's connectivity
kernels), each in its own order; this module merges them into the one order the kernels read,
and keeps the permutation from creation order, so that per-synapse values given in creation
order (``init_state(S=dict(w=...))``) land on their synapses.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Csr", "from_pairs", "delay_buckets", "by_post", "INT32_MAX"]

INT32_MAX = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class Csr:
    row_offsets: np.ndarray  # (n_pre + 1,) int32
    targets: np.ndarray  # (n_syn,) int32
    order: np.ndarray  # (n_syn,) int64: creation index of each stored synapse
    sources: np.ndarray  # (n_syn,) int32: presynaptic index of each stored synapse

    @property
    def n_syn(self) -> int:
        return int(self.targets.size)

    def permute(self, values: np.ndarray) -> np.ndarray:
        """Values in creation order -> stored order."""
        return values[self.order]


def from_pairs(i: np.ndarray, j: np.ndarray, n_pre: int, delay_steps: np.ndarray | None = None) -> Csr:
    """CSR of the synapses ``i[k] -> j[k]`` (creation order ``k``), rows sorted by delay step when
    ``delay_steps`` (one per synapse, creation order) is given."""
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    if i.size > INT32_MAX:
        raise OverflowError(f"{i.size} synapses: more than int32 indices hold (2^31 - 1)")
    if delay_steps is None:
        key = i
    else:  # one key (row, then delay): one stable sort, several times faster than lexsort
        steps = np.asarray(delay_steps, dtype=np.int64)
        depth = int(steps.max()) + 1 if steps.size else 1
        key = i * depth + steps
        if n_pre * depth <= INT32_MAX:
            key = key.astype(np.int32)
    order = np.argsort(key, kind="stable")  # creation order within equal keys
    counts = np.bincount(i, minlength=n_pre)
    offsets = np.zeros(n_pre + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return Csr(offsets.astype(np.int32), j[order].astype(np.int32), order, i[order].astype(np.int32))


def delay_buckets(csr: Csr, delay_steps_stored: np.ndarray, max_steps: int) -> np.ndarray:
    """Per row and delay step, where its synapses start: ``(n_pre * (max_steps + 1) + 1,)`` int32,
    entry ``r*(max_steps + 1) + s`` the first synapse of row ``r`` with delay ``s``, the last entry
    ``n_syn`` (rows are contiguous and sorted by delay, so these are prefix sums)."""
    n_pre = csr.row_offsets.size - 1
    depth = max_steps + 1
    keys = csr.sources.astype(np.int64) * depth + np.asarray(delay_steps_stored, dtype=np.int64)
    counts = np.bincount(keys, minlength=n_pre * depth)
    out = np.zeros(n_pre * depth + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out.astype(np.int32)


def by_post(csr: Csr, n_post: int) -> dict:
    """The by-post index of ``on_post`` pathways: ``post_offsets`` ``(n_post + 1,)``,
    ``post_synapses`` ``(n_syn,)`` (stored synapse ids, those onto target ``j`` at
    ``post_offsets[j]:post_offsets[j + 1]`` in creation order, Brian2's synapse order) and
    ``sources`` ``(n_syn,)`` (each stored synapse's presynaptic index), all int32."""
    targets = csr.targets.astype(np.int64)
    post_synapses = np.lexsort((csr.order, targets))
    offsets = np.zeros(n_post + 1, dtype=np.int64)
    np.cumsum(np.bincount(targets, minlength=n_post), out=offsets[1:])
    return {
        "post_offsets": offsets.astype(np.int32),
        "post_synapses": post_synapses.astype(np.int32),
        "sources": csr.sources.astype(np.int32),
    }
