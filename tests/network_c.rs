//! The network kernels in C (the CPU path), run without XLA (tests/common/network_harness.rs),
//! against float64 references written here independently of the generated code: every arrival
//! step of a hand-built graph (delays of 0, 1 step, non-integer multiples of dt, multapses, the
//! longest supported), a reset that overwrites what a zero-delay delivery wrote, a small
//! current-based network stepped in Brian2's order, split runs, batches, monitors, Poisson
//! groups and inputs (exact binomial counts), TimedArrays and spike generators with a period.

#[path = "common/network_harness.rs"]
mod harness;

use harness::{compile, spikes, NEVER_SPIKED};
use serde_json::json;
use std::collections::BTreeMap;

/// Brian2's rounding of a delay to steps.
fn delay_steps(d: f64, dt: f64) -> i64 {
    (d / dt + 0.5) as i64
}

/// Brian2's `timestep`: the step a time falls in.
fn timestep(t: f64, dt: f64) -> i64 {
    ((t + 1e-3 * dt) / dt) as i64
}

#[test]
fn every_arrival_step_of_a_hand_built_graph() {
    let dt = 0.1;
    let longest = 65_535i64;
    let spec = json!({
        "dt": dt, "dtype": "float64",
        "groups": [
            {"kind": "spike_generator", "name": "G", "n": 3, "n_spikes": 3},
            {"kind": "neuron", "name": "T", "n": 4, "model": {"equations": "dy/dt = 0/ms : 1\nx : 1"}}
        ],
        "projections": [
            {"name": "Long", "source": "G", "source_range": [2, 3], "target": "T", "on_pre": "x += 1000",
             "delay": longest as f64 * dt},
            {"name": "S", "source": "G", "target": "T", "model": "w : 1\nd : second",
             "on_pre": "x_post += w", "delay": "d", "max_delay": 0.6}
        ],
        "monitors": [{"kind": "state", "name": "xm", "source": "T", "variables": ["x"], "record": true}]
    });
    let c = compile(&spec.to_string());
    // (pre, post, delay, weight): 0 steps; 1 step; 1.49 and 1.51 steps (a multapse of two
    // delays); 3.5 steps twice (0.35/0.1 is 3.4999..., so 3 as in Brian2: a multapse of one delay).
    let synapses = [
        (0usize, 0usize, 0.0, 1.0),
        (0, 1, 0.1, 2.0),
        (0, 2, 0.149, 4.0),
        (0, 2, 0.151, 8.0),
        (1, 3, 0.35, 16.0),
        (1, 3, 0.35, 32.0),
    ];
    // Generator spikes: G2 at t = 0, G0 at t = 0.2, G1 at t = 0.5 (sorted by step).
    let generated = [(2usize, 0.0), (0, 0.2), (1, 0.5)];
    let steps_of_spikes: Vec<f64> = generated
        .iter()
        .map(|(_, t)| timestep(*t, dt) as f64)
        .collect();
    // CSR by pre, rows sorted by delay step, and the delay buckets.
    let b = delay_steps(0.6, dt) as usize + 1;
    let mut rows: Vec<Vec<(usize, f64, f64)>> = vec![Vec::new(); 3];
    for (pre, post, d, w) in synapses {
        rows[pre].push((post, d, w));
    }
    let (mut offsets, mut targets, mut w, mut d, mut buckets) =
        (vec![0.0], vec![], vec![], vec![], vec![]);
    for row in &mut rows {
        row.sort_by_key(|(_, d, _)| delay_steps(*d, dt));
        let start = targets.len();
        for step in 0..b {
            buckets.push(
                (start
                    + row
                        .iter()
                        .filter(|(_, d, _)| (delay_steps(*d, dt) as usize) < step)
                        .count()) as f64,
            );
        }
        for (post, dd, ww) in row.iter() {
            targets.push(*post as f64);
            d.push(*dd);
            w.push(*ww);
        }
        offsets.push(targets.len() as f64);
    }
    buckets.push(targets.len() as f64);
    let state = c.state(
        1,
        &[
            (
                "G.indices",
                generated.iter().map(|(i, _)| *i as f64).collect(),
            ),
            ("G.steps", steps_of_spikes.clone()),
            ("Long.row_offsets", vec![0.0, 1.0]),
            ("Long.targets", vec![2.0]),
            ("S.row_offsets", offsets),
            ("S.targets", targets),
            ("S.delay_buckets", buckets),
            ("S.w", w),
            ("S.d", d),
        ],
    );
    let steps = longest as usize + 2;
    let (_, r) = c.run(&state, steps);
    // Every arrival: spike step + delay steps.
    let mut arrivals: Vec<(i64, usize, f64)> = Vec::new();
    for (k, (pre, t)) in generated.iter().enumerate() {
        let _ = k;
        let step = timestep(*t, dt);
        for (p, post, dd, ww) in synapses.iter().map(|s| (s.0, s.1, s.2, s.3)) {
            if p == *pre {
                arrivals.push((step + delay_steps(dd, dt), post, ww));
            }
        }
        if *pre == 2 {
            arrivals.push((step + longest, 2, 1000.0));
        }
    }
    let x = r.get("xm.x");
    for k in 0..steps {
        for j in 0..4 {
            // Recorded at the start of step k: every event that arrived in an earlier step.
            let want: f64 = arrivals
                .iter()
                .filter(|(a, post, _)| *a < k as i64 && *post == j)
                .map(|(_, _, w)| w)
                .sum();
            assert_eq!(x[k * 4 + j], want, "x[{j}] at the start of step {k}");
        }
    }
    assert_eq!(
        x[(longest as usize) * 4 + 2],
        4.0 + 8.0,
        "the longest delay arrives at its step"
    );
    assert_eq!(x[(longest as usize + 1) * 4 + 2], 1012.0);
}

