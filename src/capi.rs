//! The C ABI the Python shim calls (declared in `ffi/spikeforge.h`).
//!
//! Every function takes and returns NUL-terminated UTF-8 JSON, so the surface stays tiny and
//! versionable; strings returned are owned by Rust and must be given back to
//! [`sf_string_free`]. No panic crosses this boundary: it becomes an `{"ok": false}` answer.

use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde_json::{json, Value};

use crate::codegen::{self, Dialect};
use crate::diagnostics::Diagnostic;
use crate::ir::network::{NetGroupKind, NetworkIr};
use crate::ir::synapses::{DelayIr, Pathway};
use crate::ir::SymbolKind;
use crate::spec::{ModelSpec, NetworkSpec};
use crate::step;

pub(crate) fn diagnostic_json(d: &Diagnostic) -> Value {
    json!({
        "kind": "model",
        "field": d.field,
        "message": d.message,
        "line": d.span.map(|s| s.line),
        "column": d.span.map(|s| s.col),
        "suggestion": d.suggestion,
        "rendered": d.render(),
    })
}

pub(crate) fn error_json(kind: &str, message: String) -> Value {
    json!({"ok": false, "error": {"kind": kind, "message": message, "rendered": message}})
}

/// Runs `f` on the JSON argument, catching panics, and returns a Rust-owned C string.
pub(crate) fn answer(arg: *const c_char, f: impl FnOnce(&str) -> Value) -> *mut c_char {
    let value = if arg.is_null() {
        error_json("usage", "null argument".into())
    } else {
        // SAFETY: the caller passes a NUL-terminated string that lives for the call.
        match unsafe { CStr::from_ptr(arg) }.to_str() {
            Err(_) => error_json("usage", "the argument is not UTF-8".into()),
            Ok(s) => match catch_unwind(AssertUnwindSafe(|| f(s))) {
                Ok(v) => v,
                Err(p) => error_json("internal", format!("internal error: {}", panic_message(&p))),
            },
        }
    };
    CString::new(value.to_string())
        .map(CString::into_raw)
        .unwrap_or(std::ptr::null_mut())
}

/// [`answer`] for the functions that take a `target` (`"cuda"`, or `"c"` / `"cpu"`): `f` gets the
/// JSON argument and the dialect; an unknown target is a usage error.
///
/// # Safety
/// `arg` as for [`answer`]; `target` must be null or a valid NUL-terminated string.
pub(crate) unsafe fn answer_for_target(
    arg: *const c_char,
    target: *const c_char,
    f: impl FnOnce(&str, Dialect) -> Value,
) -> *mut c_char {
    let target = if target.is_null() {
        String::new()
    } else {
        // SAFETY: forwarded to the caller.
        unsafe { CStr::from_ptr(target) }
            .to_string_lossy()
            .into_owned()
    };
    answer(arg, |s| match target.as_str() {
        "cuda" => f(s, Dialect::Cuda),
        "c" | "cpu" => f(s, Dialect::C),
        other => error_json(
            "usage",
            format!("unknown target '{other}': use 'cuda' or 'c'"),
        ),
    })
}

pub(crate) fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

fn with_spec(json_text: &str, f: impl FnOnce(ModelSpec) -> Value) -> Value {
    match ModelSpec::from_json(json_text) {
        Ok(spec) => f(spec),
        Err(e) => error_json("spec", e.to_string()),
    }
}

/// Validates a model spec and returns its argument layout and cache key.
///
/// # Safety
/// `spec_json` must be a valid NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn sf_model_compile(spec_json: *const c_char) -> *mut c_char {
    answer(spec_json, |s| {
        with_spec(s, |spec| match codegen::prepare(&spec) {
            Err(d) => json!({"ok": false, "error": diagnostic_json(&d)}),
            Ok((ir, layout)) => {
                let stored = ir.stored();
                let states: Vec<&str> =
                    stored.iter().map(|v| ir.symbol(*v).name.as_str()).collect();
                json!({
                    "ok": true,
                    "key": spec.key(),
                    "spec": spec.to_json(),
                    "states": states,
                    "subexpressions": ir.subexpressions.keys().collect::<Vec<_>>(),
                    // The integration scheme used: the one named, or the one chosen for it.
                    "method": ir.method.name(),
                    "layout": layout,
                })
            }
        })
    })
}

