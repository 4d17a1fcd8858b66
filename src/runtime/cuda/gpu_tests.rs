//! Tests of the driver path (load, launch) on a real GPU. They skip, with a note, where there is
//! no driver, no GPU or no NVRTC, so they are harmless in CI.
//!
//! They play XLA's part: retain the primary context, create a stream, allocate buffers; then use
//! the runtime exactly as a handler does (stream handle in, launch without synchronising).

use super::*;
use cudarc::driver::result as cu;

/// `Some(stream)` with buffers' context current on this thread, or `None` to skip.
fn gpu_or_skip(test: &str) -> Option<sys::CUstream> {
    let skip = |why: String| {
        eprintln!("SKIPPED {test}: {why}");
        None
    };
    if let Err(e) = driver::init() {
        return skip(e.to_string());
    }
    if let Err(e) = nvrtc::ensure_loadable() {
        return skip(e.to_string());
    }
    match cu::device::get_count() {
        Ok(n) if n > 0 => {}
        other => return skip(format!("no CUDA device ({other:?})")),
    }
    // SAFETY: device 0 exists; the primary context is what XLA uses too.
    unsafe {
        let dev = cu::device::get(0).unwrap();
        let ctx = cu::primary_ctx::retain(dev).unwrap();
        cu::ctx::set_current(ctx).unwrap();
    }
    Some(cu::stream::create(cu::stream::StreamKind::NonBlocking).unwrap())
}

const AXPY: &str = r#"
extern "C" __global__ void axpy(int n, float a, const float* __restrict__ x, float* __restrict__ y) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i] + y[i];
}

// Reverses each block's slice through dynamic shared memory (sized by the launch).
extern "C" __global__ void reverse_blocks(const float* x, float* y) {
    extern __shared__ float s[];
    int t = threadIdx.x, b = blockIdx.x * blockDim.x;
    s[t] = x[b + t];
    __syncthreads();
    y[b + t] = s[blockDim.x - 1 - t];
}
"#;

fn device_buffer(host: &[f32]) -> sys::CUdeviceptr {
    // SAFETY: plain allocation and copy of `host.len()` floats.
    unsafe {
        let d = cu::malloc_sync(std::mem::size_of_val(host)).unwrap();
        cu::memcpy_htod_sync(d, host).unwrap();
        d
    }
}

fn read_back(d: sys::CUdeviceptr, n: usize) -> Vec<f32> {
    let mut host = vec![0f32; n];
    // SAFETY: `d` holds `n` floats.
    unsafe { cu::memcpy_dtoh_sync(&mut host, d).unwrap() };
    host
}

