// Where the register grid's step goes at COBA x10 and x100 (issue 10): a microbenchmark of the
// one-barrier kernel's step without the neuron model, on Hopper, so that each cost on the step's
// chain is timed apart: the grid barrier, the fold of the step before's arrivals from global
// memory, the loads of the spiking rows' targets, and the float reductions into the accumulators.
//
// BLOCKS blocks of 128 threads (co-resident: a cooperative launch, or clusters of 8 whose
// co-residency main checks), each holding the neurons of
// up to SLOTS (4) virtual blocks of 128 (the kernel's register slots: virtual block blockIdx.x + k
// gridDim.x is slot k, one neuron a thread). Every step each thread folds its slots' two
// accumulators of the step before (one load each, zeroed where nonzero, as the kernel does),
// then each warp delivers its slots' spikes of the step (a firing ballot a warp and slot, loaded
// a step ahead: in the kernel the update gives them in registers): 80 targets a row from a table
// of N x 80 random int32 targets (x100's is 128 MB, beyond the L2; x10's 12.8 MB fits), a float
// reduction (atomicAdd, no result used: RED) on the target's accumulator of the step's parity,
// excitatory sources (the first 80%) on the first accumulator. Then the grid barrier: the
// kernel's acquire barrier (thread 0: red.release.gpu arrival on one counter, ld.acquire.gpu
// polls; __syncthreads on either side).
//
// Modes:
//   0 barrier: the barrier alone (and the ballots' loads)
//   1 fold: 0 and the fold (accumulator loads of every slot, issued before any is used)
//   2 deliver: 1 and the deliveries as the kernel makes them (a warp's spikes slot after slot,
//     two rows at a time, each lane's targets of both rows loaded before their reductions)
//   3 hashed targets: 2 with each target computed from a hash of (source, synapse) instead of
//     loaded: the reductions without the table's loads
//   4 loads only: 2 without the reductions (each target added to a register checksum): the
//     table's loads without the reductions
//   5 all rows first: 2 with a warp's spikes of every slot gathered first (up to 8 rows), every
//     lane's targets of all of them loaded, then the reductions: one round trip of loads a warp
//   6 reductions only, spread: the step's arrivals (spikes x 80) made by every thread of the grid
//     in equal shares, hashed targets: the reductions' throughput with no imbalance and no loads
//   7 pairs across slots: 2 with a pair's two rows taken from any of the warp's slots (the
//     slots' ballots as one sequence), not from one slot at a time
//
// Prints ns a step per mode under the flat barrier, then modes 0, 1, 2 and 5 under each barrier
// (BAR below) (best of 3 launches after a warm-up; the output poisoned before each) and a
// checksum of the neurons' conductances: modes 2, 5 and 7 make the same reductions in another
// order and must agree to float rounding; 3, 4 and 6 differ by design.
//
// Build and run on the GPU machine:
//   nvcc -O3 -arch=sm_90a [-DSLOTS=8] -o /tmp/gs bench/micro/grid_step.cu && /tmp/gs NEURONS BLOCKS SPIKES [STEPS]
//   (x10: /tmp/gs 40000 320 200; x100: /tmp/gs 400000 784 2000: BLOCKS a multiple of 8)
#include <cooperative_groups.h>
#include <cstdio>
#include <cstdlib>
#include <vector>

// SLOTS: the register slots a block holds (the library's 4; -DSLOTS=8 for fewer, fuller blocks)
#ifndef SLOTS
#define SLOTS 4
#endif
constexpr int THREADS = 128, DEG = 80, LISTS = 64;

// The barriers (BAR): the counter's word 0 takes the arrivals; word 512 (4 KiB on, another L2
// line) is the flag of barriers 2 and 4.
//   0 flat: the kernel's acquire barrier (thread 0 of every block: red.release.gpu arrival on one
//     counter, then ld.acquire.gpu polls of it; __syncthreads on either side)
//   1 flat, polls backed off: 0 with __nanosleep(BACKOFF ns) between a block's polls
//   2 flag: the arrival an atom.acq_rel.gpu with its result; the last block to arrive stores the
//     step in a flag on another line (st.release.gpu) and every block polls the flag, so that
//     the polls do not queue with the arrivals on one line
//   3 clusters: clusters of CLUSTER blocks meet at barrier.cluster, then only rank 0's thread 0
//     arrives at the counter (one arrival a cluster) and polls it, then the cluster meets again
//   4 clusters and flag: 3 with 2's arrival and flag
constexpr int CLUSTER = 8, BACKOFF = 64;

