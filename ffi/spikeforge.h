/* spikeforge's C-facing surface.
 *
 * 1. The Python-facing C ABI: JSON in, JSON out. Strings returned are owned by the library and
 *    must be released with sf_string_free. No call aborts the process: errors come back as
 *    {"ok": false, "error": {...}} (a model error carries field, line, column and a rendering
 *    with a caret).
 * 2. XLA FFI handlers (XLA_FFI_Handler signature, see xla/ffi/api/c_api.h), registered by the
 *    Python shim with jax.ffi.register_ffi_target.
 */
#ifndef SPIKEFORGE_H
#define SPIKEFORGE_H

#ifdef __cplusplus
extern "C" {
#endif

/* Validates a model spec (docs/DESIGN.md) and returns
 * {"ok": true, "key": "<sha256>", "spec": "<canonical spec>", "states": [...],
 *  "subexpressions": [...], "layout": {"inputs": [...], "outputs": [...]}}. */
char *sf_model_compile(const char *spec_json);

/* The generated kernel source for target "cuda" or "c": {"ok": true, "source": "...", "entry": "..."}. */
char *sf_model_source(const char *spec_json, const char *target);

void sf_string_free(char *s);

/* Compiles CUDA source with NVRTC (no GPU needed) to PTX and checks the named kernels exist:
 * {"source": "...", "kernels": ["name"], "arch": [9, 0], "fast_math": false} ->
 * {"ok": true, "ptx": "..."} or {"ok": false, "error": {"kind": "nvrtc_missing" | "compile" |
 * "kernel_not_found", "message": "..."}}. */
char *sf_cuda_compile_check(const char *request_json);

/* The library version, a static string. */
const char *sf_version(void);

/* XLA FFI handlers: XLA_FFI_Error *handler(XLA_FFI_CallFrame *frame). */
struct XLA_FFI_CallFrame;
struct XLA_FFI_Error;
struct XLA_FFI_Error *sf_neuron_run_cpu(struct XLA_FFI_CallFrame *frame);
struct XLA_FFI_Error *sf_neuron_run_cuda(struct XLA_FFI_CallFrame *frame);
struct XLA_FFI_Error *sf_custom_call_cpu(struct XLA_FFI_CallFrame *frame);
struct XLA_FFI_Error *sf_custom_call_cuda(struct XLA_FFI_CallFrame *frame);

#ifdef __cplusplus
}
#endif
#endif
