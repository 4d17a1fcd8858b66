//! Generates Rust bindings for the XLA FFI C API (`xla/ffi/api/c_api.h`) of the installed jaxlib.
//!
//! The header ships inside the jaxlib wheel, so the bindings always match the XLA that will load
//! the library. Where to look, first match wins:
//! 1. `SPIKEFORGE_XLA_FFI_INCLUDE`: a directory containing `xla/ffi/api/c_api.h`;
//! 2. ask Python (`PYO3_PYTHON`, else `PYTHON_SYS_EXECUTABLE`, else `python3`) for
//!    `jax.ffi.include_dir()`, or for the `include` folder next to `jaxlib` when jax is absent.
//!
//! The bindings (`OUT_DIR/xla_ffi.rs`) carry the header's `XLA_FFI_API_MAJOR` and
//! `XLA_FFI_API_MINOR` as constants; the bridge turns them into `xla::HEADER_API_VERSION`.
//! The script also emits the cfg `xla_ffi_error_get_details` when the header names
//! `XLA_FFI_Error_GetDetails` (API >= 0.4) instead of `XLA_FFI_Error_GetMessage`: that is the one
//! function-table slot the bridge uses whose field name differs between header versions.

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::{exit, Command};

const INCLUDE_ENV: &str = "SPIKEFORGE_XLA_FFI_INCLUDE";
const PYTHON_ENVS: [&str; 2] = ["PYO3_PYTHON", "PYTHON_SYS_EXECUTABLE"];
const HEADER: &str = "xla/ffi/api/c_api.h";

/// Prints the include directory; falls back to jaxlib alone because `jax` itself is not needed to
/// build, only the header that the jaxlib wheel carries.
const FIND_INCLUDE_PY: &str = "\
try:
    import jax.ffi
    print(jax.ffi.include_dir())
except ImportError:
    import os, jaxlib
    print(os.path.join(os.path.dirname(jaxlib.__file__), 'include'))
";

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed={INCLUDE_ENV}");
    for var in PYTHON_ENVS {
        println!("cargo::rerun-if-env-changed={var}");
    }
    println!("cargo::rustc-check-cfg=cfg(xla_ffi_error_get_details)");

    let include = find_include_dir().unwrap_or_else(|reason| fail(&reason));
    let header = include.join(HEADER);
    println!("cargo::rerun-if-changed={}", header.display());
    let text = fs::read_to_string(&header)
        .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", header.display())));

    if text.contains("XLA_FFI_Error_GetDetails") {
        println!("cargo::rustc-cfg=xla_ffi_error_get_details");
    }

    let bindings = bindgen::Builder::default()
        .header(header.to_string_lossy())
        .clang_arg(format!("-I{}", include.display()))
        .allowlist_type("XLA_FFI_.*")
        .allowlist_var("XLA_FFI_.*")
        .allowlist_function("XLA_FFI_.*")
        // Plain integer constants, not Rust enums: XLA may hand us enum values newer than the
        // header (a new dtype, a new stage), and an out-of-range Rust enum would be undefined
        // behaviour.
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .derive_default(true)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .unwrap_or_else(|e| fail(&format!("bindgen failed on {}: {e}", header.display())));

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("xla_ffi.rs");
    bindings
        .write_to_file(&out)
        .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", out.display())));
}

fn find_include_dir() -> Result<PathBuf, String> {
    if let Some(dir) = env::var_os(INCLUDE_ENV) {
        let dir = PathBuf::from(dir);
        // An explicit setting that is wrong is an error, not a reason to guess elsewhere.
        return if dir.join(HEADER).is_file() {
            Ok(dir)
        } else {
            Err(format!(
                "{INCLUDE_ENV}={} does not contain {HEADER}",
                dir.display()
            ))
        };
    }
    let python = PYTHON_ENVS
        .iter()
        .find_map(|var| env::var(var).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "python3".to_owned());
    let output = Command::new(&python)
        .args(["-c", FIND_INCLUDE_PY])
        .output()
        .map_err(|e| format!("cannot run Python interpreter `{python}`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`{python}` could not locate jaxlib: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if dir.join(HEADER).is_file() {
        Ok(dir)
    } else {
        Err(format!(
            "`{python}` reported {} but it has no {HEADER}",
            dir.display()
        ))
    }
}

fn fail(reason: &str) -> ! {
    eprintln!(
        "error: spikeforge needs the XLA FFI C header ({HEADER}).\n  {reason}\n  \
         Install it with `pip install jaxlib` into the Python that PYO3_PYTHON (or \
         PYTHON_SYS_EXECUTABLE, or python3) names, or set {INCLUDE_ENV} to a directory that \
         contains {HEADER}."
    );
    exit(1);
}
