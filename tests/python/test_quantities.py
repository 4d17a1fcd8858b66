"""Brian2 and brainunit/saiunit quantities are converted into the kernels' unit system (ms, mV, nA,
uS, nF, MOhm, um, mM) by their dimension wherever a number is taken, and a quantity of the wrong
dimension is refused with an error naming the argument (issue 8, item 4)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf
from spikeforge.units import describe, dimension_of, to_kernel_units

b2 = pytest.importorskip("brian2")


# (quantity made with a unit library u, its value in kernel units, computed by hand from SI)
CASES = [
    (lambda u: 0.1 * u.ms, 0.1),
    (lambda u: 1 * u.second, 1000.0),
    (lambda u: -65 * u.mV, -65.0),
    (lambda u: 1 * u.volt, 1e3),
    (lambda u: 10 * u.nS, 0.01),
    (lambda u: 1 * u.siemens, 1e6),
    (lambda u: 200 * u.pF, 0.2),
    (lambda u: 1 * u.farad, 1e9),
    (lambda u: 100 * u.Mohm, 100.0),
    (lambda u: 1 * u.ohm, 1e-6),
    (lambda u: 2 * u.nA, 2.0),
    (lambda u: 1 * u.amp, 1e9),
    (lambda u: 5 * u.um, 5.0),
    (lambda u: 1 * u.metre, 1e6),
    (lambda u: 3 * u.mM, 3.0),
    (lambda u: 1 * u.mole / u.metre**3, 1.0),
    (lambda u: 1 * u.molar, 1e3),
    (lambda u: 10 * u.Hz, 0.01),
    (lambda u: 1 * u.kHz, 1.0),
    (lambda u: 1 * u.cm2, 1e8),  # um^2
    (lambda u: 1 * u.uF / u.cm**2, 1e-5),  # 1e-2 F/m^2 = 1e-2 * 1e9 nF / 1e12 um^2
    (lambda u: 1 * u.mS / u.cm**2, 1e-5),  # 10 S/m^2 = 10 * 1e6 uS / 1e12 um^2
    (lambda u: 1 * u.mV / u.ms, 1.0),
    (lambda u: 1 * u.nA / u.uS, 1.0),  # = 1 mV
    (lambda u: 310 * u.kelvin, 310.0),
    (lambda u: 1 * u.second**-0.5, 10**-1.5),  # a noise amplitude's sqrt(1/time)
    (lambda u: 1 * u.kilogram, 1e9),  # the kernels' mass unit is ug (so that volt -> mV)
    (lambda u: u.ms, 1.0),  # a unit alone
    (lambda u: 3.0 * u.mV / u.mV, 3.0),  # dimensionless
]


@pytest.mark.parametrize("library", ["brian2", "brainunit"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_quantities_convert_by_dimension(library, case):
    u = pytest.importorskip(library)
    make, want = CASES[case]
    q = make(u)
    got = to_kernel_units(q, "x")
    assert math.isclose(float(got), want, rel_tol=1e-14), (q, got, want)


def test_exact_where_the_written_value_is_exact():
    """0.1*ms is 0.1 exactly, not 0.1 * (1e-3 * 1e3) with two roundings."""
    for x in (0.1, 0.01, 0.05, 0.025, 0.3, 1 / 3):
        assert to_kernel_units(x * b2.ms, "dt") == x
        assert to_kernel_units(x * b2.mV, "v") == x
    # Brian2 keeps SI values: 0.75 nA is stored as the double nearest 0.75e-9, so one ulp may
    # remain after the (once-rounded) scaling.
    arr = to_kernel_units(np.linspace(0, 1, 5) * b2.nA, "I")
    np.testing.assert_allclose(arr, np.linspace(0, 1, 5), rtol=2.3e-16, atol=0)
    assert to_kernel_units([1 * b2.mV, 2 * b2.mV], "x") == [1.0, 2.0]


def test_brainunit_specifics():
    bu = pytest.importorskip("brainunit")
    assert to_kernel_units(2 * bu.minute, "t") == 120_000.0  # a unit whose factor is not a power of ten
    assert to_kernel_units(0.1 * bu.ms, "dt") == 0.1  # mantissa and scale: exact
    # A jax mantissa stays a jax array (converted under jit too).
    got = jax.jit(lambda m: to_kernel_units(m * bu.mV, "v"))(jnp.arange(3.0))
    np.testing.assert_array_equal(np.asarray(got), [0.0, 1.0, 2.0])


def test_dimension_descriptions():
    assert describe(dimension_of(5 * b2.mV)) == "voltage (mV), m^2 kg s^-3 A^-1"
    assert describe(dimension_of(5 * b2.ms)) == "time (ms), s"
    assert describe(dimension_of(b2.Quantity(5.0))) == "dimensionless"
    assert describe(dimension_of(5 * b2.mV * b2.ms)) == "m^2 kg s^-2 A^-1"


# -- models --------------------------------------------------------------------------------------

LIF = "dv/dt = (v_rest - v + R*I) / tau : volt (unless refractory)\nI : amp"


def lif_plain():
    return sf.NeuronModel(
        LIF,
        threshold="v > v_th",
        reset="v = v_reset",
        refractory=2.0,
        constants=dict(v_rest=-65.0, R=10.0, tau=10.0, v_th=-50.0, v_reset=-65.0),
        method="euler",
    )


def lif_with(u, constants_in=dict, equations=LIF):
    return sf.NeuronModel(
        equations,
        threshold="v > v_th",
        reset="v = v_reset",
        refractory=2 * u.ms,
        constants=constants_in(v_rest=-65 * u.mV, R=10 * u.Mohm, tau=10 * u.ms, v_th=-50 * u.mV, v_reset=-65 * u.mV),
        method="euler",
    )


def run_lif(model, dt, current, duration=None, v0=-65.0):
    n = len(current)
    state = model.init_state(n, dtype=jnp.float64, v=v0, I=current)
    kw = dict(steps=1000) if duration is None else dict(duration=duration)
    new, out = jax.jit(lambda s: model.run(s, dt=dt, record=["v"], **kw))(state)
    return np.asarray(new["v"]), np.asarray(out.spike_count), np.asarray(out.traces["v"]), float(sf.time_of(new))


def test_a_brian2_model_gives_the_plain_number_result(device):
    current = np.linspace(0.0, 4.0, 32)  # nA: threshold at 1.5 nA through 10 MOhm
    plain = run_lif(lif_plain(), 0.1, current)
    quantities = run_lif(lif_with(b2), 0.1 * b2.ms, current * b2.nA, duration=100 * b2.ms, v0=-65 * b2.mV)
    assert plain[3] == quantities[3] == 1000 * 0.1
    np.testing.assert_array_equal(quantities[1], plain[1])
    np.testing.assert_allclose(quantities[0], plain[0], rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(quantities[2], plain[2], rtol=1e-13, atol=1e-12)
    assert plain[1].max() > 5, "the comparison must cover spikes and refractoriness"
    # Refractoriness is really 2 ms (20 steps), not 0.002 ms: the fastest neuron fires at most
    # once per 20 steps plus the time to climb back to threshold.
    assert plain[1].max() <= 1000 // 21


def test_a_brainunit_model_gives_the_plain_number_result():
    bu = pytest.importorskip("brainunit")
    current = np.linspace(0.0, 4.0, 16)
    plain = run_lif(lif_plain(), 0.1, current)
    quantities = run_lif(lif_with(bu), 0.1 * bu.ms, jnp.asarray(current) * bu.nA, duration=0.1 * bu.second)
    np.testing.assert_array_equal(quantities[1], plain[1])
    np.testing.assert_allclose(quantities[0], plain[0], rtol=1e-13, atol=1e-12)


def test_brian2_equations_object_is_accepted(device):
    eqs = b2.Equations(LIF)
    current = np.linspace(0.0, 4.0, 8)
    np.testing.assert_array_equal(
        run_lif(lif_with(b2, equations=eqs), 0.1, current)[2], run_lif(lif_plain(), 0.1, current)[2]
    )


def test_brian2_equations_are_written_back_as_given():
    """Units by name (not V, S/(m^2)), boolean and integer kept, flags, order as written."""
    from spikeforge.equations import equations_text

    eqs = b2.Equations(
        """
        dv/dt = (g*(E - v) + I)/C + 0.5*xi*tau**-0.5 : volt (unless refractory)
        I : amp
        g : siemens/metre**2
        flag : boolean
        k : integer (shared)
        s = 2*v : volt (constant over dt)
        dw/dt = -w/(10*ms) : 1
        """
    )
    assert equations_text(eqs).splitlines() == [
        "dv/dt = (g*(E - v) + I)/C + 0.5*xi*tau**-0.5 : volt (unless refractory)",
        "I : amp",
        "g : siemens / (metre ** 2)",
        "flag : boolean",
        "k : integer (shared)",
        "s = 2*v : volt (constant over dt)",
        "dw/dt = -w/(10*ms) : 1",
    ]


def test_model_class_values_may_be_quantities():
    class Leak(sf.Model):
        Default_States = dict(v=(-65 * b2.mV, -100 * b2.mV, 0 * b2.mV))
        Default_Params = dict(tau=10 * b2.ms, E=-70 * b2.mV)

        def ode(self, current=0.0):
            self.d_v = (self.E - self.v + current) / self.tau

    model = sf.NeuronModel.from_class(Leak)
    assert model.constants["tau"] == 10.0 and model.bounds["v"] == (-100.0, 0.0)
    state = model.init_state(3, dtype=jnp.float64)
    np.testing.assert_array_equal(np.asarray(state["v"]), -65.0)
    new, _ = model.run(state, dt=0.1 * b2.ms, steps=10)
    np.testing.assert_allclose(np.asarray(new["v"]), -70.0 + 5.0 * (1 - 0.01) ** 10, rtol=1e-12)


def test_inputs_and_source_take_quantities(device):
    model = sf.NeuronModel("dv/dt = (I - v)/tau : volt\nI : volt", constants=dict(tau=5 * b2.ms), method="euler")
    drive = np.random.default_rng(0).uniform(0, 2, (50, 4))
    state = model.init_state(4, dtype=jnp.float64)
    new, _ = model.run(state, dt=0.1 * b2.ms, steps=50, inputs={"I": drive * b2.mV})
    v = np.zeros(4)
    for row in drive:
        v = v + 0.1 * (row - v) / 5.0
    np.testing.assert_allclose(np.asarray(new["v"]), v, rtol=1e-12)
    assert model.source("c", dt=0.1 * b2.ms) == model.source("c", dt=0.1)


def test_population_rate_takes_a_duration_quantity():
    counts = jnp.asarray([10, 20, 30, 40], jnp.int32)
    np.testing.assert_allclose(float(sf.population_rate(counts, 0.5 * b2.second)), 50.0, rtol=1e-6)
    with pytest.raises(sf.UnitError, match="duration_ms"):
        sf.population_rate(counts, 0.5 * b2.mV)


# -- wrong dimensions ------------------------------------------------------------------------------


def test_wrong_dimensions_are_refused_with_the_argument_named():
    model = lif_plain()
    state = model.init_state(4, v=-65.0, I=1.0)
    with pytest.raises(sf.UnitError, match=r"dt: 5\. \* mvolt has the dimension voltage \(mV\).*expected time \(ms\)"):
        model.run(state, dt=5 * b2.mV, steps=10)
    with pytest.raises(sf.UnitError, match="duration: .* current .*expected time"):
        model.run(state, dt=0.1, duration=3 * b2.nA)
    with pytest.raises(sf.UnitError, match="refractory: .*voltage.*expected time"):
        sf.NeuronModel(LIF, threshold="v > -50", refractory=5 * b2.mV, constants=dict(v_rest=0, R=1, tau=1))
    candela = b2.Quantity(1.0, dim=b2.get_or_create_dimension(cd=1))
    with pytest.raises(sf.UnitError, match=r"constants\['tau'\].*does not cover"):
        sf.NeuronModel(LIF, constants=dict(v_rest=0, R=1, tau=candela))
    # UnitError is a ModelError (and a ValueError), naming the field.
    with pytest.raises(ValueError) as e:
        model.run(state, dt=5 * b2.mV, steps=10)
    assert isinstance(e.value, sf.ModelError) and e.value.field == "dt"
