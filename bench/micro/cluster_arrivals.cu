// How a thread-block cluster should exchange a step's synaptic arrivals (issue 10, COBA x1):
// a microbenchmark of the cluster kernel's step without the neuron model, on Hopper.
//
// 16 blocks of 256 threads hold 4096 neurons (block b: neurons 256 b .. 256 b + 255). Every step
// each thread folds the arrivals of the step before into its neuron, then the warps that own
// this step's spiking sources deliver their rows (80 random targets each) and the cluster meets at
// its barrier. A step's sources are a warp's firing ballot (a 32-bit word a warp, loaded a step
// ahead: in the kernel the update gives them in registers): 20 distinct random sources a step
// (1024 steps' lists, reused; SPIKES a step where a number is given), or a network's own spike raster from FILE
// (scripts/cluster_raster.py writes COBA x1's, its bursts included).
// The delivery modes (the arrivals of two variables: excitatory and inhibitory sources):
//   0 none: no delivery (the floor: fold and barrier)
//   1 remote: a reduction on the target block's shared memory (distributed shared memory), a count
//     a variable by step parity, the targets from global memory, a spike at a time
//   2 local: an atomic on the delivering block's own histogram of the cluster's 4096 neurons (a
//     count a variable, three buffers by step mod 3), and each neuron's fold reads its counts from
//     the 16 blocks' histograms (32 loads through distributed shared memory, independent); each
//     block zeroes the buffer of the step after next
//   3 local16: as local, the two variables' counts packed in one 32-bit word (16 loads)
//   4 lists: each block lists its step's arrivals (target and variable, one word each) in its own
//     shared memory (three buffers by step mod 3), and after the barrier each warp reads two
//     blocks' lists through distributed shared memory and adds the arrivals at its own block's
//     neurons with local atomics; a block barrier, then each neuron folds its counts (skipped on a
//     raster: its bursts overflow the lists)
//   5 pull: each block lists its step's spiking sources (not their arrivals) in its own shared
//     memory (two buffers by step parity); after the barrier warp w reads blocks w and w + 8's
//     lists through distributed shared memory (their counts, then their sources: two round trips)
//     and adds each source's arrivals at its own block's neurons from a transposed copy of the
//     connectivity in shared memory (per source, its targets in this block as 16-bit local indices
//     with the variable in bit 8, 16-bit offsets; built on the host), the row's entries spread
//     over the warp's lanes; a block barrier, then each neuron folds its counts. No remote write:
//     the cluster barrier's release has nothing to wait for
//   6 remote, cached: as 1, the block's own rows' targets read from a copy in its shared memory
//     (the cluster kernel's target cache) instead of global memory
//   7 broadcast ballots: each warp with spikes writes its firing ballot (one 32-bit word) into every
//     block's shared memory (16 remote stores, one a lane, two buffers by step parity: a word for
//     each of the cluster's 128 warps); after the barrier each block reads the 128 words locally,
//     zeroes them, and adds the arrivals of every set bit from its transposed connectivity (as
//     5), a warp's words' spikes one after another: ~20 remote stores a block a step instead of
//     ~100 remote reductions, and no remote load
//   8 broadcast ballots, a lane a word: as 7, each lane with a nonzero word adds its bits' arrivals
//     itself (a word holds mostly one spike), its row's entries loaded four at a time before their
//     atomics
//   9 as 8, the remote store an explicit st.shared::cluster on a mapa address (8: a store through
//     a generic pointer)
//  10 as 9 without adding the arrivals (a diagnostic: the broadcast and the barrier alone; its
//     checksum is not the others')
//  11 as 6 in the cluster kernel's shape (its deliveries by the warp): two spikes at a time, their
//     rows' bounds shuffled from the lanes that hold them, each lane's 4 targets of both rows loaded
//     before any of their reductions
//  12 as 11 with the cluster kernel's barrier (barrier.cluster without .aligned)
//  13 as 0 (the floor) with that barrier
//  14 as 12, each reduction an explicit red.relaxed.cluster.shared::cluster.add.u32 on a 32-bit
//     mapa address (12: atomicAdd on a generic pointer, ATOM.E.ADD.STRONG.GPU)
// Prints ns a step per mode (best of 3 launches of 100,000 steps after a warm-up; the output
// poisoned before each) and a checksum of the neurons' state, equal for every mode that delivers.
//
// Build and run on the GPU machine:
//   nvcc -O3 -arch=sm_90a -o /tmp/ca bench/micro/cluster_arrivals.cu && /tmp/ca [FILE | SPIKES]
#include <cooperative_groups.h>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>
namespace cg = cooperative_groups;

