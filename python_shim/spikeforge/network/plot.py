"""``plot_raster``: a raster plot of a SpikeMonitor's record (matplotlib, imported only here)."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_raster"]


def plot_raster(spikes, ax=None, *, offset: int = 0, marker: str = "|", markersize: float = 2.0, **kwargs):
    """Plots spike times (ms, x) against neuron indices (y) on ``ax`` (default: the current
    axes) and returns the axes. ``spikes``: a SpikeMonitor's record (``out.spikes``) or an
    ``(i, t)`` pair of arrays. ``offset`` shifts the indices (to stack populations). Other
    keywords go to ``ax.plot``."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is optional
        raise ImportError("plot_raster needs matplotlib: pip install matplotlib") from None
    if hasattr(spikes, "numpy"):
        i, t = spikes.numpy()
    else:
        i, t = (np.asarray(a) for a in spikes)
        keep = (i >= 0) & np.isfinite(t)
        i, t = i[keep], t[keep]
    if ax is None:
        ax = plt.gca()
    kwargs.setdefault("color", "k")
    kwargs.setdefault("linestyle", "none")
    ax.plot(t, i + offset, marker=marker, markersize=markersize, **kwargs)
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("neuron index")
    return ax
