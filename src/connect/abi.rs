//! The connectivity part of the C ABI (declared in `ffi/spikeforge.h` with the rest, JSON in
//! and out as in [`crate::capi`]): Python validates a rule once, before anything runs, and gets
//! the canonical spec the `spikeforge_connect` calls carry.

use std::ffi::c_char;

use serde_json::{json, Value};

use super::{lower, ConnectSpec, ErrorCode};
use crate::capi::{answer, answer_for_target, diagnostic_json, error_json};
use crate::codegen::connect_kernel;

fn with_spec(text: &str, f: impl FnOnce(ConnectSpec) -> Value) -> Value {
    match ConnectSpec::from_json(text) {
        Ok(spec) => f(spec),
        Err(e) => error_json("spec", e.to_string()),
    }
}

/// What `sf_connect_compile` answers for `text`.
pub fn compile_json(text: &str) -> Value {
    with_spec(text, |spec| match lower(&spec) {
        Err(d) => json!({"ok": false, "error": diagnostic_json(&d)}),
        Ok((ir, canonical)) => {
            let codes: serde_json::Map<String, Value> = ErrorCode::ALL
                .iter()
                .map(|c| (c.name().to_string(), json!(c.code())))
                .collect();
            json!({
                "ok": true,
                "key": canonical.key(),
                "spec": canonical.to_json(),
                "rows": canonical.rows().name(),
                "pre_variables": ir.pre_variables,
                "post_variables": ir.post_variables,
                "error_codes": codes,
            })
        }
    })
}

/// Validates a connection spec (`connect::spec`) and returns
/// `{"ok": true, "key", "spec" (canonical), "rows": "pre" | "post", "pre_variables",
/// "post_variables" (the variables the kernel reads, in the order the call passes them),
/// "error_codes": {name: code}}`, or a located error.
///
/// # Safety
/// `spec_json` must be a valid NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn sf_connect_compile(spec_json: *const c_char) -> *mut c_char {
    answer(spec_json, compile_json)
}

/// The generated connectivity kernels of a spec for `target` ("cuda" or "c"):
/// `{"ok": true, "source": "...", "entries": ["sf_connect_count", "sf_connect_fill"]}`.
///
/// # Safety
/// Both arguments must be valid NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn sf_connect_source(
    spec_json: *const c_char,
    target: *const c_char,
) -> *mut c_char {
    // SAFETY: forwarded from the caller.
    unsafe {
        answer_for_target(spec_json, target, |s, dialect| {
            with_spec(s, |spec| match lower(&spec) {
                Err(d) => json!({"ok": false, "error": diagnostic_json(&d)}),
                Ok((ir, _)) => json!({
                    "ok": true,
                    "source": connect_kernel::generate(&ir, dialect),
                    "entries": [connect_kernel::ENTRY_COUNT, connect_kernel::ENTRY_FILL],
                }),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_answers_the_canonical_spec_or_a_located_error() {
        let v = compile_json(
            r#"{"rule": {"kind": "pairs", "condition": "x_post > 0"}, "post_variables": ["y", "x"]}"#,
        );
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(v["post_variables"], json!(["x"]));
        assert_eq!(v["rows"], "pre");
        assert_eq!(v["error_codes"]["degree_too_large"], -4);
        let canonical = ConnectSpec::from_json(v["spec"].as_str().unwrap()).unwrap();
        assert_eq!(canonical.key(), v["key"].as_str().unwrap());
        let v = compile_json(r#"{"rule": {"kind": "pairs", "condition": "x_post > 0"}}"#);
        assert_eq!(v["ok"], false);
        assert_eq!(v["error"]["field"], "condition");
        assert_eq!(v["error"]["column"], 1);
        let v = compile_json("{");
        assert_eq!(v["error"]["kind"], "spec");
    }
}
