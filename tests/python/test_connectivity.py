"""Connectivity from a seed (spikeforge.connectivity): the synapse lists of every rule equal a
float64 numpy reference with the same random stream (connectivity_reference.py), exactly; the
statistics at larger sizes; the layouts (offsets, sources, by-post index, row sorting, int64
offsets); memory against the floor; errors; CPU == GPU where a GPU is present.

On the H200 the lead runs (the GPU half of the comparison runs there; it skips here):
    pytest -q tests/python/test_connectivity.py -k "gpu or cpu_and_gpu"
"""

import math

import connectivity_reference as ref
import jax
import numpy as np
import pytest
import spikeforge as sf
import spikeforge.connectivity as C
from conftest import PLATFORMS, check_written


def built(rule, n_pre, n_post, **kw):
    conn = C.build(rule, n_pre, n_post, **kw)
    check_written(conn.targets, conn.row_offsets)
    return conn


def assert_same(conn, expected):
    i, j = conn.pairs()
    want_i, want_j = expected
    assert conn.n_synapses == len(want_i)
    np.testing.assert_array_equal(i, want_i)
    np.testing.assert_array_equal(j, want_j)


# -- exact equality with the reference -------------------------------------------------------------


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize(
    "n_pre, n_post, p, seed, stream",
    [(200, 300, 0.05, 1, 0), (300, 200, 0.5, 7, 3), (50, 4000, 0.001, 2**32 - 1, 2**32 - 1), (64, 64, 0.9, 0, 1)],
)
def test_constant_p_by_geometric_skipping_matches_the_reference(platform, n_pre, n_post, p, seed, stream):
    conn = built(C.Pairs(p=p), n_pre, n_post, seed=seed, stream=stream, platform=platform)
    assert_same(conn, ref.pairs(seed, stream, n_pre, n_post, p=p))


@pytest.mark.parametrize("platform", PLATFORMS)
def test_condition_multiplicity_and_self_exclusion_with_constant_p(platform):
    conn = built(C.Pairs(condition="j > i - 20", p=0.2, n=2, allow_self=False), 150, 120, seed=5, platform=platform)
    want = ref.pairs(5, 0, 150, 120, p=0.2, condition=lambda i, j: j > i - 20, n=2, allow_self=False)
    assert_same(conn, want)
    # Brian2's way of excluding self-connections gives the same synapses.
    brian = built(C.Pairs(condition="j > i - 20 and i != j", p=0.2, n=2), 150, 120, seed=5, platform=platform)
    assert_same(brian, want)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_expressions_of_indices_and_group_variables_match_the_reference(platform):
    rng = np.random.default_rng(0)
    x_pre, x_post = rng.uniform(0, 10, 120), rng.uniform(0, 10, 90)
    rule = C.Pairs(
        condition="abs(x_pre - x_post) < width",
        p="exp(-(x_pre - x_post)**2 / (2 * sigma**2))",
        n="1 + (i + j) % 3",
    )
    conn = built(
        rule, 120, 90, seed=11, stream=4, pre_values={"x": x_pre, "unused": x_pre}, post_values={"x": x_post},
        constants={"width": 3.0, "sigma": 1.5}, platform=platform,
    )  # fmt: skip
    want = ref.pairs(
        11, 4, 120, 90,
        condition=lambda i, j: np.abs(x_pre[i.astype(int)] - x_post[j.astype(int)]) < 3.0,
        p=lambda i, j: np.exp(-((x_pre[i.astype(int)] - x_post[j.astype(int)]) ** 2) / (2 * 1.5**2)),
        n=lambda i, j: 1 + (i + j) % 3,
    )  # fmt: skip
    assert_same(conn, want)
    assert conn.n_synapses > 1000