#[test]
fn load_launch_and_cache() {
    let Some(stream) = gpu_or_skip("load_launch_and_cache") else {
        return;
    };
    let opts = CudaCompileOptions::default();
    let t = std::time::Instant::now();
    let f = load_function(AXPY, "axpy", stream.cast(), &opts).unwrap();
    let cold = t.elapsed();
    let t = std::time::Instant::now();
    let g = load_function(AXPY, "axpy", stream.cast(), &opts).unwrap();
    let warm = t.elapsed();
    assert!(Arc::ptr_eq(&f, &g), "second load is a memory hit");
    eprintln!(
        "load_function: cold {cold:?}, warm {warm:?}; {f:?}, {} SMs, max threads {} (driver says {}), \
         max shared {}",
        f.multiprocessor_count(),
        f.max_threads_per_block(),
        function_max_threads(&f).unwrap(),
        f.max_shared_mem_per_block()
    );
    assert!(f.arch().0 >= 7);
    assert!(f.max_threads_per_block() >= 256);

    let n: i32 = 100_003;
    let x: Vec<f32> = (0..n).map(|i| (i % 97) as f32 * 0.5).collect();
    let y: Vec<f32> = (0..n).map(|i| (i % 13) as f32).collect();
    let (dx, dy) = (device_buffer(&x), device_buffer(&y));
    let a = 3.0f32;
    let (mut n_arg, mut a_arg, mut x_arg, mut y_arg) = (n, a, dx, dy);
    let mut params: [*mut c_void; 4] = [
        (&mut n_arg as *mut i32).cast(),
        (&mut a_arg as *mut f32).cast(),
        (&mut x_arg as *mut sys::CUdeviceptr).cast(),
        (&mut y_arg as *mut sys::CUdeviceptr).cast(),
    ];
    let block = 256u32;
    let grid = (n as u32).div_ceil(block);
    // SAFETY: params match `axpy`'s signature; buffers hold n floats and outlive the sync below.
    unsafe {
        launch(
            &f,
            (grid, 1, 1),
            (block, 1, 1),
            0,
            stream.cast(),
            &mut params,
        )
    }
    .unwrap();
    // SAFETY: our own stream. (Handlers never synchronise; the test must, to read results.)
    unsafe { cu::stream::synchronize(stream) }.unwrap();
    let got = read_back(dy, n as usize);
    for i in 0..n as usize {
        assert_eq!(got[i], a * x[i] + y[i], "element {i}");
    }

    // Warm launch cost (enqueue only; no sync per launch).
    let t = std::time::Instant::now();
    for _ in 0..1000 {
        let f = load_function(AXPY, "axpy", stream.cast(), &opts).unwrap();
        // SAFETY: as above.
        unsafe {
            launch(
                &f,
                (grid, 1, 1),
                (block, 1, 1),
                0,
                stream.cast(),
                &mut params,
            )
        }
        .unwrap();
    }
    let per = t.elapsed() / 1000;
    // SAFETY: our own stream.
    unsafe { cu::stream::synchronize(stream) }.unwrap();
    eprintln!("warm load_function + launch: {per:?} each");

    // An entry the module does not have.
    let err = load_function(AXPY, "nope", stream.cast(), &opts).unwrap_err();
    assert!(
        matches!(err, RuntimeError::KernelNotFound { .. }),
        "{err:?}"
    );

    // A launch configuration error is reported, not swallowed (and does not poison the context).
    // SAFETY: the launch is rejected before it runs.
    let err =
        unsafe { launch(&f, (1, 1, 1), (4096, 1, 1), 0, stream.cast(), &mut params) }.unwrap_err();
    assert!(
        matches!(
            err,
            RuntimeError::CudaCall {
                call: "cuLaunchKernel",
                ..
            }
        ),
        "{err}"
    );
    eprintln!("bad launch error reads: {err}");

    // SAFETY: our own allocations, idle after the sync.
    unsafe {
        cu::free_sync(dx).unwrap();
        cu::free_sync(dy).unwrap();
    }
}

#[test]
fn large_dynamic_shared_memory_and_foreign_thread() {
    let Some(stream) = gpu_or_skip("large_dynamic_shared_memory_and_foreign_thread") else {
        return;
    };
    // 96 KiB of dynamic shared memory: needs the opt-in attribute, which `launch` sets.
    let threads = 24 * 1024u32; // floats: 96 KiB
    let block = 1024u32;
    let blocks = threads / block;
    let x: Vec<f32> = (0..threads).map(|i| i as f32).collect();
    let (dx, dy) = (
        device_buffer(&x),
        device_buffer(&vec![0f32; threads as usize]),
    );
    let stream_addr = stream as usize;

    // A thread with no current context, like an XLA worker that never touched CUDA: the runtime
    // must push the stream's context and pop it again.
    std::thread::spawn(move || {
        let stream = stream_addr as *mut c_void;
        assert_eq!(cu::ctx::get_current().unwrap(), None);
        let f = load_function(
            AXPY,
            "reverse_blocks",
            stream,
            &CudaCompileOptions::default(),
        )
        .unwrap();
        assert_eq!(
            cu::ctx::get_current().unwrap(),
            None,
            "thread's context left as found"
        );
        let (mut xa, mut ya) = (dx, dy);
        let mut params: [*mut c_void; 2] = [
            (&mut xa as *mut sys::CUdeviceptr).cast(),
            (&mut ya as *mut sys::CUdeviceptr).cast(),
        ];
        // One block of `block` threads would only need 4 KiB; ask for 96 KiB to exercise the
        // opt-in path (the kernel uses the first blockDim floats).
        let smem = 96 * 1024;
        assert!(smem <= f.max_shared_mem_per_block());
        // SAFETY: params match; buffers hold `threads` floats.
        unsafe { launch(&f, (blocks, 1, 1), (block, 1, 1), smem, stream, &mut params) }.unwrap();
        assert_eq!(
            cu::ctx::get_current().unwrap(),
            None,
            "thread's context left as found"
        );
    })
    .join()
    .unwrap();

    // SAFETY: our own stream.
    unsafe { cu::stream::synchronize(stream) }.unwrap();
    let got = read_back(dy, threads as usize);
    for b in 0..blocks as usize {
        for t in 0..block as usize {
            let base = b * block as usize;
            assert_eq!(got[base + t], x[base + block as usize - 1 - t]);
        }
    }
    // SAFETY: our own allocations, idle after the sync.
    unsafe {
        cu::free_sync(dx).unwrap();
        cu::free_sync(dy).unwrap();
    }
}

