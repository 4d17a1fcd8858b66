//! What the tests that run generated CUDA source on the CPU share (`reduction_cuda_emulation`,
//! `connect_kernels`): the C++ lines that let g++ compile it, and whether g++ is there.
//!
//! The source is compiled as C++ between [`head`] and [`tail`] (after the test's own shim, which
//! includes what it needs before the renames): CUDA's qualifiers become nothing
//! (or `inline`), and the fixed-width integer types the source declares itself (NVRTC has no
//! `<stdint.h>`) are renamed, so they do not clash with `<cstdint>`'s. Each test adds its own
//! launch shim (threads and barriers where the kernels synchronise, plain loops where not).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The fixed-width integer types generated CUDA source may declare, and their names in the
/// shim (`int32_t` -> `sf_i32`): a test's own code reads the kernel's types by these names.
const TYPES: [(&str, &str); 7] = [
    ("int8_t", "sf_i8"),
    ("uint8_t", "sf_u8"),
    ("uint16_t", "sf_u16"),
    ("int32_t", "sf_i32"),
    ("uint32_t", "sf_u32"),
    ("int64_t", "sf_i64"),
    ("uint64_t", "sf_u64"),
];

/// The lines before the kernel source: the C++ headers both tests use, the bit casts the kernels
/// call, CUDA's qualifiers, and the renames of the fixed-width types.
pub fn head() -> String {
    let mut out = String::from(
        "#include <cmath>\n#include <cstdint>\n#include <cstdio>\n#include <cstdlib>\n\
         #include <cstring>\n#include <vector>\n\
         static double __longlong_as_double(long long b) { double d; std::memcpy(&d, &b, 8); return d; }\n\
         #define __global__\n#define __device__\n#define __forceinline__ inline\n\
         #define __launch_bounds__(...)\n#define __restrict__\n",
    );
    for (t, alias) in TYPES {
        out.push_str(&format!("#define {t} {alias}\n"));
    }
    out
}

/// The lines after the kernel source: the renames undone.
pub fn tail() -> String {
    TYPES.iter().map(|(t, _)| format!("#undef {t}\n")).collect()
}

/// A fresh folder `name` for the test's C++ files and programs, or `None` (skip the test) when
/// there is no `g++`.
pub fn work_dir(name: &str) -> Option<PathBuf> {
    if !gxx_available() {
        return None;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    Some(dir)
}

/// Writes `code` to `<dir>/<name>.cpp`, compiles it with `g++ <flags>` and returns the program.
pub fn compile(code: &str, dir: &Path, name: &str, flags: &[&str]) -> PathBuf {
    let src = dir.join(format!("{name}.cpp"));
    let exe = dir.join(name);
    std::fs::write(&src, code).unwrap();
    let status = Command::new("g++")
        .args(flags)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .status()
        .unwrap();
    assert!(status.success(), "{name}: g++ failed on {}", src.display());
    exe
}

/// Whether `g++` runs; without it the test is skipped, unless `SPIKEFORGE_REQUIRE_GXX=1`.
fn gxx_available() -> bool {
    let found = Command::new("g++")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("SPIKEFORGE_REQUIRE_GXX").is_err(),
            "g++ required but not found"
        );
        eprintln!("SKIPPED: no g++");
    }
    found
}