#[test]
fn a_reset_overwrites_what_a_zero_delay_delivery_wrote() {
    let spec = json!({
        "dt": 0.1, "dtype": "float64",
        "groups": [
            {"kind": "spike_generator", "name": "G", "n": 1, "n_spikes": 2},
            {"kind": "neuron", "name": "T", "n": 1,
             "model": {"equations": "dc/dt = 1/ms : 1\nv : 1", "threshold": "c > 0.45",
                       "reset": "c = 0\nv = -1", "method": "euler"}}
        ],
        "projections": [
            {"name": "Now", "source": "G", "target": "T", "on_pre": "v += 10"},
            {"name": "Next", "source": "G", "target": "T", "on_pre": "v += 100", "delay": 0.1}
        ],
        "monitors": [{"kind": "state", "name": "vm", "source": "T", "variables": ["v", "c"], "record": true},
                     {"kind": "spike", "name": "sp", "source": "T", "capacity": 10}]
    });
    let c = compile(&spec.to_string());
    // T spikes at steps 4 and 9 (c reaches 0.5); G spikes at steps 4 and 7.
    let state = c.state(
        1,
        &[
            ("G.indices", vec![0.0, 0.0]),
            ("G.steps", vec![4.0, 7.0]),
            ("Now.row_offsets", vec![0.0, 1.0]),
            ("Now.targets", vec![0.0]),
            ("Next.row_offsets", vec![0.0, 1.0]),
            ("Next.targets", vec![0.0]),
        ],
    );
    let (_, r) = c.run(&state, 12);
    let v = r.get("vm.v");
    // Step 4: +10 delivered, then the reset assigns -1. Step 5: +100. Step 7: +10. Step 8: +100.
    // Step 9: the reset assigns -1 again.
    let want = [
        0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 99.0, 99.0, 109.0, 209.0, -1.0, -1.0,
    ];
    assert_eq!(v, want);
    assert_eq!(spikes(&r, "sp", 10, 0), vec![(4, 0), (9, 0)]);
}

/// A small current-based network (Euler, refractory, per-synapse weights, homogeneous delay,
/// excitatory and inhibitory projections from subgroups) stepped in Brian2's order in f64.
struct Cuba {
    n: usize,
    n_e: usize,
    rows: Vec<Vec<(usize, f64)>>,
}

const CUBA_EQ: &str = "dv/dt = (ge + gi - (v - El))/taum : volt (unless refractory)\ndge/dt = -ge/taue : volt\ndgi/dt = -gi/taui : volt";

