//! The one error type of the runtime layer.
//!
//! Every message is written for the person who will read it in a Python traceback: it says what
//! went wrong and, where there is one, what to do about it (install a package, set a variable,
//! look at a kept file).

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong while turning generated source into callable code.
#[derive(Debug)]
pub enum RuntimeError {
    /// The C compiler (`$CC`, else `cc`) could not be started at all.
    NoCCompiler {
        /// The compiler command as given (`$CC` or `cc`).
        compiler: String,
        /// Why it could not be run (the OS error).
        reason: String,
    },
    /// The C compiler ran and rejected the generated source (or failed to link it).
    CompileFailed {
        /// The full command line that was run.
        command: String,
        /// What the compiler printed on stderr.
        stderr: String,
        /// Where the generated source was kept, so it can be inspected or compiled by hand.
        source_path: PathBuf,
    },
    /// A compile (the C compiler, or NVRTC) ran past its time limit and was stopped.
    CompileTimedOut {
        /// What was stopped: the C compiler's command line, or "NVRTC".
        compiler: String,
        /// The limit, in seconds.
        seconds: f64,
        /// Where the generated source was kept, if it was.
        source_path: Option<PathBuf>,
    },
    /// A compiled shared library exists but the dynamic loader refused it.
    LoadFailed { path: PathBuf, message: String },
    /// `libcuda.so.1` (the driver) could not be loaded.
    CudaDriverNotFound,
    /// `libnvrtc.so.13` could not be loaded.
    NvrtcNotFound,
    /// NVRTC rejected the generated CUDA source.
    NvrtcCompile {
        /// NVRTC's program log (the compiler diagnostics).
        log: String,
        /// The options NVRTC was given.
        options: Vec<String>,
        /// Where the failing source was kept, if it could be written.
        source_path: Option<PathBuf>,
    },
    /// An NVRTC call other than the compilation itself failed.
    NvrtcCall { call: &'static str, result: String },
    /// A CUDA driver call failed.
    CudaCall {
        /// The driver entry point, e.g. `cuModuleLoadData`.
        call: &'static str,
        /// The `CUresult` name, e.g. `CUDA_ERROR_INVALID_PTX`.
        result: String,
        /// The driver's own description of the error, when it could be fetched.
        description: String,
    },
    /// The compiled module does not contain the requested kernel / entry point.
    KernelNotFound {
        /// The symbol that was looked up.
        name: String,
        /// What it was looked up in (a library path, or "CUDA module ...").
        module: String,
    },
    /// Generated source cannot be handed to a C API (it contains a NUL byte).
    InvalidSource { what: &'static str },
    /// The cache folder could be written by someone else, so what it holds cannot be trusted to
    /// run in this process.
    UnsafeCache {
        path: PathBuf,
        /// What is wrong, e.g. "is owned by user 1001 (you are user 1000)".
        reason: String,
    },
    /// An environment variable the runtime reads does not parse.
    BadSetting {
        name: &'static str,
        value: String,
        /// What it should hold.
        expected: &'static str,
    },
    /// A file-system operation on the cache (or a kept source) failed.
    Io {
        action: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    /// A library we call into panicked (cudarc panics, for example, when a symbol is missing);
    /// caught so that it never unwinds into XLA.
    Panic {
        during: &'static str,
        message: String,
    },
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use RuntimeError::*;
        match self {
            NoCCompiler { compiler, reason } => write!(
                f,
                "no C compiler: could not run `{compiler}` ({reason}); install gcc: apt-get install \
                 gcc, or set CC to the path of a C compiler"
            ),
            CompileFailed {
                command,
                stderr,
                source_path,
            } => write!(
                f,
                "the C compiler failed on generated code (source kept at {}):\n{}\ncommand: {command}",
                source_path.display(),
                stderr.trim_end()
            ),
            CompileTimedOut {
                compiler,
                seconds,
                source_path,
            } => {
                write!(
                    f,
                    "compiling the generated code took longer than {seconds} s, so {compiler} was \
                     stopped"
                )?;
                if let Some(p) = source_path {
                    write!(f, " (source kept at {})", p.display())?;
                }
                write!(
                    f,
                    ". A model this slow to compile is usually too large for the compiler (very many \
                     state variables, very long expressions or many sub-steps): make it smaller, \
                     or allow more time with {}=<seconds> (0 for no limit)",
                    super::settings::COMPILE_TIMEOUT_VAR
                )
            }
            LoadFailed { path, message } => write!(
                f,
                "could not load the compiled library {}: {message}",
                path.display()
            ),
            CudaDriverNotFound => write!(
                f,
                "libcuda.so.1 not found: install the NVIDIA driver (GPU kernels need the CUDA \
                 driver library; CPU kernels do not)"
            ),
            NvrtcNotFound => write!(
                f,
                "libnvrtc.so.13 not found: pip install nvidia-cuda-nvrtc or add the CUDA toolkit \
                 lib folder to LD_LIBRARY_PATH"
            ),
            NvrtcCompile {
                log,
                options,
                source_path,
            } => {
                write!(f, "NVRTC failed to compile generated CUDA code")?;
                if let Some(p) = source_path {
                    write!(f, " (source kept at {})", p.display())?;
                }
                write!(f, ":\n{}\noptions: {}", log.trim_end(), options.join(" "))
            }
            NvrtcCall { call, result } => {
                write!(f, "NVRTC call {call} failed: {result}")?;
                if result == "NVRTC_ERROR_BUILTIN_OPERATION_FAILURE" {
                    // The usual cause: libnvrtc.so.13 was found but its companion was not.
                    write!(
                        f,
                        " (libnvrtc-builtins.so.13.* could not be loaded: put it next to \
                         libnvrtc.so.13 on LD_LIBRARY_PATH)"
                    )?;
                }
                Ok(())
            }
            CudaCall {
                call,
                result,
                description,
            } => {
                write!(f, "CUDA driver call {call} failed: {result}")?;
                if !description.is_empty() {
                    write!(f, " ({description})")?;
                }
                Ok(())
            }
            KernelNotFound { name, module } => write!(
                f,
                "kernel `{name}` not found in {module}: the generated source does not define it \
                 (is it declared extern \"C\" and spelled the same?)"
            ),
            InvalidSource { what } => write!(
                f,
                "generated {what} contains a NUL byte and cannot be compiled (this is a bug in \
                 spikeforge's code generator)"
            ),
            UnsafeCache { path, reason } => write!(
                f,
                "refusing to use the cache folder {}: it {reason}, and compiled code in it would \
                 run in this process. Use a folder that only you can write: set \
                 SPIKEFORGE_CACHE_DIR to one (it is created if missing), or make this one yours \
                 (chown it to yourself, chmod 700 it and empty it)",
                path.display()
            ),
            BadSetting {
                name,
                value,
                expected,
            } => write!(f, "{name}={value}: expected {expected}"),
            Io {
                action,
                path,
                error,
            } => write!(
                f,
                "could not {action} {}: {error} (set SPIKEFORGE_CACHE_DIR to a writable folder)",
                path.display()
            ),
            Panic { during, message } => {
                write!(f, "internal panic during {during}: {message}")
            }
        }
    }
}

impl std::error::Error for RuntimeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RuntimeError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl RuntimeError {
    /// Shorthand for an [`RuntimeError::Io`] error.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        error: std::io::Error,
    ) -> Self {
        RuntimeError::Io {
            action,
            path: path.into(),
            error,
        }
    }

    /// Turns the payload of a caught panic into an error.
    pub(crate) fn from_panic(during: &'static str, payload: Box<dyn std::any::Any + Send>) -> Self {
        let message = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "(non-string panic payload)".to_owned()
        };
        RuntimeError::Panic { during, message }
    }
}

