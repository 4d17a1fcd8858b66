//! Runs a network's generated C kernel without XLA: the buffers of the layout allocated and
//! started the way `spikeforge_network_run` starts them (`handlers::network_run::starts`), the C
//! entry called, the results read back as f64 (reals, int32 and bools alike). The tests compare
//! them with float64 references written independently of the generated code.

#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Arc;

use spikeforge::codegen::network_kernel::{generate, C_ENTRY};
use spikeforge::codegen::network_layout::{layout, Dim, NetArg, NetLayout};
use spikeforge::codegen::Dialect;
use spikeforge::handlers::network_run::{starts, Start};
use spikeforge::runtime::cpu::{load, CpuCompileOptions, CpuModule};
use spikeforge::spec::NetworkSpec;
use spikeforge::step::network::plan;
use spikeforge::types::ElemType;

type Entry =
    unsafe extern "C" fn(i64, i64, *const i64, *const *mut c_void, *const *mut c_void, *mut i32);

/// The step counter of a neuron that never spiked (as the Python shim starts it).
pub const NEVER_SPIKED: f64 = -1e9;

/// One buffer: its element type and its elements, kept as 8-byte words for alignment.
#[derive(Clone, Debug)]
pub struct Buf {
    pub elem: ElemType,
    pub len: usize,
    words: Vec<u64>,
}

impl Buf {
    pub fn zeros(elem: ElemType, len: usize) -> Buf {
        let bytes = elem.size() * len;
        Buf {
            elem,
            len,
            words: vec![0; bytes.div_ceil(8).max(1)],
        }
    }

    pub fn from_f64(elem: ElemType, values: &[f64]) -> Buf {
        let mut b = Buf::zeros(elem, values.len());
        for (k, v) in values.iter().enumerate() {
            b.set(k, *v);
        }
        b
    }

    fn bytes(&mut self) -> &mut [u8] {
        let n = self.elem.size() * self.len;
        // SAFETY: `words` holds at least `n` bytes.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), n) }
    }

    pub fn ptr(&mut self) -> *mut c_void {
        self.words.as_mut_ptr().cast()
    }

    pub fn set(&mut self, k: usize, v: f64) {
        let size = self.elem.size();
        let elem = self.elem;
        let at = &mut self.bytes()[k * size..(k + 1) * size];
        match elem {
            ElemType::F32 => at.copy_from_slice(&(v as f32).to_ne_bytes()),
            ElemType::F64 => at.copy_from_slice(&v.to_ne_bytes()),
            ElemType::I32 => at.copy_from_slice(&(v as i32).to_ne_bytes()),
            ElemType::Bool => at[0] = u8::from(v != 0.0),
            other => panic!("no {other} buffers in networks"),
        }
    }

    pub fn get(&self, k: usize) -> f64 {
        let size = self.elem.size();
        // SAFETY: `words` holds the buffer's bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len * size)
        };
        let at = &bytes[k * size..(k + 1) * size];
        match self.elem {
            ElemType::F32 => f32::from_ne_bytes(at.try_into().unwrap()) as f64,
            ElemType::F64 => f64::from_ne_bytes(at.try_into().unwrap()),
            ElemType::I32 => i32::from_ne_bytes(at.try_into().unwrap()) as f64,
            ElemType::Bool => f64::from(at[0]),
            other => panic!("no {other} buffers in networks"),
        }
    }

    pub fn values(&self) -> Vec<f64> {
        (0..self.len).map(|k| self.get(k)).collect()
    }

    pub fn fill_byte(&mut self, byte: u8) {
        self.bytes().fill(byte);
    }
}

/// A network compiled to C and loaded.
pub struct Compiled {
    pub spec: NetworkSpec,
    pub layout: NetLayout,
    pub source: String,
    module: Arc<CpuModule>,
    /// `every` of each state monitor, by name.
    every: HashMap<String, usize>,
}

/// `owner.name` of a layout entry.
pub fn key(a: &NetArg) -> String {
    if a.owner.is_empty() {
        a.name.clone()
    } else {
        format!("{}.{}", a.owner, a.name)
    }
}