impl Cuba {
    fn new(n: usize, n_e: usize, p: f64, seed: u64) -> Cuba {
        let mut next = harness::uniforms(seed);
        let rows = (0..n)
            .map(|i| {
                let mut row = Vec::new();
                for j in 0..n {
                    if next() < p {
                        let w = if i < n_e {
                            1.5 + next()
                        } else {
                            -(4.0 + 4.0 * next())
                        };
                        row.push((j, w));
                        if next() < 0.05 {
                            row.push((j, w * 0.5)); // a multapse
                        }
                    }
                }
                row
            })
            .collect();
        Cuba { n, n_e, rows }
    }

    fn spec(&self, deterministic: bool) -> serde_json::Value {
        json!({
            "dt": 0.1, "dtype": "float64", "deterministic": deterministic,
            "groups": [{"kind": "neuron", "name": "P", "n": self.n,
                "model": {"equations": CUBA_EQ, "threshold": "v > Vt", "reset": "v = Vr", "refractory": 5.0,
                          "method": "euler",
                          "constants": {"El": -49.0, "taum": 20.0, "taue": 5.0, "taui": 10.0, "Vt": -50.0, "Vr": -60.0}}}],
            "projections": [
                {"name": "Ce", "source": "P", "source_range": [0, self.n_e], "target": "P", "model": "w : volt",
                 "on_pre": "ge += w", "delay": 0.2},
                {"name": "Ci", "source": "P", "source_range": [self.n_e, self.n], "target": "P", "model": "w : volt",
                 "on_pre": "gi += w", "delay": 0.2}
            ],
            "monitors": [{"kind": "spike", "name": "sp", "source": "P", "capacity": 100000},
                         {"kind": "rate", "name": "rate", "source": "P"}]
        })
    }

    fn csr(&self, range: std::ops::Range<usize>) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (mut off, mut t, mut w) = (vec![0.0], vec![], vec![]);
        for i in range {
            for (j, ww) in &self.rows[i] {
                t.push(*j as f64);
                w.push(*ww);
            }
            off.push(t.len() as f64);
        }
        (off, t, w)
    }

    /// The reference: returns (spikes (step, i), final v).
    fn reference(&self, v0: &[f64], steps: usize) -> (Vec<(i64, i64)>, Vec<f64>) {
        let (dt, el, taum, taue, taui, vt, vr) = (0.1, -49.0, 20.0, 5.0, 10.0, -50.0, -60.0);
        let (delay, refractory) = (2usize, 50i64);
        let n = self.n;
        let mut v = v0.to_vec();
        let mut ge = vec![0.0; n];
        let mut gi = vec![0.0; n];
        let mut last = vec![i64::MIN / 2; n];
        let mut history: Vec<Vec<usize>> = Vec::new();
        let mut out = Vec::new();
        for k in 0..steps as i64 {
            let mut fired = Vec::new();
            for i in 0..n {
                let active = last[i] <= k - refractory;
                let dv = (ge[i] + gi[i] - (v[i] - el)) / taum;
                let nv = if active { v[i] + dt * dv } else { v[i] };
                ge[i] += dt * (-ge[i] / taue);
                gi[i] += dt * (-gi[i] / taui);
                v[i] = nv;
                if active && v[i] > vt {
                    fired.push(i);
                    last[i] = k;
                    v[i] = vr;
                    out.push((k, i as i64));
                }
            }
            history.push(fired);
            if k as usize >= delay {
                for &i in &history[k as usize - delay] {
                    for (j, w) in &self.rows[i] {
                        if i < self.n_e {
                            ge[*j] += w;
                        } else {
                            gi[*j] += w;
                        }
                    }
                }
            }
        }
        (out, v)
    }
}

fn cuba_state(c: &harness::Compiled, net: &Cuba, v0: &[f64]) -> harness::State {
    let (eo, et, ew) = net.csr(0..net.n_e);
    let (io, it, iw) = net.csr(net.n_e..net.n);
    c.state(
        1,
        &[
            ("P.v", v0.to_vec()),
            ("Ce.row_offsets", eo),
            ("Ce.targets", et),
            ("Ce.w", ew),
            ("Ci.row_offsets", io),
            ("Ci.targets", it),
            ("Ci.w", iw),
        ],
    )
}

