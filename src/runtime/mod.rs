//! Runtime: turning generated source into something callable.
//!
//! * [`cpu`]: C source -> the system C compiler -> a shared library loaded with `dlopen`.
//! * [`cuda`]: CUDA C++ source -> NVRTC -> CUBIN -> a CUDA module in XLA's context, launched on
//!   XLA's stream.
//! * [`cache`]: the on-disk cache both share (private to its user, every entry checksummed) and
//!   the in-memory caches in front of it (loaded code bounded by [`cache::Lru`]).
//! * [`settings`]: the environment variables that tune the runtime (compile time limit, how many
//!   loaded kernels to keep).
//! * [`error`]: [`RuntimeError`], whose messages say what to install or where to look.
//!
//! Both back ends compile a given source once per machine (through the disk cache) and load it
//! once while it is in use; later requests are hash-map lookups.

pub mod cache;
pub mod cpu;
pub mod cuda;
pub mod error;
pub mod settings;

pub use error::RuntimeError;

/// Runs one `#[ignore]`d test of this test binary in a child process with `env` added, and
/// returns its stdout after checking that it ran and passed. For tests that need their own
/// environment variables or a process of their own (changing the environment of the
/// multi-threaded test process is racy; counting its memory mappings is noisy).
#[cfg(test)]
pub(crate) fn run_test_child(test: &str, env: &[(&str, &std::ffi::OsStr)]) -> String {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        test,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{test} failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("1 passed"), "{test} did not run: {text}");
    text
}
