//! A model class with a threshold, a reset and a refractory period given beside it (as a network
//! needs of any neuron group): the spec is lowered, its C kernel generated, compiled and run, and
//! every spike count, final state and trace is compared with a float64 reference written here
//! by hand in Brian2's order (refractoriness from the values at the start of the step, the
//! update, the threshold on the updated values, the reset on the elements that spiked).

#[path = "common/c_kernel.rs"]
mod c_kernel;

use spikeforge::codegen::{generate_from_spec, Dialect, Role};
use spikeforge::runtime::cpu::{self, CpuCompileOptions};
use spikeforge::spec::{Method, ModelClassSpec, ModelSpec, Refractory};
use spikeforge::types::ElemType;

const TAU: f64 = 10.0;
const DT: f64 = 0.1;
const STEPS: usize = 400;
const REC_EVERY: usize = 7;
/// The step of the last spike of an element that never spiked, in the reference.
const NEVER: i32 = i32::MIN / 2;

/// `v` relaxes to the per-neuron input `I`; `kicks` (an internal) counts the resets.
fn class_spec(method: Method, refractory: Refractory) -> ModelSpec {
    let source = "def ode(self, I=0.):\n    self.d_v = (I - self.v) / self.tau\n";
    let class = ModelClassSpec::new("Relax", source)
        .state("v", None, None)
        .internals(["kicks"])
        .params(["tau"]);
    ModelSpec::from_class(class, DT)
        .constants([("tau", TAU), ("I", 0.0)])
        .per_neuron(["I"])
        .threshold("v > 1")
        .reset("v = 0.2\nkicks += 1")
        .refractory(refractory)
        .method(method)
        .dtype(ElemType::F64)
        .record(["v"])
}

/// What the kernel and the reference give back.
#[derive(Debug)]
struct Outcome {
    v: Vec<f64>,
    kicks: Vec<f64>,
    spikes: Vec<i32>,
    /// `[record][neuron]`
    trace: Vec<Vec<f64>>,
}

fn run_kernel(spec: &ModelSpec, inputs: &[f64]) -> Outcome {
    let n = inputs.len();
    let kernel = generate_from_spec(spec, Dialect::C).unwrap_or_else(|d| panic!("{}", d.render()));
    let module = cpu::load(&kernel.source, kernel.entry, &CpuCompileOptions::default())
        .unwrap_or_else(|e| panic!("{e}\n{}", kernel.source));
    let n_rec = STEPS.div_ceil(REC_EVERY);
    // Every buffer as 8-byte words, so that one Vec type serves every element type.
    let mut ins: Vec<Vec<u64>> = Vec::new();
    for a in &kernel.layout.inputs {
        ins.push(match (a.role, a.name.as_str()) {
            (Role::State, _) => vec![0f64.to_bits(); n],
            (Role::PerNeuronConstant, "I") => inputs.iter().map(|x| x.to_bits()).collect(),
            // Times are float64 (as int32 word pairs): never spiked, and the start at t = 0.
            (Role::Lastspike, _) => vec![f64::NEG_INFINITY.to_bits(); n],
            (Role::NotRefractory, _) => words_u8(&vec![1u8; n]),
            (Role::Time, _) => vec![0f64.to_bits()],
            other => panic!("unexpected input {other:?}"),
        });
    }
    let mut outs: Vec<Vec<u64>> = kernel
        .layout
        .outputs
        .iter()
        .map(|a| vec![u64::MAX; if a.role == Role::Trace { n * n_rec } else { n }])
        .collect();
    let dims = [n as i64, STEPS as i64, REC_EVERY as i64, n_rec as i64];
    c_kernel::run_c_kernel(&module, n, &dims, &mut ins, &mut outs);
    let out = |name: &str| {
        let k = kernel
            .layout
            .outputs
            .iter()
            .position(|a| a.name == name)
            .unwrap_or_else(|| panic!("no output {name}"));
        outs[k].clone()
    };
    let f64s = |w: Vec<u64>| -> Vec<f64> { w.into_iter().map(f64::from_bits).collect() };
    let counts = out("spike_count");
    // SAFETY: the kernel wrote n int32 values at the start of the buffer.
    let spikes = unsafe { std::slice::from_raw_parts(counts.as_ptr().cast::<i32>(), n) }.to_vec();
    let trace = f64s(out("trace:v"));
    Outcome {
        v: f64s(out("v"))[..n].to_vec(),
        kicks: f64s(out("kicks"))[..n].to_vec(),
        spikes,
        trace: trace.chunks(n).map(<[f64]>::to_vec).collect(),
    }
}