#[test]
fn a_current_based_network_matches_its_float64_reference() {
    let net = Cuba::new(60, 48, 0.15, 7);
    let v0: Vec<f64> = (0..net.n)
        .map(|i| -60.0 + 10.0 * ((i * 37 % 60) as f64 / 60.0))
        .collect();
    let steps = 3000;
    let (want, v_want) = net.reference(&v0, steps);
    assert!(
        want.len() > 200,
        "the network is active: {} spikes",
        want.len()
    );
    for deterministic in [false, true] {
        let c = compile(&net.spec(deterministic).to_string());
        let (s, r) = c.run(&cuba_state(&c, &net, &v0), steps);
        assert_eq!(r.get("sp.dropped"), [0.0]);
        let got = spikes(&r, "sp", 100000, 0);
        assert_eq!(got.len(), want.len());
        assert_eq!(got, want, "deterministic: {deterministic}");
        for (a, b) in s.get("P.v").iter().zip(&v_want) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
        // The population rate: spikes of the step / (N dt).
        let rate = r.get("rate.rate");
        for (k, x) in rate.iter().enumerate() {
            let count = want.iter().filter(|(t, _)| *t == k as i64).count();
            assert!((x - count as f64 / (60.0 * 0.1)).abs() < 1e-12);
        }
    }
}

#[test]
fn two_runs_of_half_the_steps_are_one_run() {
    let net = Cuba::new(40, 32, 0.2, 3);
    let v0: Vec<f64> = (0..net.n)
        .map(|i| -58.0 + 9.0 * ((i * 13 % 40) as f64 / 40.0))
        .collect();
    let c = compile(&net.spec(false).to_string());
    let start = cuba_state(&c, &net, &v0);
    let (whole, r) = c.run(&start, 2000);
    let (half, r1) = c.run(&start, 1000);
    let (twice, r2) = c.run(&half, 1000);
    let mut split = spikes(&r1, "sp", 100000, 0);
    split.extend(spikes(&r2, "sp", 100000, 0));
    assert_eq!(spikes(&r, "sp", 100000, 0), split);
    assert!(!split.is_empty());
    for key in [
        "P.v",
        "P.ge",
        "P.gi",
        "P.lastspike_step",
        "P.spike_queue",
        "P.spike_queue_counts",
        "t_step",
    ] {
        assert_eq!(whole.get(key), twice.get(key), "{key}");
    }
}

#[test]
fn a_batch_runs_each_member_as_alone() {
    let net = Cuba::new(30, 24, 0.25, 11);
    let c = compile(&net.spec(false).to_string());
    let a: Vec<f64> = (0..30).map(|i| -55.0 + (i % 5) as f64).collect();
    let b: Vec<f64> = (0..30).map(|i| -52.0 - (i % 7) as f64).collect();
    let (_, ra) = c.run(&cuba_state(&c, &net, &a), 800);
    let (_, rb) = c.run(&cuba_state(&c, &net, &b), 800);
    let mut both = cuba_state(&c, &net, &a);
    let mut v = a.clone();
    v.extend(&b);
    both.bufs.insert(
        "P.v".into(),
        harness::Buf::from_f64(spikeforge::types::ElemType::F64, &v),
    );
    let mut t = harness::Buf::zeros(spikeforge::types::ElemType::I32, 2);
    t.set(0, 0.0);
    t.set(1, 0.0);
    both.bufs.insert("t_step".into(), t);
    for key in [
        "P.ge",
        "P.gi",
        "P.lastspike_step",
        "P.spike_queue",
        "P.spike_queue_counts",
        "Ce.w",
        "Ci.w",
    ] {
        let one = both.bufs[key].values();
        let mut two = one.clone();
        two.extend(&one);
        let elem = both.bufs[key].elem;
        both.bufs
            .insert(key.into(), harness::Buf::from_f64(elem, &two));
    }
    both.nb = 2;
    let (_, r) = c.run(&both, 800);
    assert_eq!(spikes(&r, "sp", 100000, 0), spikes(&ra, "sp", 100000, 0));
    assert_eq!(spikes(&r, "sp", 100000, 1), spikes(&rb, "sp", 100000, 0));
    assert_ne!(spikes(&ra, "sp", 100000, 0), spikes(&rb, "sp", 100000, 0));
}