pub fn compile(json: &str) -> Compiled {
    let spec = NetworkSpec::from_json(json).expect("the test spec reads");
    let net = spikeforge::frontend::network::lower(&spec).unwrap_or_else(|d| panic!("{d}"));
    let plan = plan(&net);
    let layout = layout(&net, &plan);
    let source = generate(&net, &plan, &layout, Dialect::C).source;
    let module =
        load(&source, C_ENTRY, &CpuCompileOptions::default()).expect("the C kernel builds");
    let every = net
        .monitors
        .iter()
        .filter_map(|m| match m {
            spikeforge::ir::network::MonitorIr::State { name, every, .. } => {
                Some((name.clone(), *every as usize))
            }
            _ => None,
        })
        .collect();
    Compiled {
        spec,
        layout,
        source,
        module,
        every,
    }
}

/// The state of `nb` networks: every input, by `owner.name`.
#[derive(Clone, Debug)]
pub struct State {
    pub nb: usize,
    pub bufs: HashMap<String, Buf>,
}

impl State {
    pub fn get(&self, key: &str) -> Vec<f64> {
        self.bufs
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in the state"))
            .values()
    }
}

/// What a run returned: every result, by `owner.name`.
pub struct Results {
    pub bufs: HashMap<String, Buf>,
}

impl Results {
    pub fn get(&self, key: &str) -> Vec<f64> {
        self.bufs
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in the results"))
            .values()
    }
}

impl Compiled {
    /// Elements per batch member of `a` (with `n_syn` synapses for per-synapse shapes).
    fn len_of(&self, a: &NetArg, n_syn: usize, steps: usize) -> usize {
        a.shape
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => *n,
                Dim::Sized("n_syn") => n_syn,
                Dim::Sized("records") => {
                    let every = self.every[&a.owner];
                    steps.div_ceil(every)
                }
                Dim::Sized(_) => steps,
            })
            .product()
    }

    fn n_syn_of(&self, state_or_values: &HashMap<String, usize>, owner: &str) -> usize {
        state_or_values.get(owner).copied().unwrap_or(0)
    }

    /// A fresh state: `values` by `owner.name` (each repeated over the batch when it has one
    /// member's length), the rest zero except `lastspike_step` (never spiked) and
    /// `not_refractory` (true). Per-synapse sizes come from the `targets` given.
    pub fn state(&self, nb: usize, values: &[(&str, Vec<f64>)]) -> State {
        let given: HashMap<&str, &Vec<f64>> = values.iter().map(|(k, v)| (*k, v)).collect();
        let mut n_syn: HashMap<String, usize> = HashMap::new();
        for a in &self.layout.inputs {
            if a.name == "targets" {
                let t = given.get(key(a).as_str()).map_or(0, |v| v.len());
                n_syn.insert(a.owner.clone(), t);
            }
        }
        let mut bufs = HashMap::new();
        for a in &self.layout.inputs {
            let per = self.len_of(a, self.n_syn_of(&n_syn, &a.owner), 1);
            let total = if a.batched { per * nb } else { per };
            let k = key(a);
            let mut b = Buf::zeros(a.elem, total);
            match given.get(k.as_str()) {
                Some(v) if v.len() == total => (0..total).for_each(|i| b.set(i, v[i])),
                Some(v) if v.len() == per => (0..total).for_each(|i| b.set(i, v[i % per])),
                Some(v) => panic!("{k}: {} values for {per} per member", v.len()),
                None if a.name == "lastspike_step" => {
                    (0..total).for_each(|i| b.set(i, NEVER_SPIKED))
                }
                None if a.name == "not_refractory" => (0..total).for_each(|i| b.set(i, 1.0)),
                None => {}
            }
            bufs.insert(k, b);
        }
        State { nb, bufs }
    }

    /// The buffers of a run as `spikeforge_network_run` starts them: the inputs, the results
    /// (poisoned with 0xFF, then started: copies of the state, zeroed counters, -1 monitor
    /// entries, a zeroed work buffer), and the dims of the C entry (`steps`, then each
    /// projection's synapses).
    pub fn prepare(&self, state: &State, steps: usize) -> Prepared {
        let nb = state.nb;
        let inputs: Vec<Buf> = self
            .layout
            .inputs
            .iter()
            .map(|a| state.bufs[&key(a)].clone())
            .collect();
        let n_syn: HashMap<String, usize> = self
            .layout
            .inputs
            .iter()
            .zip(&inputs)
            .filter(|(a, _)| a.name == "targets")
            .map(|(a, b)| (a.owner.clone(), b.len))
            .collect();
        let mut outs: Vec<Buf> = self
            .layout
            .outputs
            .iter()
            .chain(&self.layout.scratch)
            .map(|a| {
                let per = self.len_of(a, self.n_syn_of(&n_syn, &a.owner), steps);
                let mut b = Buf::zeros(a.elem, if a.batched { per * nb } else { per });
                b.fill_byte(0xFF);
                b
            })
            .collect();
        for (r, start) in starts(&self.layout).iter().enumerate() {
            match start {
                Start::Copy(k) => outs[r] = inputs[*k].clone(),
                Start::Fill(byte) => outs[r].fill_byte(*byte),
                Start::Written => {}
            }
        }
        let mut dims = vec![steps as i64];
        for a in &self.layout.inputs {
            if a.name == "targets" {
                dims.push(n_syn[&a.owner] as i64);
            }
        }
        Prepared { inputs, outs, dims }
    }

    /// The new state and the results, from a run's results.
    pub fn finish(&self, state: &State, steps: usize, outs: Vec<Buf>) -> (State, Results) {
        let mut next = state.clone();
        let mut by_key = HashMap::new();
        let results = self.layout.outputs.iter().chain(&self.layout.scratch);
        for (a, b) in results.zip(outs) {
            if self
                .layout
                .inputs
                .iter()
                .any(|i| i.owner == a.owner && i.name == a.name)
            {
                next.bufs.insert(key(a), b.clone());
            }
            by_key.insert(key(a), b);
        }
        let t = next.bufs.get_mut("t_step").expect("t_step");
        for m in 0..state.nb {
            let v = t.get(m);
            t.set(m, v + steps as f64);
        }
        (next, Results { bufs: by_key })
    }

    /// Runs `steps` steps of the C kernel; returns the new state and the results.
    pub fn run(&self, state: &State, steps: usize) -> (State, Results) {
        let Prepared {
            mut inputs,
            mut outs,
            dims,
        } = self.prepare(state, steps);
        let in_ptrs: Vec<*mut c_void> = inputs.iter_mut().map(Buf::ptr).collect();
        let n_out = self.layout.outputs.len();
        let mut out_ptrs: Vec<*mut c_void> = outs.iter_mut().map(Buf::ptr).collect();
        let work = out_ptrs[n_out].cast::<i32>();
        out_ptrs.truncate(n_out);
        // SAFETY: the generated entry has this signature; the buffers have the layout's sizes.
        unsafe {
            let entry: Entry = self.module.entry::<Entry>();
            entry(
                0,
                state.nb as i64,
                dims.as_ptr(),
                in_ptrs.as_ptr(),
                out_ptrs.as_ptr(),
                work,
            );
        }
        self.finish(state, steps, outs)
    }
}

