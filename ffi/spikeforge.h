/* spikeforge's C-facing surface.
 *
 * 1. The Python-facing C ABI: JSON in, JSON out. Strings returned are owned by the library and
 *    must be released with sf_string_free (except the static ones of sf_version and
 *    sf_ffi_targets). No call aborts the process: errors come back as
 *    {"ok": false, "error": {...}} (a model error carries field, line, column and a rendering
 *    with a caret).
 * 2. XLA FFI handlers (XLA_FFI_Handler signature, see xla/ffi/api/c_api.h), listed by
 *    sf_ffi_targets and registered by the Python shim with jax.ffi.register_ffi_target, each for
 *    the instantiate and execute stages.
 *
 * tests/ffi_header.rs checks that this file declares exactly the library's exported functions.
 */
#ifndef SPIKEFORGE_H
#define SPIKEFORGE_H

#ifdef __cplusplus
extern "C" {
#endif

/* Validates a model spec (docs/DESIGN.md) and returns
 * {"ok": true, "key": "<sha256>", "spec": "<canonical spec>", "states": [...],
 *  "subexpressions": [...], "method": "...", "layout": {"inputs": [...], "outputs": [...]}}. */
char *sf_model_compile(const char *spec_json);

/* The generated kernel source for target "cuda" or "c": {"ok": true, "source": "...", "entry": "..."}. */
char *sf_model_source(const char *spec_json, const char *target);

/* The adjoint (backward) kernel of a model for target "cuda" or "c" and its buffers:
 * {"ok": true, "source": "...", "entry": "...", "layout": {"inputs": [...], "outputs": [...]}},
 * or {"ok": false, "error": {"kind": "not_differentiable" | "model" | ..., "message": "..."}}. */
char *sf_model_adjoint(const char *spec_json, const char *target);

/* Validates a network spec (docs/NETWORKS.md) and returns
 * {"ok": true, "key": "<sha256>", "spec": "<canonical spec>", "dt": ..., "dtype": "...",
 *  "deterministic": ..., "groups": [...], "projections": [...],
 *  "layout": {"inputs": [...], "outputs": [...], "scratch": [...]}};
 * errors name the object and field ("Synapses 'S', on_pre"). */
char *sf_network_compile(const char *spec_json);

/* The generated network kernels for target "cuda" or "c":
 * {"ok": true, "source": "...", "entries": ["sf_network_update", ...]}. */
char *sf_network_source(const char *spec_json, const char *target);

/* The adjoint (backward) kernel of a network for target "cuda" or "c" and its buffers (the backward pass of
 * network runs, spikeforge.network.gradients): {"ok": true, "source", "entry", "layout"}, or
 * {"ok": false, "error": {"kind": "not_differentiable" | "model" | ..., "message": "..."}}. */
char *sf_network_adjoint(const char *spec_json, const char *target);

/* The path the last run of the network with this key took in this process:
 * {"ok": true, "path": "per_step" | "block" | "grid" | "cpu" | null}. */
char *sf_network_last_path(const char *key);

/* Initial values given as expressions, evaluated over n elements:
 * {"spec": "<spec>", "n": 100, "seed": 3, "values": {"name": 1.5 | {"base64": "<float64 LE>"}},
 *  "statements": [["v", "v_r + rand()*(v_t - v_r)"]]} ->
 * {"ok": true, "values": [["v", "<base64 float64 LE>"]]}. */
char *sf_initial_values(const char *request_json);

/* Validates a connection rule (src/connect/spec.rs) and returns {"ok": true, "key": "<sha256>",
 * "spec": "<canonical spec>", "rows": "pre" | "post", "pre_variables": [...],
 * "post_variables": [...], "error_codes": {...}}, or a located error as sf_model_compile does. */
char *sf_connect_compile(const char *spec_json);

/* The generated connectivity kernels of a rule for target "cuda" or "c":
 * {"ok": true, "source": "...", "entries": ["sf_connect_count", "sf_connect_fill"]}. */
char *sf_connect_source(const char *spec_json, const char *target);

/* Releases a string returned by sf_model_compile, sf_model_source, sf_model_adjoint, sf_initial_values,
 * sf_network_compile, sf_network_source, sf_network_adjoint, sf_network_last_path, sf_connect_compile, sf_connect_source or
 * sf_cuda_compile_check. */
void sf_string_free(char *s);

/* Compiles CUDA source with NVRTC (no GPU needed) to PTX and checks the named kernels exist:
 * {"source": "...", "kernels": ["name"], "arch": [9, 0], "fast_math": false} ->
 * {"ok": true, "ptx": "..."} or {"ok": false, "error": {"kind": "nvrtc_missing" | "compile" |
 * "kernel_not_found" | "usage", "message": "..."}}. */
char *sf_cuda_compile_check(const char *request_json);

/* The library version, a static string. */
const char *sf_version(void);

/* The XLA FFI handlers below, as static JSON (not to be freed):
 * {"api_version": [0, 3], "targets": [{"name": "spikeforge_neuron_run", "platform": "cpu",
 *  "symbol": "sf_neuron_run_cpu", "stages": ["instantiate", "execute"],
 *  "command_buffer_compatible": false}, ...]}. */
const char *sf_ffi_targets(void);

/* XLA FFI handlers: XLA_FFI_Error *handler(XLA_FFI_CallFrame *frame). */
struct XLA_FFI_CallFrame;
struct XLA_FFI_Error;
struct XLA_FFI_Error *sf_neuron_run_cpu(struct XLA_FFI_CallFrame *frame);
struct XLA_FFI_Error *sf_neuron_run_cuda(struct XLA_FFI_CallFrame *frame);
struct XLA_FFI_Error *sf_neuron_grad_cpu(struct XLA_FFI_CallFrame *frame);
struct XLA_FFI_Error *sf_neuron_grad_cuda(struct XLA_FFI_CallFrame *frame);
struct XLA_FFI_Error *sf_network_grad_cpu(struct XLA_FFI_CallFrame *frame);
struct XLA_FFI_Error *sf_network_grad_cuda(struct XLA_FFI_CallFrame *frame);
struct XLA_FFI_Error *sf_custom_call_cpu(struct XLA_FFI_CallFrame *frame);
struct XLA_FFI_Error *sf_custom_call_cuda(struct XLA_FFI_CallFrame *frame);
struct XLA_FFI_Error *sf_reduce_cpu(struct XLA_FFI_CallFrame *frame);
struct XLA_FFI_Error *sf_reduce_cuda(struct XLA_FFI_CallFrame *frame);
struct XLA_FFI_Error *sf_network_run_cpu(struct XLA_FFI_CallFrame *frame);
struct XLA_FFI_Error *sf_network_run_cuda(struct XLA_FFI_CallFrame *frame);
struct XLA_FFI_Error *sf_connect_cpu(struct XLA_FFI_CallFrame *frame);
struct XLA_FFI_Error *sf_connect_cuda(struct XLA_FFI_CallFrame *frame);

#ifdef __cplusplus
}
#endif
#endif