#[test]
fn monitors_count_overflow_and_record_every_kth_step() {
    let spec = json!({
        "dt": 0.1, "dtype": "float32",
        "groups": [{"kind": "neuron", "name": "P", "n": 5,
            "model": {"equations": "dv/dt = rate_i : 1\nrate_i : 1/second", "threshold": "v > 1", "reset": "v -= 1"}}],
        "monitors": [
            {"kind": "spike", "name": "few", "source": "P", "range": [1, 4], "capacity": 7},
            {"kind": "state", "name": "vm", "source": "P", "variables": ["v"], "record": [4, 0, 2], "every": 3},
            {"kind": "rate", "name": "r", "source": "P", "range": [3, 5]}
        ]
    });
    let c = compile(&spec.to_string());
    let rates = vec![0.5, 1.0, 2.0, 3.0, 4.0];
    let state = c.state(1, &[("P.rate_i", rates.clone())]);
    let steps = 40;
    let (_, r) = c.run(&state, steps);
    // Reference in float32 as the kernel computes: v += dt * rate; spike when v > 1.
    let mut v = [0f32; 5];
    let mut all = Vec::new();
    let mut trace = Vec::new();
    let mut rate = Vec::new();
    for k in 0..steps {
        if k % 3 == 0 {
            trace.extend([v[4], v[0], v[2]].map(f64::from));
        }
        let mut in_range = 0;
        for i in 0..5 {
            v[i] += 0.1f32 * rates[i] as f32;
            if v[i] > 1.0 {
                v[i] -= 1.0;
                if (1..4).contains(&i) {
                    all.push((k as i64, i as i64 - 1));
                }
                if i >= 3 {
                    in_range += 1;
                }
            }
        }
        rate.push(f64::from(in_range as f32 / (2.0f32 * 0.1f32)));
    }
    assert!(all.len() > 7);
    assert_eq!(r.get("few.count"), [7.0]);
    assert_eq!(r.get("few.dropped"), [(all.len() - 7) as f64]);
    assert_eq!(spikes(&r, "few", 7, 0), all[..7].to_vec());
    assert_eq!(
        &r.get("few.i")[..7],
        all[..7].iter().map(|(_, i)| *i as f64).collect::<Vec<_>>()
    );
    assert_eq!(r.get("vm.v"), trace);
    assert_eq!(r.get("r.rate"), rate);
}

#[test]
fn poisson_groups_and_inputs_draw_exact_distributions() {
    let (n, steps) = (4000usize, 500usize);
    let spec = json!({
        "dt": 0.1, "dtype": "float32",
        "groups": [
            {"kind": "poisson", "name": "pg", "n": n, "rates": 0.05},
            {"kind": "neuron", "name": "T", "n": n, "model": {"equations": "dy/dt = 0/ms : 1\nsmall : 1\nlarge : 1"}}
        ],
        "poisson_inputs": [
            {"name": "few", "target": "T", "variable": "small", "n": 4, "rate": 3.0, "weight": 1.0},
            {"name": "many", "target": "T", "variable": "large", "n": 2000, "rate": 5.0, "weight": "2*half", "constants": {"half": 0.5}}
        ],
        "monitors": [{"kind": "state", "name": "m", "source": "T", "variables": ["small"], "record": true}]
    });
    let c = compile(&spec.to_string());
    let (s, r) = c.run(&c.state(1, &[("rng_seed", vec![42.0])]), steps);
    // Poisson group: each neuron spikes with probability rate*dt = 0.005 a step.
    let total: f64 = r.get("pg.spike_count").iter().sum();
    let expect = (n * steps) as f64 * 0.005;
    assert!(
        (total - expect).abs() < 5.0 * (expect * 0.995).sqrt(),
        "{total} vs {expect}"
    );
    // One step of the small input is Binomial(4, 0.3): its exact probabilities (chi-square).
    let first: Vec<f64> = r.get("m.small")[n..2 * n].to_vec();
    let pmf = [0.2401, 0.4116, 0.2646, 0.0756, 0.0081];
    let mut chi2 = 0.0;
    for (k, p) in pmf.iter().enumerate() {
        let seen = first.iter().filter(|x| **x == k as f64).count() as f64;
        chi2 += (seen - p * n as f64).powi(2) / (p * n as f64);
    }
    assert!(chi2 < 20.0, "chi2 = {chi2} (4 degrees of freedom)");
    assert!(first
        .iter()
        .all(|x| *x >= 0.0 && *x <= 4.0 && x.fract() == 0.0));
    // The large input: Binomial(2000, 0.5) a step, summed over the steps.
    let large = s.get("T.large");
    let mean = large.iter().sum::<f64>() / n as f64;
    let var = large.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let (m, v) = (steps as f64 * 1000.0, steps as f64 * 500.0);
    assert!(
        (mean - m).abs() < 5.0 * (v / n as f64).sqrt(),
        "mean {mean} vs {m}"
    );
    assert!((var / v - 1.0).abs() < 0.1, "variance {var} vs {v}");
    // The same seed draws the same numbers; another seed others.
    let (s2, _) = c.run(&c.state(1, &[("rng_seed", vec![42.0])]), steps);
    assert_eq!(s.get("T.large"), s2.get("T.large"));
    let (s3, _) = c.run(&c.state(1, &[("rng_seed", vec![43.0])]), steps);
    assert_ne!(s.get("T.large"), s3.get("T.large"));
}