fn words_u8(values: &[u8]) -> Vec<u64> {
    let mut w = vec![0u64; values.len().div_ceil(8)];
    // SAFETY: w holds at least values.len() bytes.
    unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), w.as_mut_ptr().cast(), values.len()) };
    w
}

/// The same run in float64, one neuron at a time.
fn reference(method: Method, refractory: &Refractory, inputs: &[f64]) -> Outcome {
    let n = inputs.len();
    let n_rec = STEPS.div_ceil(REC_EVERY);
    let mut out = Outcome {
        v: vec![0.0; n],
        kicks: vec![0.0; n],
        spikes: vec![0; n],
        trace: vec![vec![0.0; n]; n_rec],
    };
    for (k, &input) in inputs.iter().enumerate() {
        let f = |v: f64| (input - v) / TAU;
        let (mut v, mut kicks, mut lastspike, mut not_refractory) = (0.0f64, 0.0, NEVER, true);
        for s in 0..STEPS {
            let t_step = s as i32;
            if s % REC_EVERY == 0 {
                out.trace[s / REC_EVERY][k] = v;
            }
            let active = match refractory {
                // timestep(0.5, 0.1) = 5 steps.
                Refractory::Duration(_) => lastspike <= t_step - 5,
                // Refractory after a spike until `v < 0.5` stops holding.
                Refractory::Code(_) => {
                    not_refractory = not_refractory || v >= 0.5;
                    not_refractory
                }
            };
            v = match method {
                Method::Euler => v + DT * f(v),
                // Linear with constant coefficients: the exact solution over one step.
                Method::Exact => input + (v - input) * (-DT / TAU).exp(),
                other => panic!("no reference for {other:?}"),
            };
            if v > 1.0 && active {
                v = 0.2;
                kicks += 1.0;
                lastspike = t_step;
                not_refractory = false;
                out.spikes[k] += 1;
            }
        }
        out.v[k] = v;
        out.kicks[k] = kicks;
    }
    out
}

fn assert_close(got: &[f64], want: &[f64], what: &str) {
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-12,
            "{what}[{k}]: kernel {g}, reference {w}"
        );
    }
}

#[test]
fn a_model_class_spikes_resets_and_stays_refractory_as_brian2_does() {
    // Inputs below and above the threshold, some far above (refractoriness then decides the rate).
    let inputs: Vec<f64> = (0..24).map(|k| 0.5 + 0.25 * k as f64).collect();
    for method in [Method::Euler, Method::Exact] {
        for refractory in [
            Refractory::Duration(0.5),
            Refractory::Code("v < 0.5".into()),
        ] {
            let spec = class_spec(method, refractory.clone());
            let got = run_kernel(&spec, &inputs);
            let want = reference(method, &refractory, &inputs);
            let case = format!("{method:?}, {refractory:?}");
            assert_eq!(got.spikes, want.spikes, "{case}");
            assert!(
                want.spikes.iter().filter(|c| **c > 3).count() > 10,
                "{case}: {want:?}"
            );
            assert_close(&got.v, &want.v, &format!("{case}: v"));
            assert_close(&got.kicks, &want.kicks, &format!("{case}: kicks"));
            for (r, (g, w)) in got.trace.iter().zip(&want.trace).enumerate() {
                assert_close(g, w, &format!("{case}: trace {r}"));
            }
        }
    }
}

#[test]
fn events_beside_a_class_are_checked_like_any_other() {
    let spec = class_spec(Method::Euler, Refractory::Duration(0.5));
    let bad = |f: &dyn Fn(ModelSpec) -> ModelSpec| {
        spikeforge::frontend::lower(&f(spec.clone())).unwrap_err()
    };
    let d = bad(&|s| s.threshold("vv > 1"));
    assert_eq!(d.field, "threshold");
    assert!(d.render().contains("did you mean 'v'?"), "{}", d.render());
    let d = bad(&|s| s.reset("tau = 1"));
    assert!(
        d.message
            .contains("cannot assign to 'tau': it is a constant"),
        "{}",
        d.render()
    );
    let d = bad(&|s| s.threshold("v + 1"));
    assert!(d.message.contains("must be a condition"), "{}", d.render());
    // Reading `lastspike` keeps its bookkeeping, whatever the refractory period is.
    let reads = spec
        .clone()
        .threshold("v > 1 and t - lastspike > 2")
        .refractory("v < 0.5");
    let ir = spikeforge::frontend::lower(&reads).unwrap_or_else(|d| panic!("{}", d.render()));
    assert!(ir.bookkeeping.lastspike && ir.bookkeeping.lastspike_value);
    generate_from_spec(&reads, Dialect::C).unwrap();
}