constexpr int BLOCKS = 16, THREADS = 256, N = BLOCKS * THREADS, DEG = 80, LISTS = 1024;
constexpr int N_EXC = N * 4 / 5;
// mode 4: a list's words (its count, then at most LIST - 1 arrivals: 2 x 20 x 80 here)
constexpr int LIST = 2048;
// mode 5: a spike list's words (its count, then at most PULL_LIST - 1 sources)
constexpr int PULL_LIST = 264;

__device__ __forceinline__ void cluster_barrier() {
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}
// the cluster kernel's barrier (codegen::network_kernel::grid::cluster): not .aligned
__device__ __forceinline__ void cluster_barrier_unaligned() {
    asm volatile("barrier.cluster.arrive.release;\n\tbarrier.cluster.wait.acquire;" ::: "memory");
}

template <int MODE>
__global__ void __launch_bounds__(THREADS, 1)
    step_kernel(const int* __restrict__ targets, const unsigned* __restrict__ spikers, int lists, int steps, float* out,
                const unsigned short* __restrict__ pull_off, const unsigned short* __restrict__ pull_ent, int pull_max) {
    extern __shared__ unsigned smem[];
    cg::cluster_group cluster = cg::this_cluster();
    const unsigned rank = cluster.block_rank();
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int me = rank * THREADS + tid;
    // mode 1: cnt[parity][var][thread]; modes 2-3: hist[buffer][var][neuron] (mode 3: one var)
    constexpr int VARS = MODE == 3 ? 1 : 2;
    constexpr int BUFS = MODE >= 2 ? 3 : 2;
    constexpr int WIDTH = MODE == 4 ? LIST : MODE >= 2 ? N : THREADS;
    // mode 6: the counters as mode 1's, then the block's rows' targets (THREADS x DEG)
    int* const tcache = (int*) (smem + 2 * 2 * THREADS);
    if (MODE == 6 || MODE == 11 || MODE == 12 || MODE == 14) {
        for (int i = tid; i < 2 * 2 * THREADS; i += THREADS) smem[i] = 0;
        for (int i = tid; i < THREADS * DEG; i += THREADS) tcache[i] = targets[(size_t) rank * THREADS * DEG + i];
    }
    if (MODE < 5)
        for (int i = tid; i < BUFS * VARS * WIDTH + (MODE == 4 ? 2 * THREADS : 0); i += THREADS) smem[i] = 0;
    // mode 5: smem holds two spike lists, the block's counts by variable, then the block's
    // transposed connectivity: N + 1 offsets and its entries (16 bits each)
    unsigned* const pull_lists = smem;
    unsigned* const pull_acc = smem + 2 * PULL_LIST;
    unsigned short* const poff = (unsigned short*) (smem + 2 * PULL_LIST + 2 * THREADS);
    unsigned short* const pent = poff + (N + 2);
    if (MODE == 5 || (MODE >= 7 && MODE <= 10)) {
        for (int i = tid; i < 2 * PULL_LIST + 2 * THREADS; i += THREADS) smem[i] = 0;
        for (int i = tid; i < N + 1; i += THREADS) poff[i] = pull_off[rank * (N + 1) + i];
        for (int i = tid; i < pull_max; i += THREADS) pent[i] = pull_ent[(size_t) rank * pull_max + i];
    }
    float ge = 0.f, gi = 0.f;
    cluster.sync();
    // the warp's firing lanes of a step (its ballot), loaded a step ahead: the model's update in
    // the kernel gives them in registers, so the harness keeps their load off the step's chain
    const unsigned* const my_ballots = spikers + rank * (THREADS / 32) + warp;
    unsigned next = my_ballots[0];
    for (int k = 0; k < steps; ++k) {
        const unsigned mine = next;
        next = my_ballots[((k + 1) % lists) * (N / 32)];
        // fold the arrivals of step k - 1
        if (MODE == 1 || MODE == 6 || MODE == 11 || MODE == 12 || MODE == 14) {
            unsigned* c = smem + ((k + 1) & 1) * 2 * THREADS;
            ge = ge * 0.98f + 0.6f * (float) c[tid];
            gi = gi * 0.99f + 6.7f * (float) c[THREADS + tid];
            c[tid] = 0;
            c[THREADS + tid] = 0;
        } else if (MODE == 5 || (MODE >= 7 && MODE <= 10)) {
            ge = ge * 0.98f + 0.6f * (float) pull_acc[tid];
            gi = gi * 0.99f + 6.7f * (float) pull_acc[THREADS + tid];
            pull_acc[tid] = 0;
            pull_acc[THREADS + tid] = 0;
        } else if (MODE == 4) {
            // smem: 3 lists of LIST words (word 0 the count), then the block's counts by variable
            unsigned* acc = smem + 3 * 2 * LIST;
            const unsigned* l = smem + ((k + 2) % 3) * 2 * LIST;
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const unsigned* remote = cluster.map_shared_rank(l, warp + 8 * h);
                const unsigned n = remote[0];
                for (unsigned i = lane; i < n; i += 32) {
                    const unsigned e = remote[1 + i];
                    const unsigned tgt = e & 0xffffu;
                    if (tgt / THREADS == rank) atomicAdd(acc + (e >> 16) * THREADS + tgt % THREADS, 1u);
                }
            }
            __syncthreads();
            ge = ge * 0.98f + 0.6f * (float) acc[tid];
            gi = gi * 0.99f + 6.7f * (float) acc[THREADS + tid];
            acc[tid] = 0;
            acc[THREADS + tid] = 0;
            if (tid == 0) smem[((k + 1) % 3) * 2 * LIST] = 0;
        } else if (MODE == 2 || MODE == 3) {
            const unsigned* h = smem + ((k + 2) % 3) * VARS * N;
            unsigned e = 0, i = 0;
#pragma unroll
            for (int r = 0; r < BLOCKS; ++r) {
                const unsigned* remote = cluster.map_shared_rank(h, r);
                if (MODE == 2) {
                    e += remote[me];
                    i += remote[N + me];
                } else {
                    const unsigned w = remote[me];
                    e += w & 0xffffu;
                    i += w >> 16;
                }
            }
            ge = ge * 0.98f + 0.6f * (float) e;
            gi = gi * 0.99f + 6.7f * (float) i;
            // zero the buffer that step k + 1 writes (read by the others in step k - 1)
            uint4* z = (uint4*) (smem + ((k + 1) % 3) * VARS * N);
            for (int q = tid; q < VARS * N / 4; q += THREADS) z[q] = make_uint4(0, 0, 0, 0);
        } else {
            ge = ge * 0.98f;
            gi = gi * 0.99f;
        }
        // deliver step k's spikes owned by this warp
        if (MODE == 11 || MODE == 12 || MODE == 14) {
            // the lane's own neuron's row in the target cache (as the kernel's registers hold it)
            const int my_lo = tid * DEG, my_len = DEG;
            const int me_global = (int) rank * THREADS + tid;
            for (unsigned left = mine; left != 0u;) {
                const int a = __ffs((int) left) - 1;
                left &= left - 1u;
                const bool two = left != 0u;
                const int b = two ? __ffs((int) left) - 1 : a;
                left &= left - 1u;
                const int pre = __shfl_sync(0xffffffffu, me_global, a), pre2 = __shfl_sync(0xffffffffu, me_global, b);
                const int lo = __shfl_sync(0xffffffffu, my_lo, a), len = __shfl_sync(0xffffffffu, my_len, a);
                const int lo2 = __shfl_sync(0xffffffffu, my_lo, b), len2 = two ? __shfl_sync(0xffffffffu, my_len, b) : 0;
                const int var = pre < N_EXC ? 0 : 1, var2 = pre2 < N_EXC ? 0 : 1;
                for (int c0 = 0; c0 < len || c0 < len2; c0 += 128) {
                    int js[4], js2[4];
#pragma unroll
                    for (int u = 0; u < 4; ++u) {
                        const int at = c0 + lane + 32 * u;
                        js[u] = at < len ? tcache[lo + at] : -1;
                        js2[u] = at < len2 ? tcache[lo2 + at] : -1;
                    }
                    unsigned* const c = smem + (k & 1) * 2 * THREADS;
                    if (MODE == 14) {
                        const unsigned base = (unsigned) __cvta_generic_to_shared(c);
#pragma unroll
                        for (int u = 0; u < 8; ++u) {
                            const int j = u < 4 ? js[u] : js2[u - 4];
                            if (j < 0) continue;
                            const unsigned local = base + 4u * (unsigned) ((u < 4 ? var : var2) * THREADS + j % THREADS);
                            unsigned remote;
                            asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(local), "r"((unsigned) (j / THREADS)));
                            asm volatile("red.relaxed.cluster.shared::cluster.add.u32 [%0], 1;" :: "r"(remote) : "memory");
                        }
                    } else {
#pragma unroll
                        for (int u = 0; u < 4; ++u)
                            if (js[u] >= 0) atomicAdd(cluster.map_shared_rank(c + var * THREADS + js[u] % THREADS, js[u] / THREADS), 1u);
#pragma unroll
                        for (int u = 0; u < 4; ++u)
                            if (js2[u] >= 0) atomicAdd(cluster.map_shared_rank(c + var2 * THREADS + js2[u] % THREADS, js2[u] / THREADS), 1u);
                    }
                }
            }
        } else if (MODE >= 7 && MODE <= 10) {
            unsigned* const slot = pull_lists + (k & 1) * BLOCKS * (THREADS / 32) + rank * (THREADS / 32) + warp;
            if (mine != 0u && lane < BLOCKS) {
                if (MODE >= 9) {
                    unsigned remote;
                    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"((unsigned) __cvta_generic_to_shared(slot)), "r"((unsigned) lane));
                    asm volatile("st.shared::cluster.u32 [%0], %1;" :: "r"(remote), "r"(mine) : "memory");
                } else {
                    *cluster.map_shared_rank(slot, lane) = mine;
                }
            }
        } else if (MODE != 0 && MODE != 13) {
            for (unsigned bits = mine; bits != 0u;) {
                const int src = (int) ((rank * (THREADS / 32) + warp) * 32) + __ffs((int) bits) - 1;
                bits &= bits - 1u;
                if (MODE == 5) {
                    if (lane == 0) {
                        unsigned* l = pull_lists + (k & 1) * PULL_LIST;
                        const unsigned at = atomicAdd(l, 1u);
                        l[1 + at] = (unsigned) src;
                    }
                    continue;
                }
                const int var = src < N_EXC ? 0 : 1;
                for (int t = lane; t < DEG; t += 32) {
                    const int tgt = MODE == 6 ? tcache[(src % THREADS) * DEG + t] : targets[src * DEG + t];
                    if (MODE == 1 || MODE == 6) {
                        unsigned* c = smem + (k & 1) * 2 * THREADS + var * THREADS;
                        atomicAdd(cluster.map_shared_rank(c + (tgt % THREADS), tgt / THREADS), 1u);
                    } else if (MODE == 4) {
                        unsigned* l = smem + (k % 3) * 2 * LIST;
                        const unsigned mask = __activemask();
                        const int leader = __ffs(mask) - 1;
                        unsigned at = 0;
                        if (lane == leader) at = atomicAdd(l, (unsigned) __popc(mask));
                        at = __shfl_sync(mask, at, leader) + __popc(mask & ((1u << lane) - 1u));
                        l[1 + at] = (unsigned) tgt | (unsigned) var << 16;
                    } else if (MODE == 2) {
                        atomicAdd(smem + (k % 3) * 2 * N + var * N + tgt, 1u);
                    } else {
                        atomicAdd(smem + (k % 3) * N + tgt, var ? 1u << 16 : 1u);
                    }
                }
            }
        }
        if (MODE >= 12)
            cluster_barrier_unaligned();
        else
            cluster_barrier();
        if (MODE == 5) {
            // the other parity's list was last read in step k - 1, before this barrier
            if (tid == 0) pull_lists[((k + 1) & 1) * PULL_LIST] = 0;
            const unsigned* l = pull_lists + (k & 1) * PULL_LIST;
            const unsigned* remote = cluster.map_shared_rank(l, warp + 8 * (lane >> 4));
            const unsigned n = remote[0];
            for (unsigned base = 0;; base += 16) {
                const unsigned i = base + (lane & 15);
                const bool have = i < n;
                const unsigned src = have ? remote[1 + i] : 0u;
                unsigned left = __ballot_sync(0xffffffffu, have);
                if (left == 0u) break;
                while (left != 0u) {
                    const int b = __ffs((int) left) - 1;
                    left &= left - 1u;
                    const unsigned s = __shfl_sync(0xffffffffu, src, b);
                    const unsigned o0 = poff[s], o1 = poff[s + 1];
                    for (unsigned e = o0 + lane; e < o1; e += 32) {
                        const unsigned x = pent[e];
                        atomicAdd(pull_acc + (x >> 8) * THREADS + (x & 255u), 1u);
                    }
                }
            }
            __syncthreads();
        }
        if (MODE == 7) {
            // the words of step k; zeroed here, written again in step k + 2 (after the next barrier)
            unsigned* const words = pull_lists + (k & 1) * BLOCKS * (THREADS / 32);
            constexpr int PER_WARP = BLOCKS * (THREADS / 32) / (THREADS / 32);
            const unsigned w = lane < PER_WARP ? words[warp * PER_WARP + lane] : 0u;
            if (w != 0u) words[warp * PER_WARP + lane] = 0u;
            unsigned firing = __ballot_sync(0xffffffffu, w != 0u);
            while (firing != 0u) {
                const int b = __ffs((int) firing) - 1;
                firing &= firing - 1u;
                unsigned bits = __shfl_sync(0xffffffffu, w, b);
                const unsigned base = (unsigned) (warp * PER_WARP + b) * 32u;
                while (bits != 0u) {
                    const unsigned s = base + (unsigned) (__ffs((int) bits) - 1);
                    bits &= bits - 1u;
                    const unsigned o0 = poff[s], o1 = poff[s + 1];
                    for (unsigned e = o0 + lane; e < o1; e += 32) {
                        const unsigned x = pent[e];
                        atomicAdd(pull_acc + (x >> 8) * THREADS + (x & 255u), 1u);
                    }
                }
            }
            __syncthreads();
        }
        if (MODE >= 8 && MODE <= 10) {
            unsigned* const words = pull_lists + (k & 1) * BLOCKS * (THREADS / 32);
            constexpr int PER_WARP = BLOCKS * (THREADS / 32) / (THREADS / 32);
            unsigned bits = lane < PER_WARP ? words[warp * PER_WARP + lane] : 0u;
            if (bits != 0u) words[warp * PER_WARP + lane] = 0u;
            if (MODE == 10) bits = 0u;
            const unsigned base = (unsigned) (warp * PER_WARP + lane) * 32u;
            while (bits != 0u) {
                const unsigned s = base + (unsigned) (__ffs((int) bits) - 1);
                bits &= bits - 1u;
                const unsigned o0 = poff[s], o1 = poff[s + 1];
                for (unsigned e = o0; e < o1; e += 4) {
                    unsigned x[4];
#pragma unroll
                    for (int u = 0; u < 4; ++u) x[u] = e + u < o1 ? pent[e + u] : 0xffffu;
#pragma unroll
                    for (int u = 0; u < 4; ++u)
                        if (x[u] != 0xffffu) atomicAdd(pull_acc + (x[u] >> 8) * THREADS + (x[u] & 255u), 1u);
                }
            }
            __syncthreads();
        }
    }
    out[me] = ge + gi;
}

