//! Splitting a neuron range over the CPU cores.

use rayon::prelude::*;

/// Chunk boundaries are multiples of this many elements, so every chunk but the last starts on a
/// 64-byte boundary for `f32` (a full AVX-512 vector, a cache line): vector loops in the
/// generated kernel need no peeled head and two threads never write the same cache line.
pub const CHUNK_ALIGN: usize = 16;

/// Chunks per pool thread. More than one lets rayon's work stealing even out a core that is busy
/// with something else (XLA's own threads share the machine); few enough that per-chunk overhead
/// stays negligible.
const CHUNKS_PER_THREAD: usize = 4;

/// Runs `f(start, end)` over contiguous chunks covering `[0, n)` on rayon's global pool and
/// returns when all are done. Chunks hold at least `min_chunk` elements (rounded up to
/// [`CHUNK_ALIGN`]) and start on multiples of [`CHUNK_ALIGN`]; when `n` is no more than one such
/// chunk, or the pool has one thread, `f(0, n)` runs inline on the calling thread. `f` is never
/// called for an empty range.
pub fn parallel_chunks(n: usize, min_chunk: usize, f: impl Fn(usize, usize) + Sync) {
    if n == 0 {
        return;
    }
    let min_chunk = min_chunk.max(1).next_multiple_of(CHUNK_ALIGN);
    let threads = rayon::current_num_threads();
    if n <= min_chunk || threads <= 1 {
        f(0, n);
        return;
    }
    let chunks = n
        .div_ceil(min_chunk)
        .min(threads.saturating_mul(CHUNKS_PER_THREAD));
    let size = n.div_ceil(chunks).next_multiple_of(CHUNK_ALIGN);
    (0..n.div_ceil(size)).into_par_iter().for_each(|i| {
        let start = i * size;
        f(start, (start + size).min(n));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn ranges(n: usize, min_chunk: usize) -> Vec<(usize, usize)> {
        let seen = Mutex::new(Vec::new());
        parallel_chunks(n, min_chunk, |s, e| seen.lock().unwrap().push((s, e)));
        let mut v = seen.into_inner().unwrap();
        v.sort_unstable();
        v
    }

    #[test]
    fn chunks_cover_the_range_exactly_and_are_aligned() {
        for &(n, min_chunk) in &[
            (1, 1),
            (15, 0),
            (16, 16),
            (17, 1),
            (1000, 1),
            (1000, 100),
            (4097, 64),
            (100_000, 256),
        ] {
            let v = ranges(n, min_chunk);
            assert_eq!(v[0].0, 0);
            assert_eq!(v.last().unwrap().1, n);
            for w in v.windows(2) {
                assert_eq!(w[0].1, w[1].0, "contiguous for n={n}");
            }
            for &(s, e) in &v {
                assert!(s < e);
                assert_eq!(s % CHUNK_ALIGN, 0, "aligned start for n={n}");
            }
            if v.len() > 1 {
                for &(s, e) in &v[..v.len() - 1] {
                    assert!(e - s >= min_chunk, "chunk too small for n={n}");
                }
            }
        }
    }

    #[test]
    fn small_ranges_run_inline() {
        let caller = std::thread::current().id();
        parallel_chunks(100, 1000, |s, e| {
            assert_eq!((s, e), (0, 100));
            assert_eq!(std::thread::current().id(), caller);
        });
        parallel_chunks(0, 1, |_, _| panic!("called for an empty range"));
    }
}
