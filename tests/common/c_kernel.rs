//! What the Rust tests that run a generated C kernel share: the call itself.

use std::ffi::c_void;

use spikeforge::runtime::cpu::CpuModule;

type CEntry = unsafe extern "C" fn(i64, i64, *const i64, *const *mut c_void, *const *mut c_void);

/// Runs the group kernel of `module` over elements `0..n` with the given `dims` (`{n_inner,
/// steps, rec_every, n_rec, ...}`), reading `ins` and writing `outs`, one buffer per layout entry
/// (8-byte words, large enough for any element type).
pub fn run_c_kernel(
    module: &CpuModule,
    n: usize,
    dims: &[i64],
    ins: &mut [Vec<u64>],
    outs: &mut [Vec<u64>],
) {
    let in_ptrs: Vec<*mut c_void> = ins.iter_mut().map(|b| b.as_mut_ptr().cast()).collect();
    let out_ptrs: Vec<*mut c_void> = outs.iter_mut().map(|b| b.as_mut_ptr().cast()).collect();
    // SAFETY: the caller gives one buffer per layout entry, each at least as large as its shape,
    // and the generated C entry has exactly this signature.
    unsafe {
        let entry: CEntry = module.entry();
        entry(
            0,
            n as i64,
            dims.as_ptr(),
            in_ptrs.as_ptr(),
            out_ptrs.as_ptr(),
        );
    }
}