#[test]
fn timed_arrays_follow_brians_rows_and_generators_repeat_with_their_period() {
    let dt = 0.1;
    let spec = json!({
        "dt": dt, "dtype": "float64",
        "timed_arrays": [{"name": "one", "dt": 0.3, "shape": [5]}, {"name": "two", "dt": 1.0, "shape": [3, 2]}],
        "groups": [
            {"kind": "neuron", "name": "T", "n": 3,
             "model": {"equations": "a = one(t) : 1\nb = two(t, i) : 1\ndy/dt = 0/ms : 1"}},
            {"kind": "spike_generator", "name": "G", "n": 2, "n_spikes": 3, "period": 0.5}
        ],
        "monitors": [{"kind": "state", "name": "m", "source": "T", "variables": ["a", "b"], "record": true},
                     {"kind": "spike", "name": "sp", "source": "G", "capacity": 100}]
    });
    let c = compile(&spec.to_string());
    let one = [10.0, 11.0, 12.0, 13.0, 14.0];
    let two = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let state = c.state(
        1,
        &[
            ("one.values", one.to_vec()),
            ("two.values", two.to_vec()),
            ("G.indices", vec![1.0, 0.0, 1.0]),
            ("G.steps", vec![0.0, 2.0, 2.0]),
        ],
    );
    let steps = 31;
    let (_, r) = c.run(&state, steps);
    // Brian2's rows: K = 2^ceil(log2(8 dt_array / dt)), eps = dt_array / K, int((t/eps + 0.5)/K).
    let row = |t: f64, adt: f64, rows: i64| {
        let k = (8.0 / dt * adt).log2().ceil().exp2().max(1.0);
        let eps = adt / k;
        (((t / eps + 0.5) / k) as i64).clamp(0, rows - 1) as usize
    };
    let (a, b) = (r.get("m.a"), r.get("m.b"));
    for k in 0..steps {
        let t = k as f64 * dt;
        for i in 0..3 {
            assert_eq!(a[k * 3 + i], one[row(t, 0.3, 5)], "a at step {k}");
            let want = if i < 2 {
                two[row(t, 1.0, 3) * 2 + i]
            } else {
                f64::NAN
            };
            let got = b[k * 3 + i];
            assert!(
                got == want || (got.is_nan() && want.is_nan()),
                "b[{i}] at step {k}: {got}"
            );
        }
    }
    // Period 5 steps: (1, 0), (0, 2), (1, 2) every 5 steps.
    let mut want = Vec::new();
    for p in 0..(steps as i64 + 4) / 5 {
        for (i, s) in [(1, 0), (0, 2), (1, 2)] {
            if p * 5 + s < steps as i64 {
                want.push((p * 5 + s, i));
            }
        }
    }
    want.sort_unstable();
    assert_eq!(spikes(&r, "sp", 100, 0), want);
}

