//! Loading a shared library from bytes this process has verified, and unloading it.
//!
//! `dlopen` takes a path, and a file in the cache could change between being checked and being
//! loaded, or after it is mapped (a file truncated under a mapping kills the process with SIGBUS
//! at the next call). So a library is never loaded from the cache itself: its bytes are read and
//! checked against their checksum ([`crate::runtime::cache::read_blob`]), copied into a sealed
//! anonymous file ([`super::memfd`]) that nobody can change, and loaded from that
//! (`/proc/self/fd/<n>`). What is loaded is exactly what was checked.
//!
//! The dynamic loader knows loaded libraries by name, and `/proc/self/fd/<n>` names a different
//! file once `<n>` is reused; so the descriptor stays open while the library is loaded, and for
//! good if `dlclose` left it loaded.

use super::memfd;
use libloading::os::unix::{Library as Dl, RTLD_LAZY, RTLD_LOCAL, RTLD_NOW};
use std::fs::File;
use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::fd::AsRawFd;

/// A shared library loaded from a private, sealed copy of verified bytes; unloaded on drop.
pub(crate) struct Library {
    lib: ManuallyDrop<libloading::Library>,
    /// The sealed copy `lib` was loaded from.
    file: ManuallyDrop<File>,
    /// `/proc/self/fd/<n>`: the name the dynamic loader knows `lib` by.
    name: String,
}

impl Library {
    /// Loads `bytes` (a shared library already verified by the caller) with every symbol
    /// resolved now (`RTLD_NOW`: a missing symbol is an error here, not a crash at the first
    /// call). `label` names the copy in `/proc/<pid>/maps`. The error is the loader's message.
    pub(crate) fn load(bytes: &[u8], label: &str) -> Result<Self, String> {
        let copy = || -> std::io::Result<File> {
            let mut file = memfd::create(label)?;
            file.write_all(bytes)?;
            memfd::seal(&file)?;
            Ok(file)
        };
        let file = copy().map_err(|e| format!("could not make a private copy to load: {e}"))?;
        let name = format!("/proc/self/fd/{}", file.as_raw_fd());
        // SAFETY: the library is generated C (or a user's C twin of a kernel, which is the user's
        // own code) compiled by this process; its initialisers are the compiler's.
        let lib = unsafe { Dl::open(Some(&name), RTLD_NOW | RTLD_LOCAL) }.map_err(|e| {
            let mut msg = error_chain(&e);
            if !std::path::Path::new("/proc/self/fd").is_dir() {
                msg.push_str(" (loading compiled code needs /proc to be mounted)");
            }
            msg
        })?;
        Ok(Library {
            lib: ManuallyDrop::new(lib.into()),
            file: ManuallyDrop::new(file),
            name,
        })
    }

    /// A symbol of the library; see [`libloading::Library::get`].
    ///
    /// # Safety
    /// `T` must match the symbol's actual definition.
    pub(crate) unsafe fn get<T>(
        &self,
        symbol: &str,
    ) -> Result<libloading::Symbol<'_, T>, libloading::Error> {
        // SAFETY: forwarded to the caller.
        unsafe { self.lib.get(symbol.as_bytes()) }
    }

    /// The name the dynamic loader knows the library by.
    #[cfg(test)]
    pub(crate) fn loaded_name(&self) -> &str {
        &self.name
    }
}

impl Drop for Library {
    fn drop(&mut self) {
        // SAFETY: taken once, here; `lib` is not used again.
        let lib = unsafe { ManuallyDrop::take(&mut self.lib) };
        let _ = lib.close();
        // RTLD_NOLOAD finds the library only if dlclose left it loaded (something still refers
        // to it); that extra reference is given back at once.
        // SAFETY: loads nothing: NOLOAD only looks the name up.
        let still_loaded =
            unsafe { Dl::open(Some(&self.name), RTLD_LAZY | libc::RTLD_NOLOAD) }.is_ok();
        if !still_loaded {
            // SAFETY: dropped once, here.
            unsafe { ManuallyDrop::drop(&mut self.file) };
        }
        // Otherwise the descriptor stays open for the life of the process, so its number (and
        // with it the library's name) is never given to another file.
    }
}

/// `e` and its causes, joined: libloading's own message is only "dlopen failed".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the dynamic loader has `name` loaded.
    fn is_loaded(name: &str) -> bool {
        // SAFETY: NOLOAD only looks the name up; the reference it takes is given back on drop.
        unsafe { Dl::open(Some(name), RTLD_LAZY | libc::RTLD_NOLOAD) }.is_ok()
    }

    #[test]
    fn garbage_is_refused_and_unloading_frees_the_name() {
        let err = Library::load(b"not an ELF file", "spikeforge-test")
            .err()
            .unwrap();
        assert!(!err.is_empty());

        // A real library, compiled here.
        let dir = crate::runtime::cache::test_dir("library");
        let (src, so) = (dir.join("t.c"), dir.join("t.so"));
        std::fs::write(&src, "double twice(double x) { return 2 * x; }\n").unwrap();
        let status = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .args([&so, &src])
            .status()
            .unwrap();
        assert!(status.success());
        let bytes = std::fs::read(&so).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let lib = Library::load(&bytes, "spikeforge-test").unwrap();
        let name = lib.loaded_name().to_owned();
        assert!(is_loaded(&name));
        // SAFETY: `double twice(double)`.
        let twice = unsafe { lib.get::<unsafe extern "C" fn(f64) -> f64>("twice") }.unwrap();
        assert_eq!(unsafe { twice(1.5) }, 3.0);
        drop(lib);
        assert!(!is_loaded(&name), "unloaded on drop");
    }
}
