//! The random numbers a C kernel draws are the numbers `spikeforge::random` computes in Rust,
//! bit for bit: the stream's key (seed, dt), its counter (element, step with its high word,
//! draw index) and both transforms. The generated CUDA follows the same source, and the
//! GPU tests compare CPU and GPU runs bit for bit.

#[path = "common/c_kernel.rs"]
mod c_kernel;

use spikeforge::codegen::{generate_from_spec, Dialect, Role};
use spikeforge::random;
use spikeforge::runtime::cpu::{self, CpuCompileOptions};
use spikeforge::spec::ModelSpec;
use spikeforge::types::ElemType;

/// `xi` takes draw 0, the calls of rand() and randn() draws 1 and 2.
const EQUATIONS: &str =
    "dx/dt = -x + xi : 1\nu = rand() : 1 (constant over dt)\nz = randn() : 1 (constant over dt)";

#[test]
fn kernels_draw_the_numbers_of_the_rust_stream() {
    let (n, steps, seed, dt) = (37usize, 9usize, 0x1234_5678u32, 0.25);
    // A start past 2^32 steps: the step's high word is in the counter.
    let first_step = (5i64 << 32) + 3;
    for dtype in [ElemType::F32, ElemType::F64] {
        let spec = ModelSpec::from_equations(EQUATIONS, dt)
            .dtype(dtype)
            .record(["u", "z"]);
        let kernel = generate_from_spec(&spec, Dialect::C).unwrap();
        let module = cpu::load(&kernel.source, kernel.entry, &CpuCompileOptions::default())
            .unwrap_or_else(|e| panic!("{e}\n{}", kernel.source));
        // Every buffer as 8-byte words (enough for any element type).
        let mut ins: Vec<Vec<u64>> = kernel
            .layout
            .inputs
            .iter()
            .map(|a| match a.role {
                Role::State => vec![0; n],
                Role::Seed => vec![u64::from(seed)],
                Role::Time => vec![(first_step as f64 * dt).to_bits()],
                other => panic!("unexpected input {other:?}"),
            })
            .collect();
        let mut outs: Vec<Vec<u64>> = kernel
            .layout
            .outputs
            .iter()
            .map(|a| vec![u64::MAX; if a.role == Role::Trace { n * steps } else { n }])
            .collect();
        let dims = [n as i64, steps as i64, 1, steps as i64];
        c_kernel::run_c_kernel(&module, n, &dims, &mut ins, &mut outs);
        let trace = |name: &str| -> Vec<f64> {
            let k = kernel
                .layout
                .outputs
                .iter()
                .position(|a| a.name == format!("trace:{name}"))
                .unwrap();
            let bytes = &outs[k];
            (0..n * steps)
                .map(|i| match dtype {
                    // SAFETY: the kernel wrote n * steps elements of the dtype.
                    ElemType::F32 => f64::from(unsafe { *bytes.as_ptr().cast::<f32>().add(i) }),
                    _ => f64::from_bits(bytes[i]),
                })
                .collect()
        };
        let (u, z) = (trace("u"), trace("z"));
        for s in 0..steps {
            for j in 0..n {
                let step = first_step + s as i64;
                let want_u = {
                    let w = random::step_words(seed, dt, j as u32, step, 1);
                    match dtype {
                        ElemType::F32 => f64::from(random::uniform_f32(w)),
                        _ => random::uniform_f64(w),
                    }
                };
                let want_z = f64::from(random::normal(random::step_words(
                    seed, dt, j as u32, step, 2,
                )));
                let at = s * n + j;
                assert_eq!(u[at], want_u, "{dtype}: u of element {j} at step {s}");
                assert_eq!(z[at], want_z, "{dtype}: z of element {j} at step {s}");
            }
        }
    }
}
