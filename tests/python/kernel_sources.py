"""CUDA sources with their C twins, shared by tests/python/test_custom_kernels.py (which compiles
every one with NVRTC) and bench/bench_custom_kernels.py. Conventions: see spikeforge.kernels."""

ELEMENTWISE_CU = r"""
extern "C" __global__ void relu(const float* x, float* out, long long n_x, long long n) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i < n) out[i] = fmaxf(x[i], 0.0f);
}
extern "C" __global__ void sigmoid(const float* x, float* out, long long n_x, long long n) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i < n) out[i] = 1.0f / (1.0f + expf(-x[i]));
}
extern "C" __global__ void split(const float* x, float* pos, float* neg,
                                 long long n_x, long long n_pos, long long n_neg) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i < n_x) { pos[i] = fmaxf(x[i], 0.0f); neg[i] = fminf(x[i], 0.0f); }
}
extern "C" __global__ void axpy64(const double* a, const double* x, const double* y, double* out,
                                  long long n_a, long long n_x, long long n_y, long long n) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[0] * x[i] + y[i];
}
"""

ELEMENTWISE_C = r"""
void relu(void **args, const int64_t *sizes) {
    const float *x = args[0]; float *out = args[1];
    for (int64_t i = 0; i < sizes[1]; i++) out[i] = x[i] > 0.0f ? x[i] : 0.0f;
}
void sigmoid(void **args, const int64_t *sizes) {
    const float *x = args[0]; float *out = args[1];
    for (int64_t i = 0; i < sizes[1]; i++) out[i] = 1.0f / (1.0f + expf(-x[i]));
}
void split(void **args, const int64_t *sizes) {
    const float *x = args[0]; float *pos = args[1], *neg = args[2];
    for (int64_t i = 0; i < sizes[0]; i++) { pos[i] = fmaxf(x[i], 0.0f); neg[i] = fminf(x[i], 0.0f); }
}
void axpy64(void **args, const int64_t *sizes) {
    const double *a = args[0], *x = args[1], *y = args[2]; double *out = args[3];
    for (int64_t i = 0; i < sizes[3]; i++) out[i] = a[0] * x[i] + y[i];
}
"""

# Fixed sizes compiled into the source, as in seed 004 (no size parameters).
M, N = 37, 50
GRID_CU = r"""
#define M 37
#define N 50
extern "C" __global__ void hadamard(const float* a, const float* b, float* c) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int j = blockIdx.y * blockDim.y + threadIdx.y;
    if (i < M && j < N) c[i * N + j] = a[i * N + j] * b[i * N + j];
}
extern "C" __global__ void add3d(const float* a, const float* b, float* c) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int j = blockIdx.y * blockDim.y + threadIdx.y;
    int k = blockIdx.z * blockDim.z + threadIdx.z;
    if (i < 5 && j < 9 && k < 17) { int at = (i * 9 + j) * 17 + k; c[at] = a[at] + b[at]; }
}
"""
GRID_C = r"""
void hadamard(void **args, const int64_t *sizes) {
    const float *a = args[0], *b = args[1]; float *c = args[2];
    for (int64_t i = 0; i < sizes[2]; i++) c[i] = a[i] * b[i];
}
void add3d(void **args, const int64_t *sizes) {
    const float *a = args[0], *b = args[1]; float *c = args[2];
    for (int64_t i = 0; i < sizes[2]; i++) c[i] = a[i] + b[i];
}
"""

# A dynamic-shared-memory block sum (seed 004 section 3.2), 256 threads a block.
BLOCK_SUM_CU = r"""
extern "C" __global__ void block_sum(const float* x, float* sums, long long n, long long n_sums) {
    extern __shared__ float shared[];
    unsigned tx = threadIdx.x;
    long long i = blockIdx.x * (long long)blockDim.x + tx;
    shared[tx] = i < n ? x[i] : 0.0f;
    __syncthreads();
    for (unsigned stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (tx < stride) shared[tx] += shared[tx + stride];
        __syncthreads();
    }
    if (tx == 0) sums[blockIdx.x] = shared[0];
}
"""
BLOCK_SUM_C = r"""
void block_sum(void **args, const int64_t *sizes) {
    const float *x = args[0]; float *sums = args[1];
    for (int64_t b = 0; b < sizes[1]; b++) {
        float s = 0.0f;
        for (int64_t i = b * 256; i < (b + 1) * 256 && i < sizes[0]; i++) s += x[i];
        sums[b] = s;
    }
}
"""

# Two kernels and a temp: |x| = sqrt(x^2); and the LIF detect / reset of seed 004 section 8.
PIPELINE_CU = r"""
extern "C" __global__ void square(const float* x, float* tmp, long long n_x, long long n) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i < n) tmp[i] = x[i] * x[i];
}
extern "C" __global__ void root(const float* tmp, float* out, long long n_tmp, long long n) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i < n) out[i] = sqrtf(tmp[i]);
}
extern "C" __global__ void detect(const float* v, const float* v_th, int* spikes,
                                  long long n, long long n_th, long long n_spikes) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i < n) spikes[i] = v[i] >= v_th[0] ? 1 : 0;
}
extern "C" __global__ void reset(const float* v, const int* spikes, const float* v_rest, float* v_out,
                                 long long n, long long n_spikes, long long n_rest, long long n_out) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i < n) v_out[i] = spikes[i] ? v_rest[0] : v[i];
}
"""
PIPELINE_C = r"""
void square(void **args, const int64_t *sizes) {
    const float *x = args[0]; float *tmp = args[1];
    for (int64_t i = 0; i < sizes[1]; i++) tmp[i] = x[i] * x[i];
}
void root(void **args, const int64_t *sizes) {
    const float *tmp = args[0]; float *out = args[1];
    for (int64_t i = 0; i < sizes[1]; i++) out[i] = sqrtf(tmp[i]);
}
void detect(void **args, const int64_t *sizes) {
    const float *v = args[0], *v_th = args[1]; int32_t *spikes = args[2];
    for (int64_t i = 0; i < sizes[0]; i++) spikes[i] = v[i] >= v_th[0];
}
void reset(void **args, const int64_t *sizes) {
    const float *v = args[0], *v_rest = args[2]; const int32_t *spikes = args[1]; float *v_out = args[3];
    for (int64_t i = 0; i < sizes[0]; i++) v_out[i] = spikes[i] ? v_rest[0] : v[i];
}
"""


# A leaky ReLU whose slope is a compile-time constant: a kernel generator prepends `#define ALPHA`.
LEAKY_CU = r"""
extern "C" __global__ void leaky_relu(const float* x, float* out, long long n_x, long long n) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i < n) out[i] = x[i] > 0.0f ? x[i] : ALPHA * x[i];
}
"""
LEAKY_C = r"""
void leaky_relu(void **args, const int64_t *sizes) {
    const float *x = args[0]; float *out = args[1];
    for (int64_t i = 0; i < sizes[1]; i++) out[i] = x[i] > 0.0f ? x[i] : ALPHA * x[i];
}
"""

# Every CUDA source above with its kernels, for the NVRTC compile check.
ALL_CUDA = {
    "elementwise": (ELEMENTWISE_CU, ["relu", "sigmoid", "split", "axpy64"]),
    "grid": (GRID_CU, ["hadamard", "add3d"]),
    "block_sum": (BLOCK_SUM_CU, ["block_sum"]),
    "pipeline": (PIPELINE_CU, ["square", "root", "detect", "reset"]),
    "leaky": ("#define ALPHA 0.01f\n" + LEAKY_CU, ["leaky_relu"]),
}