__device__ __forceinline__ void cluster_sync_all() {
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}

__device__ __forceinline__ unsigned long long poll(const unsigned long long* word) {
    unsigned long long v;
    asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(word) : "memory");
    return v;
}

// the arrival of barrier 2 and 4: the last of `count` arrivals at step `step` raises the flag
__device__ __forceinline__ void arrive_flag(unsigned long long* word, unsigned long long step, unsigned long long count) {
    unsigned long long old;
    asm volatile("atom.acq_rel.gpu.global.add.u64 %0, [%1], 1;" : "=l"(old) : "l"(word) : "memory");
    if (old + 1 == step * count)
        asm volatile("st.release.gpu.global.u64 [%0], %1;" ::"l"(word + 512), "l"(step) : "memory");
    else
        while (poll(word + 512) < step) {}
}

template <int BAR>
__device__ __forceinline__ void grid_barrier(unsigned long long* word, unsigned long long step) {
    if (BAR >= 3) {
        cluster_sync_all();
        unsigned rank;
        asm("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
        if (rank == 0 && threadIdx.x == 0) {
            const unsigned long long clusters = gridDim.x / CLUSTER;
            if (BAR == 4) {
                arrive_flag(word, step, clusters);
            } else {
                asm volatile("red.release.gpu.global.add.u64 [%0], 1;" ::"l"(word) : "memory");
                while (poll(word) < step * clusters) {}
            }
        }
        cluster_sync_all();
        return;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        if (BAR == 2) {
            arrive_flag(word, step, gridDim.x);
        } else {
            asm volatile("red.release.gpu.global.add.u64 [%0], 1;" ::"l"(word) : "memory");
            while (poll(word) < step * gridDim.x)
                if (BAR == 1) __nanosleep(BACKOFF);
        }
    }
    __syncthreads();
}

__device__ __forceinline__ int hashed(int src, int s, int n) {
    unsigned x = (unsigned) src * 2654435761u ^ (unsigned) s * 40503u;
    x ^= x >> 15;
    x *= 2246822519u;
    x ^= x >> 13;
    return (int) (x % (unsigned) n);
}

template <int MODE, int BAR>
__global__ void __launch_bounds__(THREADS, 8)
    step_kernel(int n, int n_exc, int vblocks, int steps, const int* __restrict__ targets, const unsigned* __restrict__ ballots,
                float* acc, unsigned long long* barrier, float* out, int spikes) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int words = (n + 31) / 32;
    float ge[SLOTS] = {}, gi[SLOTS] = {}, sum = 0.f;
    unsigned next[SLOTS];
#pragma unroll
    for (int k = 0; k < SLOTS; ++k) {
        const int vb = blockIdx.x + k * gridDim.x;
        next[k] = vb < vblocks ? ballots[vb * 4 + warp] : 0u;
    }
    for (int s = 0; s < steps; ++s) {
        unsigned mine[SLOTS];
        const unsigned* const list = ballots + (size_t) ((s + 1) % LISTS) * words;
#pragma unroll
        for (int k = 0; k < SLOTS; ++k) {
            mine[k] = next[k];
            const int vb = blockIdx.x + k * gridDim.x;
            next[k] = vb < vblocks ? list[vb * 4 + warp] : 0u;
        }
        float* const before = acc + (size_t) ((s + 1) & 1) * 2 * n;
        float* const now = acc + (size_t) (s & 1) * 2 * n;
        if (MODE >= 1) {
            float a[SLOTS], b[SLOTS];
#pragma unroll
            for (int k = 0; k < SLOTS; ++k) {
                const int i = (blockIdx.x + k * gridDim.x) * THREADS + threadIdx.x;
                a[k] = i < n ? before[i] : 0.f;
                b[k] = i < n ? before[n + i] : 0.f;
            }
#pragma unroll
            for (int k = 0; k < SLOTS; ++k) {
                const int i = (blockIdx.x + k * gridDim.x) * THREADS + threadIdx.x;
                if (a[k] != 0.f) before[i] = 0.f;
                if (b[k] != 0.f) before[n + i] = 0.f;
                ge[k] = ge[k] * 0.98f + a[k];
                gi[k] = gi[k] * 0.99f + b[k];
            }
        }
        if (MODE == 6) {
            const int total = spikes * DEG, threads = gridDim.x * THREADS;
            const int t = blockIdx.x * THREADS + threadIdx.x;
            for (int e = t; e < total; e += threads) {
                const int src = hashed(s, e / DEG, n);
                const int j = hashed(src, e % DEG, n);
                atomicAdd(now + (src < n_exc ? 0 : n) + j, src < n_exc ? 0.6f : 6.7f);
            }
        } else if (MODE == 5) {
            int srcs[8];
            int m = 0;
#pragma unroll
            for (int k = 0; k < SLOTS; ++k) {
                unsigned left = mine[k];
                const int base = (blockIdx.x + k * gridDim.x) * THREADS + warp * 32;
                while (left != 0u && m < 8) {
                    srcs[m] = base + __ffs((int) left) - 1;
                    left &= left - 1u;
                    ++m;
                }
            }
            // (more than 8 rows a warp: the rest one at a time, below)
            int js[8][3];
#pragma unroll
            for (int r = 0; r < 8; ++r)
#pragma unroll
                for (int u = 0; u < 3; ++u) {
                    const int at = lane + 32 * u;
                    js[r][u] = r < m && at < DEG ? targets[(size_t) srcs[r] * DEG + at] : -1;
                }
#pragma unroll
            for (int r = 0; r < 8; ++r)
#pragma unroll
                for (int u = 0; u < 3; ++u)
                    if (js[r][u] >= 0) atomicAdd(now + (srcs[r] < n_exc ? 0 : n) + js[r][u], srcs[r] < n_exc ? 0.6f : 6.7f);
            int seen = 0;
#pragma unroll
            for (int k = 0; k < SLOTS; ++k) {
                const int base = (blockIdx.x + k * gridDim.x) * THREADS + warp * 32;
                for (unsigned left = mine[k]; left != 0u; left &= left - 1u) {
                    if (seen++ < 8) continue;
                    const int src = base + __ffs((int) left) - 1;
                    for (int at = lane; at < DEG; at += 32)
                        atomicAdd(now + (src < n_exc ? 0 : n) + targets[(size_t) src * DEG + at], src < n_exc ? 0.6f : 6.7f);
                }
            }
        } else if (MODE == 7) {
            // two rows at a time as 2, the pair's rows drawn from any slots: the slots' ballots
            // as one sequence
            // (a slot's word picked by an unrolled select: a dynamic index would put mine in
            // local memory)
            auto word = [&](int q) {
                unsigned x = 0u;
#pragma unroll
                for (int r = 0; r < SLOTS; ++r)
                    if (r == q) x = mine[r];
                return x;
            };
            int k = 0, k2 = 0;
            unsigned left = mine[0];
            for (;;) {
                while (left == 0u && k + 1 < SLOTS) left = word(++k);
                if (left == 0u) break;
                const int src = (blockIdx.x + k * gridDim.x) * THREADS + warp * 32 + __ffs((int) left) - 1;
                left &= left - 1u;
                k2 = k;
                while (left == 0u && k2 + 1 < SLOTS) left = word(++k2);
                const bool two = left != 0u;
                const int src2 = two ? (blockIdx.x + k2 * gridDim.x) * THREADS + warp * 32 + __ffs((int) left) - 1 : src;
                if (two) left &= left - 1u;
                k = k2;
                int js[3], js2[3];
#pragma unroll
                for (int u = 0; u < 3; ++u) {
                    const int at = lane + 32 * u;
                    js[u] = at < DEG ? targets[(size_t) src * DEG + at] : -1;
                    js2[u] = two && at < DEG ? targets[(size_t) src2 * DEG + at] : -1;
                }
#pragma unroll
                for (int u = 0; u < 3; ++u) {
                    if (js[u] >= 0) atomicAdd(now + (src < n_exc ? 0 : n) + js[u], src < n_exc ? 0.6f : 6.7f);
                    if (js2[u] >= 0) atomicAdd(now + (src2 < n_exc ? 0 : n) + js2[u], src2 < n_exc ? 0.6f : 6.7f);
                }
            }
        } else if (MODE >= 2) {
#pragma unroll
            for (int k = 0; k < SLOTS; ++k) {
                const int base = (blockIdx.x + k * gridDim.x) * THREADS + warp * 32;
                for (unsigned left = mine[k]; left != 0u;) {
                    const int src = base + __ffs((int) left) - 1;
                    left &= left - 1u;
                    const bool two = left != 0u;
                    const int src2 = two ? base + __ffs((int) left) - 1 : src;
                    left &= left - 1u;
                    int js[3], js2[3];
#pragma unroll
                    for (int u = 0; u < 3; ++u) {
                        const int at = lane + 32 * u;
                        if (MODE == 3) {
                            js[u] = at < DEG ? hashed(src, at, n) : -1;
                            js2[u] = two && at < DEG ? hashed(src2, at, n) : -1;
                        } else {
                            js[u] = at < DEG ? targets[(size_t) src * DEG + at] : -1;
                            js2[u] = two && at < DEG ? targets[(size_t) src2 * DEG + at] : -1;
                        }
                    }
#pragma unroll
                    for (int u = 0; u < 3; ++u) {
                        if (MODE == 4) {
                            sum += (float) js[u] + (float) js2[u];
                            continue;
                        }
                        if (js[u] >= 0) atomicAdd(now + (src < n_exc ? 0 : n) + js[u], src < n_exc ? 0.6f : 6.7f);
                        if (js2[u] >= 0) atomicAdd(now + (src2 < n_exc ? 0 : n) + js2[u], src2 < n_exc ? 0.6f : 6.7f);
                    }
                }
            }
        }
        grid_barrier<BAR>(barrier, (unsigned long long) (s + 1));
    }
#pragma unroll
    for (int k = 0; k < SLOTS; ++k) {
        const int i = (blockIdx.x + k * gridDim.x) * THREADS + threadIdx.x;
        if (i < n) out[i] = ge[k] + gi[k] + sum;
    }
}