@pytest.mark.parametrize("platform", PLATFORMS)
def test_condition_alone_and_p_of_indices(platform):
    conn = built(C.Pairs(condition="(i + 2*j) % 7 == 3 or i == N_pre - 1"), 40, 50, platform=platform)
    i, j = np.meshgrid(np.arange(40), np.arange(50), indexing="ij")
    keep = ((i + 2 * j) % 7 == 3) | (i == 39)
    assert_same(conn, (i[keep], j[keep]))
    conn = built(C.Pairs(p="j / N_post"), 30, 60, seed=3, platform=platform)
    assert_same(conn, ref.pairs(3, 0, 30, 60, p=lambda i, j: j / 60))


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("replace", [True, False])
@pytest.mark.parametrize("allow_self", [True, False])
def test_fixed_out_degree_matches_the_reference(platform, replace, allow_self):
    conn = built(C.FixedOutDegree(k=12, replace=replace, allow_self=allow_self), 150, 40, seed=9, platform=platform)
    assert_same(conn, ref.fixed_out_degree(9, 0, 150, 40, 12, replace=replace, allow_self=allow_self))
    # A subgroup onto its group: the own neuron is j = i + self_offset.
    conn = built(C.FixedOutDegree(k=5, replace=replace, allow_self=allow_self), 30, 60, seed=2, self_offset=25,
                 platform=platform)  # fmt: skip
    want = ref.fixed_out_degree(2, 0, 30, 60, 5, replace=replace, allow_self=allow_self, self_offset=25)
    assert_same(conn, want)
    if not allow_self:
        i, j = conn.pairs()
        assert not (j == i + 25).any()


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("replace", [True, False])
@pytest.mark.parametrize("allow_self", [True, False])
def test_fixed_in_degree_matches_the_reference(platform, replace, allow_self):
    rule = C.FixedInDegree(k=7, replace=replace, allow_self=allow_self)
    conn = built(rule, 60, 110, seed=4, stream=8, platform=platform, sources=True, by_post=True)
    assert_same(conn, ref.fixed_in_degree(4, 8, 60, 110, 7, replace=replace, allow_self=allow_self))
    np.testing.assert_array_equal(np.asarray(conn.col_offsets), np.arange(111) * 7)
    check_by_post(conn)


def test_explicit_pairs_are_sorted_stably_by_i():
    i = np.array([3, 0, 3, 1, 0, 3])
    j = np.array([5, 2, 1, 1, 0, 5])
    conn = built(C.Explicit(i, j), 5, 6, sources=True)
    assert_same(conn, ([0, 0, 1, 3, 3, 3], [2, 0, 1, 5, 1, 5]))
    np.testing.assert_array_equal(conn.offsets(), [0, 2, 3, 3, 6, 6])
    # n synapses per pair, scalars broadcast, out-of-range pairs dropped when asked.
    assert_same(
        built(C.Explicit(i, j, n=2), 5, 6), ([0, 0, 0, 0, 1, 1] + [3] * 6, [2, 2, 0, 0, 1, 1, 5, 5, 1, 1, 5, 5])
    )
    assert_same(built(C.Explicit(2, [0, 4, 1]), 3, 5), ([2, 2, 2], [0, 4, 1]))
    assert_same(built(C.Explicit([0, 9, 1], [1, 1, 7], skip_if_invalid=True), 3, 5), ([0], [1]))
    assert built(C.Explicit([], []), 3, 5).n_synapses == 0


# -- statistics at larger sizes --------------------------------------------------------------------


def test_constant_p_counts_lie_within_binomial_bounds():
    n, p = 3000, 0.02
    conn = built(C.Pairs(p=p), n, n, seed=21)
    mean, sd = n * n * p, math.sqrt(n * n * p * (1 - p))
    assert abs(conn.n_synapses - mean) < 5 * sd, (conn.n_synapses, mean, sd)
    i, j = conn.pairs()
    # Out-degrees are Binomial(n, p); in-degrees too; targets distinct within a row.
    out = np.bincount(i, minlength=n)
    inn = np.bincount(j, minlength=n)
    for deg in (out, inn):
        assert abs(deg.mean() - n * p) < 5 * math.sqrt(n * p * (1 - p) / n)
        assert abs(deg.var() / (n * p * (1 - p)) - 1) < 0.1
    assert len(np.unique(i.astype(np.int64) * n + j)) == conn.n_synapses
    # Uniform over the columns: chi-square of the in-degrees against their mean, at 5 sigma.
    chi2 = ((inn - inn.mean()) ** 2 / inn.mean()).sum()
    assert abs(chi2 - (n - 1)) < 5 * math.sqrt(2 * (n - 1))


def test_small_p_and_p_near_one():
    conn = built(C.Pairs(p=1e-6), 2000, 2000, seed=1)
    assert conn.n_synapses < 30
    conn = built(C.Pairs(p=0.999), 300, 300, seed=1)
    assert abs(conn.n_synapses - 0.999 * 90000) < 5 * math.sqrt(90000 * 0.999 * 0.001)