/// A run's buffers before it runs (see [`Compiled::prepare`]).
pub struct Prepared {
    pub inputs: Vec<Buf>,
    /// The outputs, then the work buffer.
    pub outs: Vec<Buf>,
    pub dims: Vec<i64>,
}

impl Buf {
    /// The buffer's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: `words` holds at least the buffer's bytes.
        unsafe {
            std::slice::from_raw_parts(
                self.words.as_ptr().cast::<u8>(),
                self.elem.size() * self.len,
            )
        }
    }

    /// Replaces the buffer's bytes (the same length).
    pub fn set_bytes(&mut self, bytes: &[u8]) {
        self.bytes().copy_from_slice(bytes);
    }
}

/// The (step, index) pairs of a spike monitor's results for member `b`, sorted.
pub fn spikes(r: &Results, monitor: &str, capacity: usize, b: usize) -> Vec<(i64, i64)> {
    let count = r.get(&format!("{monitor}.count"))[b] as usize;
    let i = r.get(&format!("{monitor}.i"));
    let t = r.get(&format!("{monitor}.t_step"));
    let mut out: Vec<(i64, i64)> = (0..count)
        .map(|k| (t[b * capacity + k] as i64, i[b * capacity + k] as i64))
        .collect();
    out.sort_unstable();
    out
}

/// A small deterministic generator of uniforms in [0, 1) (a 64-bit LCG), for test networks.
pub fn uniforms(seed: u64) -> impl FnMut() -> f64 {
    let mut s = seed;
    move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 11) as f64 / (1u64 << 53) as f64
    }
}