template <int MODE>
static float run(const int* targets, const unsigned* spikers, int lists, int steps, float* out, double* checksum,
                 const unsigned short* pull_off, const unsigned short* pull_ent, int pull_max) {
    auto kernel = step_kernel<MODE>;
    const int vars = MODE == 3 ? 1 : 2, bufs = MODE >= 2 ? 3 : 2;
    const int width = MODE == 4 ? LIST : MODE >= 2 ? N : THREADS;
    const size_t bytes = MODE == 6 || MODE == 11 || MODE == 12 || MODE == 14 ? (size_t) (2 * 2 * THREADS + THREADS * DEG) * 4 : MODE == 5 || MODE >= 7 ? (size_t) (2 * PULL_LIST + 2 * THREADS) * 4 + (size_t) (N + 2 + pull_max) * 2
                                   : (size_t) bufs * vars * width * 4 + (MODE == 4 ? 2 * THREADS * 4 : 0);
    cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
    cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int) bytes);
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(BLOCKS);
    cfg.blockDim = dim3(THREADS);
    cfg.dynamicSmemBytes = bytes;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = BLOCKS;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    float best = 1e30f;
    for (int rep = 0; rep < 4; ++rep) {  // the first a warm-up
        cudaMemset(out, 0xff, N * 4);   // poisoned: an unwritten neuron shows as NaN
        cudaEventRecord(a);
        cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, targets, spikers, lists, steps, out, pull_off, pull_ent, pull_max);
        cudaEventRecord(b);
        cudaEventSynchronize(b);
        if (e != cudaSuccess || cudaGetLastError() != cudaSuccess) {
            printf("mode %d: launch failed: %s\n", MODE, cudaGetErrorString(e));
            exit(1);
        }
        float ms;
        cudaEventElapsedTime(&ms, a, b);
        if (rep > 0 && ms < best) best = ms;
    }
    std::vector<float> h(N);
    cudaMemcpy(h.data(), out, N * 4, cudaMemcpyDeviceToHost);
    double sum = 0;
    for (float x : h) sum += x;
    *checksum = sum;
    return best * 1e6f / steps;
}