@pytest.mark.parametrize("replace", [True, False])
def test_fixed_degree_histograms(replace):
    n_pre, n_post, k = 4000, 500, 80
    conn = built(C.FixedOutDegree(k=k, replace=replace), n_pre, n_post, seed=3)
    i, j = conn.pairs()
    np.testing.assert_array_equal(np.diff(conn.offsets()), k)
    inn = np.bincount(j, minlength=n_post)
    m = n_pre * k / n_post
    chi2 = ((inn - m) ** 2 / m).sum()
    assert abs(chi2 - (n_post - 1)) < 5 * math.sqrt(2 * (n_post - 1))
    rows = j.reshape(n_pre, k)
    if replace:
        # Multapses happen at the birthday rate: P(some repeat in a row) = 1 - prod(1 - t/n).
        repeats = np.mean([len(set(r)) < k for r in rows[:1000]])
        expect = 1 - np.prod(1 - np.arange(k) / n_post)
        assert abs(repeats - expect) < 0.05
    else:
        assert (np.diff(rows, axis=1) > 0).all()  # distinct and increasing
    # In-degree rule: every column exactly k, rows Binomial.
    conn = built(C.FixedInDegree(k=k, replace=replace), n_post, n_pre, seed=3)
    i, j = conn.pairs()
    np.testing.assert_array_equal(np.bincount(j, minlength=n_pre), k)
    out = np.bincount(i, minlength=n_post)
    assert abs(out.mean() - n_pre * k / n_post) < 1e-9


# -- the random stream ---------------------------------------------------------------------------


def test_same_seed_same_synapses_other_seed_or_stream_others():
    a = C.build(C.Pairs(p=0.1), 100, 100, seed=1)
    b = C.build(C.Pairs(p=0.1), 100, 100, seed=1)
    assert_same(b, a.pairs())
    for other in (dict(seed=2), dict(seed=1, stream=1)):
        c = C.build(C.Pairs(p=0.1), 100, 100, **other)
        assert c.n_synapses != a.n_synapses or not np.array_equal(c.targets, a.targets)


@pytest.mark.skipif("gpu" not in PLATFORMS, reason="needs a GPU (run on the H200)")
@pytest.mark.parametrize(
    "rule, kw",
    [
        (C.Pairs(p=0.02), {}),
        (
            C.Pairs(condition="abs(x_pre - x_post) < 2.5", p="x_pre / 10", n="1 + i % 2"),
            dict(pre_values={"x": np.linspace(0, 10, 3000)}, post_values={"x": np.linspace(10, 0, 2000)}),
        ),
        (C.FixedOutDegree(80, allow_self=False), {}),
        (C.FixedOutDegree(80, replace=False), {}),
        (C.FixedInDegree(80, replace=False, allow_self=False), {}),
    ],
)
def test_cpu_and_gpu_give_the_same_synapses(rule, kw):
    n_pre, n_post = (3000, 2000) if "pre_values" in kw else (3000, 3000)
    cpu = C.build(rule, n_pre, n_post, seed=12, stream=5, platform="cpu", by_post=True, **kw)
    gpu = C.build(rule, n_pre, n_post, seed=12, stream=5, platform="gpu", by_post=True, **kw)
    assert gpu.n_synapses == cpu.n_synapses > 0
    for name in ("row_offsets", "targets", "col_offsets", "synapses_by_post"):
        np.testing.assert_array_equal(np.asarray(getattr(gpu, name)), np.asarray(getattr(cpu, name)), err_msg=name)


# -- layouts ---------------------------------------------------------------------------------------


def check_by_post(conn):
    i, j = conn.pairs()
    col = np.asarray(conn.col_offsets)
    by_post = np.asarray(conn.synapses_by_post)
    np.testing.assert_array_equal(col, np.concatenate([[0], np.cumsum(np.bincount(j, minlength=conn.n_post))]))
    for post in range(conn.n_post):
        ids = by_post[col[post] : col[post + 1]]
        assert (np.diff(ids) > 0).all()
        assert (j[ids] == post).all()
    assert sorted(by_post) == list(range(conn.n_synapses))


def test_sources_and_by_post_index(device):
    conn = built(C.Pairs(p=0.3), 40, 30, seed=2, sources=True, by_post=True, platform=device.platform)
    np.testing.assert_array_equal(np.asarray(conn.sources), conn.pairs()[0])
    check_by_post(conn)
    assert conn.nbytes == conn.floor_bytes + 4 * conn.n_synapses * 2 + 4 * 31