/// Runs `f`, turning a panic into [`RuntimeError::Panic`] so it never unwinds through an FFI
/// boundary (into XLA or Python).
pub(crate) fn catch_panic<T>(
    during: &'static str,
    f: impl FnOnce() -> Result<T, RuntimeError>,
) -> Result<T, RuntimeError> {
    // AssertUnwindSafe: on a panic we only report it; callers never look at state `f` may have
    // left half-updated (caches only store values after they are complete).
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(RuntimeError::from_panic(during, payload)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_to_do() {
        let e = RuntimeError::NoCCompiler {
            compiler: "/nonexistent".into(),
            reason: "No such file or directory".into(),
        };
        assert!(e
            .to_string()
            .contains("install gcc: apt-get install gcc, or set CC"));
        assert!(RuntimeError::CudaDriverNotFound
            .to_string()
            .starts_with("libcuda.so.1 not found: install the NVIDIA driver"));
        assert!(RuntimeError::NvrtcNotFound
            .to_string()
            .contains("pip install nvidia-cuda-nvrtc"));
    }

    #[test]
    fn panics_become_errors() {
        let r: Result<(), _> = catch_panic("a test", || panic!("boom {}", 1));
        match r {
            Err(RuntimeError::Panic { during, message }) => {
                assert_eq!(during, "a test");
                assert_eq!(message, "boom 1");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