#[test]
fn a_group_may_read_its_neighbours_and_write_its_source() {
    // Ordered deliveries: `x_pre += 1` counts arrivals at the source, `v_post = max(v_post, w)`
    // assigns; `lastspike_pre` is the spike's time. In C every delivery runs in Brian2's order.
    let spec = json!({
        "dt": 0.1, "dtype": "float64",
        "groups": [
            {"kind": "spike_generator", "name": "G", "n": 2, "n_spikes": 2},
            {"kind": "neuron", "name": "A", "n": 2,
             "model": {"equations": "dx/dt = 0/ms : 1", "threshold": "t > 0.25 and t < 0.35", "refractory": 0.0}},
            {"kind": "neuron", "name": "B", "n": 2, "model": {"equations": "v : 1\nseen : 1"}}
        ],
        "projections": [
            {"name": "AB", "source": "A", "target": "B", "model": "w : 1",
             "on_pre": "x_pre += 1\nv_post = max(v_post, w)\nseen_post += lastspike_pre + i*100 + j*1000 + N_pre*10000"}
        ]
    });
    let c = compile(&spec.to_string());
    let state = c.state(
        1,
        &[
            ("AB.row_offsets", vec![0.0, 2.0, 3.0]),
            ("AB.targets", vec![0.0, 1.0, 1.0]),
            ("AB.w", vec![5.0, 7.0, 6.0]),
        ],
    );
    let (s, _) = c.run(&state, 6);
    // A spikes once, at step 3 (t = 0.3 ms).
    assert_eq!(s.get("A.x"), [2.0, 1.0]);
    assert_eq!(s.get("B.v"), [5.0, 7.0]);
    let lastspike = 0.30000000000000004; // 3 * 0.1 in f64
    let seen0 = lastspike + 0.0 + 0.0 + 20000.0;
    let seen1 = (lastspike + 0.0 + 1000.0 + 20000.0) + (lastspike + 100.0 + 1000.0 + 20000.0);
    assert_eq!(s.get("B.seen"), [seen0, seen1]);
    assert_eq!(s.get("A.lastspike_step"), [3.0, 3.0]);
    let _ = NEVER_SPIKED;
    let _: BTreeMap<(), ()> = BTreeMap::new();
}

#[test]
fn every_test_network_builds_and_runs_in_c() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/networks");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let mut spec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        // Small enough to run here.
        for g in spec["groups"].as_array_mut().unwrap() {
            let n = g["n"].as_u64().unwrap().min(64);
            g["n"] = json!(n);
        }
        for p in spec["projections"].as_array_mut().unwrap() {
            for range in ["source_range", "target_range"] {
                if p[range].is_array() {
                    p[range] = json!([0, 5]);
                }
            }
        }
        for m in spec["monitors"].as_array_mut().unwrap() {
            if m["range"].is_array() {
                m["range"] = json!([0, 5]);
            }
        }
        let c = compile(&spec.to_string());
        let state = c.state(1, &[]);
        let (s, _) = c.run(&state, 30);
        assert_eq!(s.get("t_step"), [30.0], "{path:?}");
    }
}

