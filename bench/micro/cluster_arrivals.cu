// How a thread-block cluster should exchange a step's synaptic arrivals (issue 10, COBA x1):
// a microbenchmark of the cluster kernel's step without the neuron model, on Hopper.
//
// 16 blocks of 256 threads hold 4096 neurons (block b: neurons 256 b .. 256 b + 255). Every step
// each thread folds the arrivals of the step before into its neuron, then the warps that own
// this step's spiking sources (a fixed random list, 20 spikes a step, as COBA x1's ~50 Hz) deliver
// their rows (80 random targets each, from global memory) and the cluster meets at its barrier.
// The delivery modes (the arrivals of two variables: excitatory and inhibitory sources):
//   0 none: no delivery (the floor: fold and barrier)
//   1 remote: a reduction on the target block's shared memory (distributed shared memory), a count
//     a variable by step parity: the cluster kernel's counted arrivals today
//   2 local: an atomic on the delivering block's own histogram of the cluster's 4096 neurons (a
//     count a variable, three buffers by step mod 3), and each neuron's fold reads its counts from
//     the 16 blocks' histograms (32 loads through distributed shared memory, independent); each
//     block zeroes the buffer of the step after next
//   3 local16: as local, the two variables' counts packed in one 32-bit word (16 loads)
//   4 lists: each block lists its step's arrivals (target and variable, one word each) in its own
//     shared memory (three buffers by step mod 3), and after the barrier each warp reads two
//     blocks' lists through distributed shared memory and adds the arrivals at its own block's
//     neurons with local atomics; a block barrier, then each neuron folds its counts
// Prints ns a step per mode and a checksum of the neurons' state (equal for modes 1-4).
//
// Build and run on the GPU machine: nvcc -O3 -arch=sm_90 -o /tmp/ca bench/micro/cluster_arrivals.cu && /tmp/ca
#include <cooperative_groups.h>
#include <cstdio>
#include <cstdlib>
#include <vector>
namespace cg = cooperative_groups;

constexpr int BLOCKS = 16, THREADS = 256, N = BLOCKS * THREADS, DEG = 80, SPIKES = 20, LISTS = 1024;
constexpr int N_EXC = N * 4 / 5;
// mode 4: a list's words (its count, then at most LIST - 1 arrivals: 2 x 20 x 80 here)
constexpr int LIST = 2048;

__device__ __forceinline__ void cluster_barrier() {
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}

template <int MODE>
__global__ void __launch_bounds__(THREADS, 1)
    step_kernel(const int* __restrict__ targets, const int* __restrict__ spikers, int steps, float* out) {
    extern __shared__ unsigned smem[];
    cg::cluster_group cluster = cg::this_cluster();
    const unsigned rank = cluster.block_rank();
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int me = rank * THREADS + tid;
    // mode 1: cnt[parity][var][thread]; modes 2-3: hist[buffer][var][neuron] (mode 3: one var)
    constexpr int VARS = MODE == 3 ? 1 : 2;
    constexpr int BUFS = MODE >= 2 ? 3 : 2;
    constexpr int WIDTH = MODE == 4 ? LIST : MODE >= 2 ? N : THREADS;
    for (int i = tid; i < BUFS * VARS * WIDTH + (MODE == 4 ? 2 * THREADS : 0); i += THREADS) smem[i] = 0;
    float ge = 0.f, gi = 0.f;
    cluster.sync();
    for (int k = 0; k < steps; ++k) {
        // fold the arrivals of step k - 1
        if (MODE == 1) {
            unsigned* c = smem + ((k + 1) & 1) * 2 * THREADS;
            ge = ge * 0.98f + 0.6f * (float) c[tid];
            gi = gi * 0.99f + 6.7f * (float) c[THREADS + tid];
            c[tid] = 0;
            c[THREADS + tid] = 0;
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
        } else if (MODE >= 2) {
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
        if (MODE != 0) {
            const int* list = spikers + (k % LISTS) * SPIKES;
            for (int s = 0; s < SPIKES; ++s) {
                const int src = list[s];
                if (src / 32 != (int) rank * (THREADS / 32) + warp) continue;
                const int var = src < N_EXC ? 0 : 1;
                for (int t = lane; t < DEG; t += 32) {
                    const int tgt = targets[src * DEG + t];
                    if (MODE == 1) {
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
        cluster_barrier();
    }
    out[me] = ge + gi;
}

template <int MODE>
static float run(const int* targets, const int* spikers, int steps, float* out, double* checksum) {
    auto kernel = step_kernel<MODE>;
    const int vars = MODE == 3 ? 1 : 2, bufs = MODE >= 2 ? 3 : 2;
    const int width = MODE == 4 ? LIST : MODE >= 2 ? N : THREADS;
    const size_t bytes = (size_t) bufs * vars * width * 4 + (MODE == 4 ? 2 * THREADS * 4 : 0);
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
        cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, targets, spikers, steps, out);
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

int main() {
    const int steps = 100000;
    std::vector<int> t(N * DEG), s(LISTS * SPIKES);
    srand(7);
    for (int& x : t) x = rand() % N;
    for (int& x : s) x = rand() % N;
    int *targets, *spikers;
    float* out;
    cudaMalloc(&targets, t.size() * 4);
    cudaMalloc(&spikers, s.size() * 4);
    cudaMalloc(&out, N * 4);
    cudaMemcpy(targets, t.data(), t.size() * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(spikers, s.data(), s.size() * 4, cudaMemcpyHostToDevice);
    const char* names[5] = {"none (floor)", "remote reductions", "local histogram, 32 loads",
                            "local histogram, 16-bit pairs", "lists, read by the targets' blocks"};
    double sums[5];
    float ns[5];
    ns[0] = run<0>(targets, spikers, steps, out, &sums[0]);
    ns[1] = run<1>(targets, spikers, steps, out, &sums[1]);
    ns[2] = run<2>(targets, spikers, steps, out, &sums[2]);
    ns[3] = run<3>(targets, spikers, steps, out, &sums[3]);
    ns[4] = run<4>(targets, spikers, steps, out, &sums[4]);
    printf("| mode | ns a step (best of 3, %d steps) | checksum |\n|---|---|---|\n", steps);
    for (int m = 0; m < 5; ++m) printf("| %s | %.0f | %.6e |\n", names[m], ns[m], sums[m]);
    printf("checksums of modes 1-4 %s\n", (sums[1] == sums[2] && sums[2] == sums[3] && sums[3] == sums[4]) ? "equal" : "DIFFER");
    return 0;
}