/// Returns the generated source of a model for `target` ("cuda" or "c").
///
/// # Safety
/// Both arguments must be valid NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn sf_model_source(
    spec_json: *const c_char,
    target: *const c_char,
) -> *mut c_char {
    // SAFETY: forwarded to the caller.
    unsafe {
        answer_for_target(spec_json, target, |s, dialect| {
            with_spec(s, |spec| {
                match codegen::generate_from_spec(&spec, dialect) {
                    Err(d) => json!({"ok": false, "error": diagnostic_json(&d)}),
                    Ok(k) => json!({"ok": true, "source": k.source, "entry": k.entry}),
                }
            })
        })
    }
}

/// Returns the adjoint kernel of a model for `target` ("cuda" or "c") and its layout, or why
/// the model's runs are not differentiable (`{"kind": "not_differentiable", ...}`).
///
/// # Safety
/// Both arguments must be valid NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn sf_model_adjoint(
    spec_json: *const c_char,
    target: *const c_char,
) -> *mut c_char {
    // SAFETY: forwarded to the caller.
    unsafe {
        answer_for_target(spec_json, target, |s, dialect| {
            with_spec(s, |spec| match codegen::prepare(&spec) {
                Err(d) => json!({"ok": false, "error": diagnostic_json(&d)}),
                Ok((ir, _)) => {
                    // The source of the model's longest segment kept in registers (the
                    // scratch's when there is none); the layout is the same for every segment.
                    let generate =
                        |k| codegen::adjoint_kernel::generate_adjoint(&ir, &spec, dialect, k);
                    let kernel = generate(1).and_then(|k| match k.register_segment {
                        0 => Ok(k),
                        longest => generate(longest),
                    });
                    match kernel {
                        Err(e) => error_json("not_differentiable", e.to_string()),
                        Ok(k) => json!({
                            "ok": true,
                            "source": k.source,
                            "entry": k.entry,
                            "layout": k.layout,
                            "register_segment": k.register_segment,
                        }),
                    }
                }
            })
        })
    }
}

fn with_network(json_text: &str, f: impl FnOnce(NetworkSpec) -> Value) -> Value {
    match NetworkSpec::from_json(json_text) {
        Ok(spec) => f(spec),
        Err(e) => error_json("spec", e.to_string()),
    }
}

/// What `sf_network_compile` says about a lowered network (docs/NETWORKS.md, "C ABI").
fn network_json(spec: &NetworkSpec, net: &NetworkIr) -> Value {
    let plan = step::network::plan(net);
    let layout = codegen::network_layout::layout(net, &plan);
    let names = |ir: &crate::ir::GroupIr, vars: Vec<crate::ir::VarId>| -> Vec<String> {
        vars.iter().map(|v| ir.symbol(*v).name.clone()).collect()
    };
    let groups: Vec<Value> = net
        .groups
        .iter()
        .zip(&plan.groups)
        .map(|(g, gp)| {
            let mut o = json!({
                "name": g.name,
                "n": g.n,
                "offset": g.offset,
                "spike_queue_depth": gp.depth,
                "late_reset": gp.late_reset,
            });
            match &g.kind {
                NetGroupKind::Neuron { ir, .. } => {
                    o["kind"] = json!("neuron");
                    o["states"] = json!(names(ir, ir.stored()));
                    o["params"] = json!(names(ir, ir.vars_of_kind(&SymbolKind::Param)));
                    o["subexpressions"] = json!(ir.subexpressions.keys().collect::<Vec<_>>());
                    o["method"] = json!(ir.method.name());
                }
                NetGroupKind::Poisson { rates, .. } => {
                    o["kind"] = json!("poisson");
                    o["rates_per_neuron"] = json!(rates.is_none());
                }
                NetGroupKind::SpikeGenerator {
                    n_spikes,
                    period_steps,
                } => {
                    o["kind"] = json!("spike_generator");
                    o["n_spikes"] = json!(n_spikes);
                    o["period_steps"] = json!(period_steps);
                }
            }
            o
        })
        .collect();
    let projections: Vec<Value> = net
        .projections
        .iter()
        .zip(&plan.projections)
        .map(|(p, pp)| {
            let s = &p.synapses;
            let delay_json = |d: DelayIr| match d {
                DelayIr::Homogeneous { steps } => json!({"kind": "homogeneous", "steps": steps}),
                DelayIr::PerSynapse { var, max_steps } => json!({
                    "kind": "per_synapse",
                    "variable": s.group.symbol(var).name,
                    "max_steps": max_steps,
                }),
            };
            // The delay the rows are sorted by (per-synapse), else the `pre` pathway's.
            let row_delay = match s.row_delay() {
                Some((var, max_steps)) => DelayIr::PerSynapse { var, max_steps },
                None => s
                    .pathways
                    .iter()
                    .find(|pw| pw.name == "pre" && pw.kind == Pathway::Pre)
                    .map_or(DelayIr::Homogeneous { steps: 0 }, |pw| pw.delay),
            };
            // `at_emission`: the CUDA kernels deliver the pathway at emission into ring buffers
            // (`step::network::at_emission`); the C kernels always deliver at arrival.
            let pathways: Vec<Value> = s
                .pathways
                .iter()
                .zip(&pp.at_emission)
                .map(|(pw, at_emission)| {
                    json!({
                        "name": pw.name,
                        "kind": if pw.kind == Pathway::Pre { "pre" } else { "post" },
                        "delay": delay_json(pw.delay),
                        "at_emission": at_emission,
                    })
                })
                .collect();
            let delay = delay_json(row_delay);
            json!({
                "name": p.name,
                "source": net.groups[p.source].name,
                "target": net.groups[p.target].name,
                "source_range": [p.source_range.start, p.source_range.end],
                "target_range": [p.target_range.start, p.target_range.end],
                "n_pre": p.n_pre(),
                "n_post": p.n_post(),
                "per_synapse": names(&s.group, s.per_synapse()),
                "shared": names(&s.group, s.shared()),
                "delay": delay,
                "pathways": pathways,
                "delivery": format!("{:?}", pp.delivery).to_lowercase(),
            })
        })
        .collect();
    json!({
        "ok": true,
        "key": spec.key(),
        "spec": spec.to_json(),
        "dt": net.dt,
        "dtype": net.dtype.name(),
        "deterministic": net.deterministic,
        "groups": groups,
        "projections": projections,
        "layout": layout,
    })
}