def test_sort_rows_by_a_key_is_stable_and_returns_the_permutation():
    conn = built(C.FixedOutDegree(k=6), 20, 10, seed=1, sources=True, by_post=True)
    key = np.asarray(conn.targets) % 3  # e.g. a delay in steps
    new, perm = C.sort_rows(conn, key)
    perm = np.asarray(perm)
    offsets = conn.offsets()
    for r in range(20):
        lo, hi = offsets[r], offsets[r + 1]
        seg = perm[lo:hi]
        assert sorted(seg) == list(range(lo, hi))  # a permutation within the row
        assert (np.diff(key[seg]) >= 0).all()
        ties = key[seg][1:] == key[seg][:-1]
        assert (np.diff(seg)[ties] > 0).all()  # stable
    np.testing.assert_array_equal(np.asarray(new.targets), np.asarray(conn.targets)[perm])
    np.testing.assert_array_equal(np.asarray(new.sources), np.asarray(conn.sources))
    check_by_post(new)


def test_wide_offsets_hold_the_same_rows():
    narrow = built(C.Pairs(p=0.2), 50, 50, seed=1)
    wide = built(C.Pairs(p=0.2), 50, 50, seed=1, wide=True)
    assert not narrow.wide and wide.wide
    assert wide.row_offsets.shape == (51, 2) and wide.row_offsets.dtype == np.int32
    np.testing.assert_array_equal(wide.offsets(), narrow.offsets())
    assert wide.floor_bytes == narrow.floor_bytes + 4 * 51 == wide.nbytes


def test_memory_is_the_floor():
    """4 bytes per synapse plus the row offsets, nothing else, for every rule."""
    for rule in (C.Pairs(p=0.05), C.FixedOutDegree(20), C.FixedInDegree(20), C.Explicit([1, 2], [3, 4])):
        conn = built(rule, 500, 400, seed=1)
        assert conn.nbytes == 4 * conn.n_synapses + 4 * 501 == conn.floor_bytes


def test_works_without_x64():
    with jax.enable_x64(False) if hasattr(jax, "enable_x64") else jax.experimental.disable_x64():
        conn = C.build(C.Pairs(condition="x_pre > 0.5", p=0.3), 30, 30, seed=1, pre_values={"x": np.linspace(0, 1, 30)},
                       sources=True, by_post=True)  # fmt: skip
    x = np.linspace(0, 1, 30)
    assert_same(conn, ref.pairs(1, 0, 30, 30, p=0.3, condition=lambda i, j: x[i.astype(int)] > 0.5))


@pytest.mark.parametrize(
    "rule", [C.Pairs(), C.Pairs(p=0.5), C.FixedOutDegree(0), C.FixedInDegree(0), C.Explicit([], [])]
)
@pytest.mark.parametrize("n_pre, n_post", [(0, 0), (0, 5), (5, 0)])
def test_empty_populations_and_zero_degrees_give_no_synapses(rule, n_pre, n_post):
    conn = C.build(rule, n_pre, n_post, seed=1, sources=True, by_post=True)
    assert conn.n_synapses == 0 and conn.targets.shape == (0,)
    np.testing.assert_array_equal(np.asarray(conn.row_offsets), np.zeros(n_pre + 1))
    np.testing.assert_array_equal(np.asarray(conn.col_offsets), np.zeros(n_post + 1))


def test_brian2_keywords_make_the_rules():
    assert C.connect_rule(p=0.1) == C.Pairs(p=0.1)
    assert C.connect_rule("i != j", n=2) == C.Pairs(condition="i != j", n=2)
    assert C.connect_rule(True) == C.Pairs()
    assert C.connect_rule(fixed_out_degree=80, allow_self=False) == C.FixedOutDegree(80, allow_self=False)
    assert C.connect_rule(fixed_in_degree=5, replace=False) == C.FixedInDegree(5, replace=False)
    rule = C.connect_rule(i=[0, 1], j=[1, 0], skip_if_invalid=True)
    assert isinstance(rule, C.Explicit) and rule.skip_if_invalid


def test_rules_are_checked_without_building():
    info = C.check_rule(C.Pairs(condition="x_post > a"), post_variables=["x", "y"], constants={"a": 1, "b": 2})
    assert info["post_variables"] == ["x"] and info["rows"] == "pre"
    assert C.check_rule(C.FixedInDegree(3))["rows"] == "post"
    with pytest.raises(sf.ModelError, match="unknown name 'z_post'"):
        C.check_rule(C.Pairs(p="z_post"), post_variables=["x"])