int main(int argc, char** argv) {
    const int steps = 100000;
    // FILE, or a number: the random lists' spikes a step (default 20)
    const bool from_file = argc > 1 && (argv[1][0] < '0' || argv[1][0] > '9');
    const int SPIKES = argc > 1 && !from_file ? atoi(argv[1]) : 20;
    if (SPIKES < 1 || SPIKES > N / 2) { printf("spikes a step: 1 to %d\n", N / 2); return 1; }
    std::vector<int> t(N * DEG), s(LISTS * SPIKES);
    srand(7);
    for (int& x : t) x = rand() % N;
    for (int l = 0; l < LISTS; ++l)  // a step's sources distinct, as a network's
        for (int j = 0; j < SPIKES; ++j) {
            int x;
            bool again;
            do {
                x = rand() % N;
                again = false;
                for (int q = 0; q < j; ++q) again = again || s[l * SPIKES + q] == x;
            } while (again);
            s[l * SPIKES + j] = x;
        }
    // the steps' firing ballots: a word for each warp of the cluster; from a file where one is
    // given (a network's spike raster: uint32 words, N / 32 a step), else the random lists
    int lists = LISTS;
    std::vector<unsigned> w((size_t) LISTS * (N / 32), 0u);
    for (int l = 0; l < LISTS; ++l)
        for (int j = 0; j < SPIKES; ++j) {
            const int x = s[l * SPIKES + j];
            w[(size_t) l * (N / 32) + x / 32] |= 1u << (x % 32);
        }
    if (from_file) {
        FILE* f = fopen(argv[1], "rb");
        if (!f) { printf("cannot open %s\n", argv[1]); return 1; }
        fseek(f, 0, SEEK_END);
        const long bytes = ftell(f);
        fseek(f, 0, SEEK_SET);
        lists = (int) (bytes / (4 * (N / 32)));
        if (lists < 1) { printf("%s holds no step\n", argv[1]); return 1; }
        w.assign((size_t) lists * (N / 32), 0u);
        if (fread(w.data(), 4, w.size(), f) != w.size()) { printf("short read of %s\n", argv[1]); return 1; }
        fclose(f);
        long spikes = 0, most = 0;
        for (int l = 0; l < lists; ++l) {
            long here = 0;
            for (int q = 0; q < N / 32; ++q) here += __builtin_popcount(w[(size_t) l * (N / 32) + q]);
            spikes += here;
            most = here > most ? here : most;
        }
        printf("spikes from %s: %d steps, %.1f a step, at most %ld\n", argv[1], lists, (double) spikes / lists, most);
    }
    int* targets;
    unsigned* spikers;
    float* out;
    cudaMalloc(&targets, t.size() * 4);
    cudaMalloc(&spikers, w.size() * 4);
    cudaMalloc(&out, N * 4);
    cudaMemcpy(targets, t.data(), t.size() * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(spikers, w.data(), w.size() * 4, cudaMemcpyHostToDevice);
    // mode 5's transposed connectivity: for block r and source i, its targets in block r
    std::vector<std::vector<unsigned short>> ent(BLOCKS);
    std::vector<unsigned short> off((size_t) BLOCKS * (N + 1));
    for (int r = 0; r < BLOCKS; ++r) {
        for (int i = 0; i < N; ++i) {
            off[(size_t) r * (N + 1) + i] = (unsigned short) ent[r].size();
            for (int d = 0; d < DEG; ++d) {
                const int tgt = t[(size_t) i * DEG + d];
                if (tgt / THREADS == r) ent[r].push_back((unsigned short) (tgt % THREADS | (i < N_EXC ? 0 : 1) << 8));
            }
        }
        off[(size_t) r * (N + 1) + N] = (unsigned short) ent[r].size();
        if (ent[r].size() > 65535) { printf("block %d: %zu entries, over 16 bits\n", r, ent[r].size()); return 1; }
    }
    int pull_max = 0;
    for (auto& e : ent) pull_max = e.size() > (size_t) pull_max ? (int) e.size() : pull_max;
    std::vector<unsigned short> flat((size_t) BLOCKS * pull_max, 0);
    for (int r = 0; r < BLOCKS; ++r) std::copy(ent[r].begin(), ent[r].end(), flat.begin() + (size_t) r * pull_max);
    unsigned short *pull_off, *pull_ent;
    cudaMalloc(&pull_off, off.size() * 2);
    cudaMalloc(&pull_ent, flat.size() * 2);
    cudaMemcpy(pull_off, off.data(), off.size() * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(pull_ent, flat.data(), flat.size() * 2, cudaMemcpyHostToDevice);
    const char* names[15] = {"none (floor)", "remote reductions", "local histogram, 32 loads",
                            "local histogram, 16-bit pairs", "lists, read by the targets' blocks",
                            "pull: spike lists read, transposed rows in shared memory",
                            "remote reductions, targets from shared memory",
                            "broadcast ballots, transposed rows in shared memory",
                            "broadcast ballots, a lane a word",
                            "broadcast ballots, a lane a word, st.shared::cluster",
                            "(diagnostic) broadcast ballots and barrier only",
                            "remote reductions from shared memory, the cluster kernel's shape",
                            "the same, the barrier not .aligned (the cluster kernel's)",
                            "none (floor), the barrier not .aligned",
                            "the same as 12, red.relaxed.cluster.shared::cluster"};
    double sums[15];
    float ns[15];
    ns[0] = run<0>(targets, spikers, lists, steps, out, &sums[0], pull_off, pull_ent, pull_max);
    ns[1] = run<1>(targets, spikers, lists, steps, out, &sums[1], pull_off, pull_ent, pull_max);
    ns[2] = run<2>(targets, spikers, lists, steps, out, &sums[2], pull_off, pull_ent, pull_max);
    ns[3] = run<3>(targets, spikers, lists, steps, out, &sums[3], pull_off, pull_ent, pull_max);
    ns[4] = from_file || SPIKES > 20 ? 0.f : run<4>(targets, spikers, lists, steps, out, &sums[4], pull_off, pull_ent, pull_max);
    ns[5] = run<5>(targets, spikers, lists, steps, out, &sums[5], pull_off, pull_ent, pull_max);
    ns[6] = run<6>(targets, spikers, lists, steps, out, &sums[6], pull_off, pull_ent, pull_max);
    ns[7] = run<7>(targets, spikers, lists, steps, out, &sums[7], pull_off, pull_ent, pull_max);
    ns[8] = run<8>(targets, spikers, lists, steps, out, &sums[8], pull_off, pull_ent, pull_max);
    ns[9] = run<9>(targets, spikers, lists, steps, out, &sums[9], pull_off, pull_ent, pull_max);
    if (from_file || SPIKES > 20) sums[4] = sums[1];  // mode 4 skipped: its lists would overflow
    ns[10] = run<10>(targets, spikers, lists, steps, out, &sums[10], pull_off, pull_ent, pull_max);
    ns[11] = run<11>(targets, spikers, lists, steps, out, &sums[11], pull_off, pull_ent, pull_max);
    ns[12] = run<12>(targets, spikers, lists, steps, out, &sums[12], pull_off, pull_ent, pull_max);
    ns[13] = run<13>(targets, spikers, lists, steps, out, &sums[13], pull_off, pull_ent, pull_max);
    ns[14] = run<14>(targets, spikers, lists, steps, out, &sums[14], pull_off, pull_ent, pull_max);
    printf("| mode | ns a step (best of 3, %d steps, %s) | checksum |\n|---|---|---|\n", steps, from_file ? argv[1] : (std::to_string(SPIKES) + " random spikes a step").c_str());
    for (int m = 0; m < 15; ++m) printf("| %s | %.0f | %.6e |\n", names[m], ns[m], sums[m]);
    bool same = true;
    for (int m = 2; m < 15; ++m) same = same && (m == 10 || m == 13 || sums[m] == sums[1]);
    printf("checksums of modes 1-9, 11, 12 and 14 %s\n", same ? "equal" : "DIFFER");
    return 0;
}
