"""Brian2's single-population examples run from their equation strings, unchanged.

The constants Brian takes from its namespace as quantities are given here as numbers in the
kernels' unit system (ms, mV, nA, uS, nF). Where Brian2 itself is installed, the same models run
in Brian2 (numpy target, same method) and the trajectories are compared; there the CUBA model is
given Brian2's own namespace, quantities and Equations object.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import spikeforge as sf

CUBA = """
dv/dt  = (ge+gi-(v-El))/taum : volt (unless refractory)
dge/dt = -ge/taue : volt
dgi/dt = -gi/taui : volt
"""
CUBA_CONSTANTS = dict(taum=20.0, taue=5.0, taui=10.0, Vt=-50.0, Vr=-60.0, El=-49.0)

# COBAHH, as in Brian2's examples/COBAHH.py: a line continued inside parentheses, exprel, units.
COBAHH = """
dv/dt = (gl*(El-v)+ge*(Ee-v)+gi*(Ei-v)-
         g_na*(m*m*m)*h*(v-ENa)-
         g_kd*(n*n*n*n)*(v-EK))/Cm : volt
dm/dt = alpha_m*(1-m)-beta_m*m : 1
dn/dt = alpha_n*(1-n)-beta_n*n : 1
dh/dt = alpha_h*(1-h)-beta_h*h : 1
dge/dt = -ge*(1./taue) : siemens
dgi/dt = -gi*(1./taui) : siemens
alpha_m = 0.32*(mV**-1)*4*mV/exprel((13*mV-v+VT)/(4*mV))/ms : Hz
beta_m = 0.28*(mV**-1)*5*mV/exprel((v-VT-40*mV)/(5*mV))/ms : Hz
alpha_h = 0.128*exp((17*mV-v+VT)/(18*mV))/ms : Hz
beta_h = 4./(1+exp((40*mV-v+VT)/(5*mV)))/ms : Hz
alpha_n = 0.032*(mV**-1)*5*mV/exprel((15*mV-v+VT)/(5*mV))/ms : Hz
beta_n = .5*exp((10*mV-v+VT)/(40*mV))/ms : Hz
"""
AREA_UM2 = 20000.0  # 20000 umetre**2
COBAHH_CONSTANTS = dict(
    Cm=1e3 * 1e-8 * AREA_UM2,  # 1 uF/cm2 * area, in nF
    gl=5e-5 * 1e6 * 1e-8 * AREA_UM2,  # 5e-5 S/cm2 * area, in uS
    El=-60.0,
    EK=-90.0,
    ENa=50.0,
    g_na=100e-3 * 1e6 * 1e-8 * AREA_UM2,  # 100 mS/cm2 * area
    g_kd=30e-3 * 1e6 * 1e-8 * AREA_UM2,  # 30 mS/cm2 * area
    VT=-63.0,
    taue=5.0,
    taui=10.0,
    Ee=0.0,
    Ei=-80.0,
)

IZHIKEVICH = """
dv/dt = (0.04/ms/mV)*v**2+(5/ms)*v+140*mV/ms-u+I : volt
du/dt = a*(b*v-u) : volt/second
I : volt/second
"""
IZH_CONSTANTS = dict(a=0.02 / 1.0, b=0.2 / 1.0, c=-65.0, d=2.0 * 1e-3 * 1000.0)

ADEX = """
dvm/dt = (gL*(EL - vm) + gL*DeltaT*exp((vm - VT)/DeltaT) + I - w)/C : volt
dw/dt = (a*(vm - EL) - w)/tauw : amp
I : amp
"""
ADEX_CONSTANTS = dict(C=0.281, gL=0.030, EL=-70.6, VT=-50.4, DeltaT=2.0, tauw=144.0, a=0.004, b=0.0805, Vr=-70.6)


def run(model, state, steps, dt=0.1, record=()):
    return jax.jit(lambda s: model.run(s, dt=dt, steps=steps, record=list(record)))(state)


def test_cuba_neurons(device):
    model = sf.NeuronModel(CUBA, threshold="v>Vt", reset="v = Vr", refractory="5*ms", constants=CUBA_CONSTANTS)
    n = 1000
    rng = np.random.default_rng()
    state = model.init_state(n, dtype=jnp.float64, v=-60 + 10 * rng.random(n), ge=rng.random(n), gi=-rng.random(n))
    new, out = run(model, state, 5000)
    # Without input the leak drives v towards El = -49 mV, above threshold: periodic firing with
    # a 5 ms refractory period. Period from the analytic solution of the membrane equation:
    period = 5.0 + 20.0 * np.log((-49.0 + 60.0) / (-49.0 + 50.0))
    assert np.all(np.abs(np.asarray(out.spike_count) - 500.0 / period) <= 2)


def test_cobahh_neuron_spikes_and_stays_finite(device):
    model = sf.NeuronModel(
        COBAHH, threshold="v>-20*mV", refractory="v>-20*mV", constants=COBAHH_CONSTANTS, method="rk4"
    )
    n = 64
    ge = np.linspace(0, 0.05, n)
    state = model.init_state(n, dtype=jnp.float64, v=-60.0, ge=ge, m=0.05, h=0.6, n=0.3)
    new, out = run(model, state, 2000, dt=0.01)
    assert np.isfinite(np.asarray(new["v"])).all()
    assert np.asarray(out.spike_count)[-1] >= 1


def test_izhikevich_regular_spiking(device):
    model = sf.NeuronModel(IZHIKEVICH, threshold="v>30*mV", reset="v = c; u += d", constants=IZH_CONSTANTS)
    state = model.init_state(8, dtype=jnp.float64, v=-65.0, u=-13.0, I=10.0)
    _, out = run(model, state, 10_000, dt=0.1)
    assert np.all(np.asarray(out.spike_count) > 5)


def test_adex_tonic_spiking(device):
    model = sf.NeuronModel(ADEX, threshold="vm>-40*mV", reset="vm=Vr; w+=b", constants=ADEX_CONSTANTS)
    state = model.init_state(8, dtype=jnp.float64, vm=-70.6, I=np.linspace(0.8, 1.5, 8))
    _, out = run(model, state, 5000, dt=0.1)
    counts = np.asarray(out.spike_count)
    assert counts[-1] > counts[0] > 0


@pytest.mark.parametrize("name", ["cuba", "cobahh"])
def test_matches_brian2(name):
    b2 = pytest.importorskip("brian2")
    from brian2 import NeuronGroup, StateMonitor, defaultclock, ms, mV, nF, nS, start_scope, uS
    from brian2 import run as b2run

    start_scope()
    b2.prefs.codegen.target = "numpy"
    defaultclock.dt = 0.01 * ms
    steps = 3000
    if name == "cuba":
        ns = {k: v * ms if k.startswith("tau") else v * mV for k, v in CUBA_CONSTANTS.items()}
        group = NeuronGroup(4, CUBA, threshold="v>Vt", reset="v = Vr", refractory=5 * ms, method="rk4", namespace=ns)
        init = dict(v=np.array([-60.0, -55.0, -52.0, -51.0]), ge=np.array([0.0, 1.0, 2.0, 0.5]), gi=np.zeros(4))
        group.v = init["v"] * mV
        group.ge = init["ge"] * mV
        # Brian2's own namespace and quantities, converted by their dimensions.
        model = sf.NeuronModel(
            b2.Equations(CUBA), threshold="v>Vt", reset="v = Vr", refractory=5 * ms, constants=ns, method="rk4"
        )
        state = model.init_state(4, dtype=jnp.float64, v=init["v"] * mV, ge=init["ge"] * mV, gi=init["gi"] * mV)
        scale = {"v": mV}
    else:
        c = COBAHH_CONSTANTS
        ns = dict(
            Cm=c["Cm"] * nF,
            gl=c["gl"] * uS,
            El=c["El"] * mV,
            EK=c["EK"] * mV,
            ENa=c["ENa"] * mV,
            g_na=c["g_na"] * uS,
            g_kd=c["g_kd"] * uS,
            VT=c["VT"] * mV,
            taue=c["taue"] * ms,
            taui=c["taui"] * ms,
            Ee=c["Ee"] * mV,
            Ei=c["Ei"] * mV,
        )
        group = NeuronGroup(4, COBAHH, threshold="v>-20*mV", refractory="v>-20*mV", method="rk4", namespace=ns)
        ge = np.array([0.0, 20.0, 40.0, 60.0])  # nS
        group.v = -60 * mV
        group.m, group.h, group.n = 0.05, 0.6, 0.3
        group.ge = ge * nS
        model = sf.NeuronModel(COBAHH, threshold="v>-20*mV", refractory="v>-20*mV", constants=c, method="rk4")
        state = model.init_state(4, dtype=jnp.float64, v=-60.0, m=0.05, h=0.6, n=0.3, ge=ge * 1e-3)
        scale = {"v": mV}
    mon = StateMonitor(group, "v", record=True)
    b2run(steps * defaultclock.dt)
    new, out = model.run(state, dt=defaultclock.dt, duration=steps * defaultclock.dt, record=["v"])
    ours = np.asarray(out.traces["v"])
    theirs = np.asarray(mon.v / scale["v"]).T
    assert np.isfinite(ours).all() and np.isfinite(theirs).all()
    assert np.ptp(theirs) > 5, "the comparison must cover real dynamics"
    np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=1e-6)