def test_kernels_can_be_read():
    src = C.source(C.Pairs(p=0.02), "cuda")
    assert "sf_connect_count" in src and "__global__" in src
    assert "sf_connect_fill" in C.source(C.FixedOutDegree(3), "c")


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: C.build(C.Explicit([0, 1], [0]), 3, 3), "same length, got 2 and 1"),
        (lambda: C.build(C.Explicit([0, 5], [0, 1]), 3, 3), "i[1] = 5 is out of range"),
        (lambda: C.build(C.Explicit([0, 1], [0, -1]), 3, 3), "j[1] = -1 is out of range"),
        (lambda: C.build(C.Explicit([0.5], [1]), 3, 3), "i must hold integers, got dtype float64"),
        (lambda: C.build(C.Explicit([True], [1]), 3, 3), "i must hold integers"),
        (lambda: C.build(C.Pairs(p=1.5), 3, 3), "p must be in [0, 1], got 1.5"),
        (lambda: C.build(C.Pairs(p=-0.1), 3, 3), "p must be in [0, 1]"),
        (
            lambda: C.build(C.Pairs(p="2 * i"), 3, 3),
            "p='2 * i' is outside [0, 1] (or NaN) for a pair of presynaptic neuron i=1",
        ),
        (
            lambda: C.build(C.Pairs(n="i - 1"), 3, 3),
            "n='i - 1' is not a whole number in 0..2^31-1 for a pair of presynaptic neuron i=0",
        ),
        (lambda: C.build(C.Pairs(n="i / 2"), 3, 3), "neuron i=1"),
        (lambda: C.build(C.Pairs(n=1.5), 3, 3), "must be an integer"),
        (
            lambda: C.build(C.FixedOutDegree(5, replace=False), 3, 4),
            "fixed_out_degree=5 without replacement: presynaptic neuron 0 has only 4 possible targets",
        ),
        (
            lambda: C.build(C.FixedOutDegree(4, replace=False, allow_self=False), 3, 4),
            "only 3 possible targets (4 neurons less itself)",
        ),
        (
            lambda: C.build(C.FixedInDegree(1, allow_self=False), 1, 1),
            "fixed_in_degree=1: postsynaptic neuron 0 has no sources to draw from",
        ),
        (lambda: C.build(C.FixedOutDegree(1), 2, 0), "has no targets to draw from (0 neurons)"),
        (lambda: C.build(C.Pairs(condition="i + j"), 3, 3), "the condition must be a truth value"),
        (lambda: C.build(C.Pairs(condition="x_pre > y"), 3, 3, pre_values={"x": np.zeros(3)}), "unknown name 'y'"),
        (
            lambda: C.build(C.Pairs(condition="x_pre > 0"), 3, 3, pre_values={"x": np.zeros(4)}),
            "has shape (4,), but the group has 3",
        ),
        (lambda: C.build(C.Pairs(), -1, 3), "n_pre must be an integer in 0..2147483647, got -1"),
        (lambda: C.build(C.Pairs(), 2**31, 3), "n_pre must be an integer"),
        (lambda: C.build(C.Pairs(), 3, 3, seed=2**32), "seed must be an integer in 0..4294967295"),
        (lambda: C.build(C.Pairs(p=0.1), 3, 3, platform="tpu"), "platform must be 'cpu', 'gpu' or None"),
        (lambda: C.connect_rule(i=[0]), "give both i and j"),
        (lambda: C.connect_rule(j="i"), "generator syntax"),
        (lambda: C.connect_rule(p=0.1, fixed_out_degree=3), "fixed_out_degree cannot be combined with p"),
        (lambda: C.connect_rule(fixed_in_degree=3, fixed_out_degree=3), "not both"),
        (lambda: C.connect_rule(i=[0], j=[0], p=0.5), "cannot be combined with i/j"),
    ],
)
def test_bad_input_is_a_clear_error_and_the_process_keeps_working(call, message):
    with pytest.raises(sf.ModelError) as e:
        call()
    assert message in str(e.value), str(e.value)
    # Still working.
    assert C.build(C.Pairs(p=0.5), 4, 4, seed=1).n_synapses == ref.pairs(1, 0, 4, 4, p=0.5)[0].size


def test_condition_errors_point_at_the_place():
    with pytest.raises(sf.ModelError) as e:
        C.build(C.Pairs(condition="abs(i - jj) < 3"), 3, 3)
    text = str(e.value)
    assert "in condition, line 1, column 9: unknown name 'jj'" in text
    assert "    abs(i - jj) < 3\n            ^^" in text
    assert e.value.field == "condition" and e.value.column == 9


def test_a_count_that_cannot_fit_is_refused_before_allocating(monkeypatch):
    monkeypatch.setattr(C, "_memory_limit", lambda device: 1000)
    with pytest.raises(sf.ModelError, match="synapses: .* GiB of int32 arrays, more than"):
        C.build(C.Pairs(), 100, 100)