template <int MODE, int BAR>
static float run(int n, int blocks, int steps, int spikes, const int* targets, const unsigned* ballots, float* acc,
                 unsigned long long* barrier, float* out, double* checksum) {
    const int n_exc = n * 4 / 5, vblocks = (n + THREADS - 1) / THREADS;
    auto kernel = step_kernel<MODE, BAR>;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(blocks);
    cfg.blockDim = dim3(THREADS);
    cudaLaunchAttribute attr[1];
    if (BAR >= 3) {  // clusters (co-residency checked in main)
        attr[0].id = cudaLaunchAttributeClusterDimension;
        attr[0].val.clusterDim.x = CLUSTER;
        attr[0].val.clusterDim.y = 1;
        attr[0].val.clusterDim.z = 1;
    } else {
        attr[0].id = cudaLaunchAttributeCooperative;
        attr[0].val.cooperative = 1;
    }
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    float best = 1e30f;
    for (int rep = 0; rep < 4; ++rep) {  // the first a warm-up
        cudaMemset(acc, 0, (size_t) 4 * n * 4);
        cudaMemset(barrier, 0, 8192);
        cudaMemset(out, 0xff, (size_t) n * 4);  // poisoned: an unwritten neuron shows as NaN
        cudaEventRecord(a);
        cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, n, n_exc, vblocks, steps, targets, ballots, acc, barrier, out, spikes);
        cudaEventRecord(b);
        cudaEventSynchronize(b);
        if (e != cudaSuccess || cudaGetLastError() != cudaSuccess) {
            printf("mode %d, barrier %d: launch failed: %s\n", MODE, BAR, cudaGetErrorString(e));
            exit(1);
        }
        float ms;
        cudaEventElapsedTime(&ms, a, b);
        if (rep > 0 && ms < best) best = ms;
    }
    std::vector<float> h(n);
    cudaMemcpy(h.data(), out, (size_t) n * 4, cudaMemcpyDeviceToHost);
    double sum = 0;
    for (float x : h) sum += x;
    *checksum = sum;
    return best * 1e6f / steps;
}