/// 60 distinct kernels with a bound of 8, in a process of its own: evicted modules are unloaded
/// (at most two bounded levels of 8 stay loaded), every result is right, and a kernel a caller
/// holds keeps working after its module was evicted.
#[test]
fn loaded_modules_are_bounded() {
    if gpu_or_skip("loaded_modules_are_bounded").is_none() {
        return;
    }
    let root = crate::runtime::cache::test_dir("cuda-many");
    crate::runtime::run_test_child(
        "runtime::cuda::gpu_tests::child_loads_many_modules",
        &[
            ("SPIKEFORGE_MAX_LOADED_MODULES", "8".as_ref()),
            ("SPIKEFORGE_CACHE_DIR", root.as_os_str()),
        ],
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
#[ignore = "run by loaded_modules_are_bounded"]
fn child_loads_many_modules() {
    use std::sync::atomic::Ordering;
    let stream = gpu_or_skip("child_loads_many_modules").unwrap();
    let opts = CudaCompileOptions::default();
    let out = device_buffer(&[0f32]);
    let run = |f: &CudaFunction| -> i32 {
        let mut o = out;
        let mut params: [*mut c_void; 1] = [(&mut o as *mut sys::CUdeviceptr).cast()];
        // SAFETY: params match `put`; `out` holds one int.
        unsafe { launch(f, (1, 1, 1), (1, 1, 1), 0, stream.cast(), &mut params) }.unwrap();
        // SAFETY: our own stream.
        unsafe { cu::stream::synchronize(stream) }.unwrap();
        read_back(out, 1)[0].to_bits() as i32
    };
    let load = |i: i32| {
        load_function_keyed(&format!("model-{i}"), "put", stream.cast(), &opts, || {
            format!("extern \"C\" __global__ void put(int* out) {{ *out = {i}; }}\n")
        })
        .unwrap()
    };
    let held = load(0);
    for i in 0..60 {
        assert_eq!(run(&load(i)), i);
        let live = module_cache::LIVE_MODULES.load(Ordering::SeqCst);
        assert!(live <= 2 * 8 + 1, "{live} modules loaded");
    }
    assert_eq!(run(&held), 0, "a held kernel was unloaded");
    // Evicted ones load again (from the disk cache) and are right.
    for i in [1, 17, 33] {
        assert_eq!(run(&load(i)), i);
    }
    println!(
        "modules loaded at the end: {}",
        module_cache::LIVE_MODULES.load(Ordering::SeqCst)
    );
}

/// An evicted module may be unloaded while the thread captures XLA's stream into a CUDA graph
/// (a load during a capture can evict one): the unload must neither fail nor invalidate the
/// capture, and the captured graph must run.
#[test]
fn unloading_during_a_capture_keeps_the_capture_valid() {
    let Some(stream) = gpu_or_skip("unloading_during_a_capture_keeps_the_capture_valid") else {
        return;
    };
    let put = |i: i32| format!("extern \"C\" __global__ void put(int* out) {{ *out = {i}; }}\n");
    let opts = CudaCompileOptions::default();
    let kept = load_function(&put(41), "put", stream.cast(), &opts).unwrap();
    let dev = driver::current_device().unwrap();
    let doomed = compile_cubin(&put(42), driver::compute_capability(dev).unwrap(), &opts).unwrap();
    let doomed = driver::load_module(&doomed).unwrap();
    let out = device_buffer(&[0f32]);
    let mut o = out;
    let mut params: [*mut c_void; 1] = [(&mut o as *mut sys::CUdeviceptr).cast()];
    use sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL;
    // SAFETY: our own stream; every call below is checked.
    unsafe {
        driver::check(
            "cuStreamBeginCapture",
            sys::cuStreamBeginCapture_v2(stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
        )
        .unwrap();
        launch(&kept, (1, 1, 1), (1, 1, 1), 0, stream.cast(), &mut params).unwrap();
        let unloaded = driver::unload_module(doomed);
        let mut graph: sys::CUgraph = std::ptr::null_mut();
        let ended = driver::check(
            "cuStreamEndCapture",
            sys::cuStreamEndCapture(stream, &mut graph),
        );
        unloaded.unwrap();
        ended.unwrap();
        let mut exec: sys::CUgraphExec = std::ptr::null_mut();
        driver::check(
            "cuGraphInstantiate",
            sys::cuGraphInstantiateWithFlags(&mut exec, graph, 0),
        )
        .unwrap();
        driver::check("cuGraphLaunch", sys::cuGraphLaunch(exec, stream)).unwrap();
        cu::stream::synchronize(stream).unwrap();
        sys::cuGraphExecDestroy(exec);
        sys::cuGraphDestroy(graph);
    }
    assert_eq!(read_back(out, 1)[0].to_bits(), 41);
}

/// Spins for `ns` nanoseconds of GPU time, then sets `*done`.
const SPIN: &str = r#"
extern "C" __global__ void spin(unsigned long long ns, int* done) {
    unsigned long long t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); } while (t - t0 < ns);
    *done = 1;
}
"#;

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

/// Measures what a loaded CUDA module costs the process (memory mappings, device memory) and
/// whether `cuModuleUnload` waits for a kernel of the module that is still running. A probe, run
/// by hand on a GPU: `cargo test --release --lib probe_module_costs -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, run by hand on a GPU"]
fn probe_module_costs() {
    let Some(stream) = gpu_or_skip("probe_module_costs") else {
        return;
    };
    let dev = driver::current_device().unwrap();
    let arch = driver::compute_capability(dev).unwrap();
    let free = || cu::mem_get_info().unwrap().0;
    // A small kernel and a 64 KB one (an unrolled loop).
    let big = "extern \"C\" __global__ void big(float* x) { float v = x[threadIdx.x];\n\
               #pragma unroll\n for (int i = 0; i < 100000; i++) v = v * 1.0001f + sinf(v + i);\n\
               x[threadIdx.x] = v; }\n";
    for src in [SPIN, big] {
        let cubin = compile_cubin(src, arch, &CudaCompileOptions::default()).unwrap();
        let (maps0, free0) = (mappings(), free());
        let n = 1000;
        let modules: Vec<_> = (0..n)
            .map(|_| driver::load_module(&cubin).unwrap())
            .collect();
        let (maps1, free1) = (mappings(), free());
        println!(
            "PROBE {n} modules of a {} B cubin: +{} mappings, +{} KiB device memory ({} B each)",
            cubin.len(),
            maps1 as i64 - maps0 as i64,
            (free0 as i64 - free1 as i64) / 1024,
            (free0 as i64 - free1 as i64) / n
        );
        for m in modules {
            // SAFETY: loaded above, unused.
            unsafe { driver::unload_module(m) }.unwrap();
        }
        let (maps2, free2) = (mappings(), free());
        println!(
            "PROBE after unloading: {} mappings, {} KiB device memory back",
            maps2 as i64 - maps0 as i64,
            (free2 as i64 - free1 as i64) / 1024
        );
    }
    let cubin = compile_cubin(SPIN, arch, &CudaCompileOptions::default()).unwrap();

    // Unload while a kernel of the module runs for 2 s.
    let m = driver::load_module(&cubin).unwrap();
    // SAFETY: the module is loaded in the current context.
    let f = unsafe { driver::module_function(m, c"spin") }.unwrap();
    let done = device_buffer(&[0f32]);
    let (mut ns, mut d) = (2_000_000_000u64, done);
    let mut params: [*mut c_void; 2] = [
        (&mut ns as *mut u64).cast(),
        (&mut d as *mut sys::CUdeviceptr).cast(),
    ];
    // SAFETY: params match `spin`.
    unsafe { driver::launch_kernel(f, (1, 1, 1), (1, 1, 1), 0, stream, &mut params, false) }
        .unwrap();
    let t = std::time::Instant::now();
    // SAFETY: the point of the probe: unload with the kernel in flight.
    let r = unsafe { sys::cuModuleUnload(m) };
    let unload = t.elapsed();
    // SAFETY: our own stream.
    let s = unsafe { cu::stream::synchronize(stream) };
    let total = t.elapsed();
    let flag = read_back(done, 1)[0].to_bits();
    println!(
        "PROBE cuModuleUnload with a 2 s kernel in flight: returned {r:?} after {unload:?}; \
         stream sync {s:?} after {total:?}; kernel finished: {}",
        flag == 1
    );

    // A plain cuModuleUnload while this thread captures (thread-local mode).
    let m = driver::load_module(&cubin).unwrap();
    use sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL;
    // SAFETY: our own stream; the probe only reports what the driver says.
    let (r, ended) = unsafe {
        sys::cuStreamBeginCapture_v2(stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL);
        let r = sys::cuModuleUnload(m);
        let mut graph: sys::CUgraph = std::ptr::null_mut();
        let ended = sys::cuStreamEndCapture(stream, &mut graph);
        if !graph.is_null() {
            sys::cuGraphDestroy(graph);
        }
        (r, ended)
    };
    println!("PROBE plain cuModuleUnload during a capture: {r:?}; end of capture: {ended:?}");
}
