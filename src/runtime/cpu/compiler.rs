//! The system C compiler: finding it, identifying it (for cache keys) and running it, each run
//! bounded in time ([`super::deadline`]).

use super::deadline::{output_within, Finished};
use crate::runtime::cache::{self, Memo};
use crate::runtime::error::RuntimeError;
use crate::runtime::settings;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

/// A C compiler command: a program plus any leading arguments (`CC="ccache gcc"` is common), and
/// how long one run of it may take.
#[derive(Clone, Debug)]
pub(crate) struct Compiler {
    argv: Vec<String>,
    timeout: Option<Duration>,
}

impl Compiler {
    /// `$CC` if set and not empty, else `cc`; the time limit from `SPIKEFORGE_COMPILE_TIMEOUT`.
    pub fn from_env() -> Result<Self, RuntimeError> {
        let cc = match std::env::var("CC") {
            Ok(cc) if !cc.trim().is_empty() => Self::new(&cc),
            _ => Self::new("cc"),
        };
        Ok(cc.with_timeout(settings::compile_timeout()?))
    }

    /// `command` with the default time limit.
    pub fn new(command: &str) -> Self {
        Compiler {
            argv: command.split_whitespace().map(str::to_owned).collect(),
            timeout: Some(settings::DEFAULT_COMPILE_TIMEOUT),
        }
    }

    /// The same compiler with another time limit per run (`None`: none).
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The command as the user would write it.
    pub fn display(&self) -> String {
        self.argv.join(" ")
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.argv[0]);
        c.args(&self.argv[1..]);
        // English, stable messages: they end up in error texts and in cache keys.
        c.env("LC_ALL", "C");
        c
    }

    /// Runs `c` (one of [`Self::command`]'s) within the time limit. `source` is the file being
    /// compiled, for the error.
    fn run(&self, c: Command, source: Option<&Path>) -> Result<Output, RuntimeError> {
        match output_within(c, self.timeout) {
            Ok(Finished::Exited(out)) => Ok(out),
            Ok(Finished::TimedOut) => Err(RuntimeError::CompileTimedOut {
                compiler: format!("the C compiler `{}`", self.display()),
                seconds: self.timeout.unwrap_or_default().as_secs_f64(),
                source_path: source.map(Path::to_owned),
            }),
            Err(e) => Err(RuntimeError::NoCCompiler {
                compiler: self.display(),
                reason: e.to_string(),
            }),
        }
    }

    /// A hash of everything besides the source and flags that the compiled code depends on:
    /// the output of `cc --version` (so upgrading or switching the compiler never reuses code
    /// built by the old one) and [`host_cpu_identity`]. Computed once per process per command,
    /// so a warm [`super::load`] hashes only the source.
    pub fn fingerprint(&self) -> Result<Arc<str>, RuntimeError> {
        static FINGERPRINTS: LazyLock<Memo<Arc<str>>> = LazyLock::new(Memo::new);
        FINGERPRINTS.get_or_try_insert(&self.display(), || {
            let mut c = self.command();
            c.arg("--version");
            let out = self.run(c, None)?;
            Ok(Arc::from(cache::key(&[
                &out.stdout,
                &out.stderr,
                host_cpu_identity().as_bytes(),
            ])))
        })
    }

    /// Compiles the C file `src` into the shared library `out` with `flags`, linking the math
    /// library and, where it exists, libmvec (glibc's vector math, which GCC calls from
    /// vectorised loops over `expf`, `logf`, ...). Without `-lmvec` such a library would still
    /// link but fail at `dlopen` with an undefined `_ZGV...` symbol. The compiler's own temp
    /// files go in `out`'s folder (a private build folder), so a killed compile leaves none
    /// elsewhere.
    pub fn compile_shared(
        &self,
        src: &Path,
        out: &Path,
        flags: &[String],
    ) -> Result<(), RuntimeError> {
        let attempt = |with_mvec: bool| -> Result<(Output, String), RuntimeError> {
            let mut c = self.command();
            c.args(flags).arg("-o").arg(out).arg(src).arg("-lm");
            if with_mvec {
                c.arg("-lmvec");
            }
            if let Some(scratch) = out.parent() {
                c.env("TMPDIR", scratch);
            }
            let line = format!("{c:?}");
            Ok((self.run(c, Some(src))?, line))
        };
        let (mut output, mut line) = attempt(true)?;
        // Non-glibc systems (musl, macOS) have no libmvec: retry without it, but only when the
        // link step is what complained, so a real compile error is reported from the first run.
        if !output.status.success() && String::from_utf8_lossy(&output.stderr).contains("mvec") {
            (output, line) = attempt(false)?;
        }
        if output.status.success() {
            return Ok(());
        }
        let _ = std::fs::remove_file(out);
        Err(RuntimeError::CompileFailed {
            command: line,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            source_path: src.to_owned(),
        })
    }
}

/// What `-march=native` compiles for: the CPU model and feature flags. Part of the cache key so
/// that a cache folder shared between machines (an NFS home) never hands a library built for
/// AVX-512 to a machine without it.
fn host_cpu_identity() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let first = |field: &str| {
            info.lines()
                .find(|l| l.split(':').next().is_some_and(|k| k.trim() == field))
                .unwrap_or("")
                .to_owned()
        };
        format!(
            "{}\n{}\n{}\n{}",
            std::env::consts::ARCH,
            first("model name"),
            first("flags"),
            // aarch64 spells its feature list differently.
            first("Features")
        )
    })
}