// modes 0, 1, 2 and 5 under barrier BAR: a column of the second table
template <int BAR>
static void column(float* ns, double* sums, int n, int blocks, int steps, int spikes, const int* targets, const unsigned* ballots,
                   float* acc, unsigned long long* barrier, float* out) {
    ns[0] = run<0, BAR>(n, blocks, steps, spikes, targets, ballots, acc, barrier, out, &sums[0]);
    ns[1] = run<1, BAR>(n, blocks, steps, spikes, targets, ballots, acc, barrier, out, &sums[1]);
    ns[2] = run<2, BAR>(n, blocks, steps, spikes, targets, ballots, acc, barrier, out, &sums[2]);
    ns[3] = run<5, BAR>(n, blocks, steps, spikes, targets, ballots, acc, barrier, out, &sums[3]);
}

int main(int argc, char** argv) {
    if (argc < 4) {
        printf("usage: %s NEURONS BLOCKS SPIKES [STEPS]\n", argv[0]);
        return 1;
    }
    const int n = atoi(argv[1]), blocks = atoi(argv[2]), spikes = atoi(argv[3]);
    const int steps = argc > 4 ? atoi(argv[4]) : 10000;
    const int vblocks = (n + THREADS - 1) / THREADS, words = (n + 31) / 32;
    if (n < THREADS || blocks < 1 || blocks % CLUSTER || (vblocks + blocks - 1) / blocks > SLOTS || spikes < 0 || spikes > n / 2 || steps < 1) {
        printf("NEURONS >= %d, BLOCKS a multiple of %d, BLOCKS * %d * %d >= NEURONS, 0 <= SPIKES <= NEURONS / 2\n", THREADS, CLUSTER, SLOTS, THREADS);
        return 1;
    }
    int per_sm = 0;
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, step_kernel<5, 0>, THREADS, 0);
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    int clusters = 0;
    {
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = dim3(blocks);
        cfg.blockDim = dim3(THREADS);
        cudaLaunchAttribute attr[1];
        attr[0].id = cudaLaunchAttributeClusterDimension;
        attr[0].val.clusterDim.x = CLUSTER;
        attr[0].val.clusterDim.y = 1;
        attr[0].val.clusterDim.z = 1;
        cfg.attrs = attr;
        cfg.numAttrs = 1;
        cudaOccupancyMaxActiveClusters(&clusters, step_kernel<5, 4>, &cfg);
    }
    if (blocks > per_sm * prop.multiProcessorCount || blocks / CLUSTER > clusters) {
        printf("%d blocks are not co-resident (%d a multiprocessor, %d clusters of %d)\n", blocks, per_sm, clusters, CLUSTER);
        return 1;
    }
    std::vector<int> t((size_t) n * DEG);
    srand(7);
    for (int& x : t) x = rand() % n;
    std::vector<unsigned> w((size_t) LISTS * words, 0u);
    for (int l = 0; l < LISTS; ++l)
        for (int j = 0; j < spikes;) {  // a step's sources distinct
            const int x = rand() % n;
            unsigned& word = w[(size_t) l * words + x / 32];
            if (word >> (x % 32) & 1u) continue;
            word |= 1u << (x % 32);
            ++j;
        }
    int* targets;
    unsigned* ballots;
    float *acc, *out;
    unsigned long long* barrier;
    cudaMalloc(&targets, t.size() * 4);
    cudaMalloc(&ballots, w.size() * 4);
    cudaMalloc(&acc, (size_t) 4 * n * 4);
    cudaMalloc(&out, (size_t) n * 4);
    cudaMalloc(&barrier, 8192);
    cudaMemcpy(targets, t.data(), t.size() * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(ballots, w.data(), w.size() * 4, cudaMemcpyHostToDevice);
    const char* names[] = {"barrier", "fold", "deliver (the kernel's)", "hashed targets", "loads only", "all rows first", "reductions only, spread", "pairs across slots"};
    double sums[8];
    float ns[8];
    ns[0] = run<0, 0>(n, blocks, steps, spikes, targets, ballots, acc, barrier, out, &sums[0]);
    ns[1] = run<1, 0>(n, blocks, steps, spikes, targets, ballots, acc, barrier, out, &sums[1]);
    ns[2] = run<2, 0>(n, blocks, steps, spikes, targets, ballots, acc, barrier, out, &sums[2]);
    ns[3] = run<3, 0>(n, blocks, steps, spikes, targets, ballots, acc, barrier, out, &sums[3]);
    ns[4] = run<4, 0>(n, blocks, steps, spikes, targets, ballots, acc, barrier, out, &sums[4]);
    ns[5] = run<5, 0>(n, blocks, steps, spikes, targets, ballots, acc, barrier, out, &sums[5]);
    ns[6] = run<6, 0>(n, blocks, steps, spikes, targets, ballots, acc, barrier, out, &sums[6]);
    ns[7] = run<7, 0>(n, blocks, steps, spikes, targets, ballots, acc, barrier, out, &sums[7]);
    printf("%d neurons, %d blocks of %d (%d slots), %d spikes a step (%d arrivals), %d steps, %d blocks a multiprocessor at most\n", n, blocks,
           THREADS, (vblocks + blocks - 1) / blocks, spikes, spikes * DEG, steps, per_sm);
    printf("| mode | ns a step | checksum |\n|---|---|---|\n");
    for (int m = 0; m < 8; ++m) printf("| %d %s | %.0f | %.6g |\n", m, names[m], ns[m], sums[m]);
    const char* bars[] = {"flat", "flat, polls backed off", "flag", "clusters", "clusters and flag"};
    float bns[5][4];
    double bsums[5][4];
    column<0>(bns[0], bsums[0], n, blocks, steps, spikes, targets, ballots, acc, barrier, out);
    column<1>(bns[1], bsums[1], n, blocks, steps, spikes, targets, ballots, acc, barrier, out);
    column<2>(bns[2], bsums[2], n, blocks, steps, spikes, targets, ballots, acc, barrier, out);
    column<3>(bns[3], bsums[3], n, blocks, steps, spikes, targets, ballots, acc, barrier, out);
    column<4>(bns[4], bsums[4], n, blocks, steps, spikes, targets, ballots, acc, barrier, out);
    printf("\nns a step by barrier (clusters of %d, at most %d clusters resident; backoff %d ns):\n| barrier | 0 barrier | 1 fold | 2 deliver | 5 all rows first |\n|---|---|---|---|---|\n", CLUSTER, clusters, BACKOFF);
    bool agree = true;
    for (int r = 0; r < 5; ++r) {
        printf("| %d %s | %.0f | %.0f | %.0f | %.0f |\n", r, bars[r], bns[r][0], bns[r][1], bns[r][2], bns[r][3]);
        for (int c = 0; c < 4; ++c) {
            const double ref = bsums[0][c], d = ref != 0 ? (bsums[r][c] - ref) / ref : bsums[r][c];
            agree = agree && d < 1e-4 && d > -1e-4;
        }
    }
    printf("checksums %s across barriers\n", agree ? "agree" : "DIFFER");
    const double rel = sums[2] != 0 ? (sums[5] - sums[2]) / sums[2] : sums[5];
    const double rel7 = sums[2] != 0 ? (sums[7] - sums[2]) / sums[2] : sums[7];
    printf("checksums of modes 2, 5 and 7 %s (relative differences %.2g, %.2g: float reductions in another order)\n",
           rel < 1e-4 && rel > -1e-4 && rel7 < 1e-4 && rel7 > -1e-4 ? "agree" : "DIFFER", rel, rel7);
    return 0;
}
