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