/// Validates a network spec and returns its argument layout, cache key and what each object
/// became (docs/NETWORKS.md).
///
/// # Safety
/// `spec_json` must be a valid NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn sf_network_compile(spec_json: *const c_char) -> *mut c_char {
    answer(spec_json, |s| {
        with_network(s, |spec| match codegen::prepare_network(&spec) {
            Err(d) => json!({"ok": false, "error": diagnostic_json(&d)}),
            Ok(net) => network_json(&spec, &net),
        })
    })
}

/// Returns the generated source of a network's kernels for `target` ("cuda" or "c").
///
/// # Safety
/// Both arguments must be valid NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn sf_network_source(
    spec_json: *const c_char,
    target: *const c_char,
) -> *mut c_char {
    // SAFETY: forwarded to the caller.
    unsafe {
        answer_for_target(spec_json, target, |s, dialect| {
            with_network(
                s,
                |spec| match codegen::network_kernel::generate_from_spec(&spec, dialect) {
                    Err(d) => json!({"ok": false, "error": diagnostic_json(&d)}),
                    Ok(k) => json!({"ok": true, "source": k.source, "entries": k.entries}),
                },
            )
        })
    }
}

/// Returns the adjoint kernel of a network for `target` ("cuda" or "c") and its layout
/// (`codegen::network_adjoint_kernel`), or why the network's runs are not differentiable
/// (`{"kind": "not_differentiable", ...}`).
///
/// # Safety
/// Both arguments must be valid NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn sf_network_adjoint(
    spec_json: *const c_char,
    target: *const c_char,
) -> *mut c_char {
    // SAFETY: forwarded to the caller.
    unsafe {
        answer_for_target(spec_json, target, |s, dialect| {
            with_network(s, |spec| match codegen::prepare_network(&spec) {
                Err(d) => json!({"ok": false, "error": diagnostic_json(&d)}),
                Ok(net) => {
                    match codegen::network_adjoint_kernel::generate_network_adjoint(&net, dialect) {
                        Err(e) => error_json(
                            "not_differentiable",
                            format!("this network's runs are not differentiable: {}", e.0),
                        ),
                        Ok(k) => json!({
                            "ok": true,
                            "source": k.source,
                            "entry": k.entry,
                            "layout": k.layout,
                        }),
                    }
                }
            })
        })
    }
}

/// The path the last run of the network with this key took on this process
/// (`handlers::network_path`): `{"ok": true, "path": "per_step" | "block" | "grid" | "cpu" |
/// null, "detail": "grid: 313 blocks of 128 threads, flat barrier, 4 register slots" | null}`
/// (null before its first run; the detail: of its last GPU run).
///
/// # Safety
/// `key` must be a valid NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn sf_network_last_path(key: *const c_char) -> *mut c_char {
    answer(key, |k| {
        use crate::handlers::network_path::{last, last_detail};
        json!({"ok": true, "path": last(k), "detail": last_detail(k)})
    })
}