#[test]
fn random_numbers_are_the_documented_streams() {
    use spikeforge::random::{philox, step_key, step_words, uniform_f64};
    let dt = 0.1;
    let spec = json!({
        "dt": dt, "dtype": "float64",
        "groups": [
            {"kind": "neuron", "name": "A", "n": 3, "model": {"equations": "dy/dt = 0/ms : 1"}},
            {"kind": "neuron", "name": "B", "n": 4,
             "model": {"equations": "u = rand() : 1 (constant over dt)\nz = randn() : 1 (constant over dt)\ndy/dt = (u + z - y)/ms : 1"}},
            {"kind": "poisson", "name": "pg", "n": 5, "rates": 0.3}
        ],
        "monitors": [{"kind": "state", "name": "m", "source": "B", "variables": ["u"], "record": true},
                     {"kind": "spike", "name": "sp", "source": "pg", "capacity": 1000}]
    });
    let c = compile(&spec.to_string());
    let seed = 77u32;
    let steps = 200;
    let (_, r) = c.run(&c.state(1, &[("rng_seed", vec![seed as f64])]), steps);
    // rand() of group B's neuron i: the step stream of a group run alone, its element being the
    // neuron's index in the network (B starts at 3), draw 0 (u is B's first draw).
    let u = r.get("m.u");
    for k in 0..steps {
        for i in 0..4 {
            let want = uniform_f64(step_words(seed, dt, 3 + i as u32, k as i64, 0));
            assert_eq!(u[k * 4 + i], want, "u[{i}] at step {k}");
        }
    }
    // The Poisson group (group 2): counter (i, step, 0, 0x52010000 + 2) under the step key.
    let mut want = Vec::new();
    for k in 0..steps as u32 {
        for i in 0..5u32 {
            let w = philox([i, k, 0, 0x5201_0000 + 2], [seed, step_key(dt)]);
            if uniform_f64(w) < 0.3 * dt {
                want.push((k as i64, i as i64));
            }
        }
    }
    assert!(want.len() > 10);
    assert_eq!(spikes(&r, "sp", 1000, 0), want);
}

#[test]
fn lastspike_is_kept_where_code_or_synapses_read_it() {
    // No refractory period: B keeps lastspike because its threshold reads it; A because a
    // synapse reads lastspike_pre.
    let spec = json!({
        "dt": 0.1, "dtype": "float64",
        "groups": [
            {"kind": "neuron", "name": "A", "n": 1,
             "model": {"equations": "dc/dt = 1/ms : 1", "threshold": "c > 0.35", "reset": "c = 0"}},
            {"kind": "neuron", "name": "B", "n": 1,
             "model": {"equations": "dy/dt = 0/ms : 1\nseen : 1",
                       "threshold": "t - lastspike > 1000*ms", "reset": "y += 1"}}
        ],
        "projections": [{"name": "AB", "source": "A", "target": "B", "on_pre": "seen_post = lastspike_pre"}]
    });
    let c = compile(&spec.to_string());
    let names: Vec<String> = c.layout.inputs.iter().map(harness::key).collect();
    assert!(names.contains(&"A.lastspike_step".to_string()));
    assert!(names.contains(&"B.lastspike_step".to_string()));
    let state = c.state(
        1,
        &[
            ("AB.row_offsets", vec![0.0, 1.0]),
            ("AB.targets", vec![0.0]),
        ],
    );
    let (s, _) = c.run(&state, 10);
    // A spikes at steps 3 and 7 (c reaches 0.4); the last delivery reads lastspike = 0.7 ms.
    assert_eq!(s.get("A.lastspike_step"), [7.0]);
    assert_eq!(s.get("B.seen"), [7.0 * 0.1]);
    // B never spiked before: "t - lastspike" is long; it spikes at step 0 and then not again.
    assert_eq!(s.get("B.y"), [1.0]);
    assert_eq!(s.get("B.lastspike_step"), [0.0]);
}

#[test]
fn a_generator_state_with_more_spikes_in_a_step_than_neurons_stays_in_its_slot() {
    // Python refuses a neuron twice in one step; a state edited by hand (here: every stored
    // spike is neuron 0 at step 0) must still never write past the spike queue's slot.
    let spec = json!({
        "dt": 0.1, "dtype": "float64",
        "groups": [
            {"kind": "spike_generator", "name": "sg", "n": 2, "n_spikes": 7, "period": null},
            {"kind": "neuron", "name": "T", "n": 1, "model": {"equations": "x : 1"}}
        ],
        "projections": [
            {"name": "S", "source": "sg", "target": "T", "model": "", "on_pre": "x += 1"}
        ],
        "monitors": []
    });
    let c = compile(&spec.to_string());
    let state = c.state(
        1,
        &[
            ("S.row_offsets", vec![0.0, 1.0, 1.0]),
            ("S.targets", vec![0.0]),
        ],
    );
    let (s, r) = c.run(&state, 3);
    // two of the seven stored spikes fit the slot of a group of two neurons
    assert_eq!(r.get("sg.spike_count"), [2.0, 0.0]);
    assert_eq!(s.get("T.x"), [2.0]);
}