/// Initial values given as expressions (`crate::frontend::initial`), for `init_state`:
/// `{"spec": "<spec JSON>", "n": 100, "seed": 3, "values": {"name": 1.5 | {"base64": "<n
/// little-endian float64>"}}, "statements": [["v", "v_r + rand()*(v_t - v_r)"], ...]}` ->
/// `{"ok": true, "values": [["v", "<base64 float64>"], ...]}` (each statement's target, in order,
/// its final values), or `{"ok": false, "error": ...}`. Arrays travel as base64 so that a large
/// population costs a copy, not a decimal rendering of every number.
///
/// # Safety
/// `request_json` must be a valid NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn sf_initial_values(request_json: *const c_char) -> *mut c_char {
    answer(request_json, |s| match initial_values_request(s) {
        Ok(v) => v,
        Err(Ok(d)) => json!({"ok": false, "error": diagnostic_json(&d)}),
        Err(Err(message)) => error_json("usage", message),
    })
}

/// [`sf_initial_values`]'s work: a model error (`Err(Ok)`) or a malformed request (`Err(Err)`).
fn initial_values_request(text: &str) -> Result<Value, Result<Diagnostic, String>> {
    use crate::frontend::initial::{initial_values, Statement};
    use crate::ir::eval::Column;
    use base64::Engine;

    let request: Value =
        serde_json::from_str(text).map_err(|e| Err(format!("the request is not JSON: {e}")))?;
    let spec = request["spec"]
        .as_str()
        .ok_or_else(|| Err("'spec' must be a string".to_string()))
        .and_then(|s| ModelSpec::from_json(s).map_err(|e| Err(e.to_string())))?;
    let n = request["n"]
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| Err("'n' must be a non-negative integer".to_string()))?;
    let seed = request["seed"]
        .as_i64()
        .and_then(|s| i32::try_from(s).ok())
        .ok_or_else(|| Err("'seed' must be an int32".to_string()))?;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut given = std::collections::HashMap::new();
    for (name, value) in request["values"].as_object().into_iter().flatten() {
        let column = match value {
            Value::Number(x) => Column::Scalar(x.as_f64().unwrap_or(f64::NAN)),
            Value::Object(o) => {
                let bytes = o
                    .get("base64")
                    .and_then(Value::as_str)
                    .and_then(|b| engine.decode(b).ok())
                    .filter(|b| b.len() % 8 == 0)
                    .ok_or_else(|| {
                        Err(format!("values['{name}']: expected base64 float64 data"))
                    })?;
                Column::Values(
                    bytes
                        .chunks_exact(8)
                        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                        .collect(),
                )
            }
            _ => {
                return Err(Err(format!(
                    "values['{name}']: a number or {{\"base64\": ...}}"
                )))
            }
        };
        given.insert(name.clone(), column);
    }
    let mut statements = Vec::new();
    for st in request["statements"].as_array().into_iter().flatten() {
        match st.as_array().map(Vec::as_slice) {
            Some([Value::String(target), Value::String(code)]) => statements.push(Statement {
                target: target.clone(),
                code: code.clone(),
            }),
            _ => return Err(Err("'statements' must be [[target, code], ...]".to_string())),
        }
    }
    let values = initial_values(&spec, n, seed as u32, given, &statements).map_err(Ok)?;
    let encoded: Vec<Value> = values
        .into_iter()
        .map(|(name, v)| {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            json!([name, engine.encode(bytes)])
        })
        .collect();
    Ok(json!({"ok": true, "values": encoded}))
}

/// Frees a string returned by this library.
///
/// # Safety
/// `s` must come from this library and not have been freed.
#[no_mangle]
pub unsafe extern "C" fn sf_string_free(s: *mut c_char) {
    if !s.is_null() {
        drop(CString::from_raw(s));
    }
}

/// The library version, a static string.
#[no_mangle]
pub extern "C" fn sf_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// The XLA FFI targets this library exports, as static JSON (not to be freed):
/// `{"api_version": [0, 3], "targets": [{"name", "platform", "symbol", "stages",
/// "command_buffer_compatible"}, ...]}` (see [`crate::handlers::registry`]). The Python shim
/// registers exactly these.
#[no_mangle]
pub extern "C" fn sf_ffi_targets() -> *const c_char {
    crate::handlers::registry::targets_c_string()
}
