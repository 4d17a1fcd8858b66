//! Anonymous in-memory files (`memfd_create`): files with no path, so no other process can open,
//! replace or truncate them. The verified copy of a library is loaded from one, and the compiler's
//! output is captured in them.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};

/// A new, empty anonymous file named `name` (the name shows in `/proc/<pid>/maps` only).
pub(crate) fn create(name: &str) -> io::Result<File> {
    let name = CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: a valid NUL-terminated name; the flags are plain bits.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Makes `file` immutable for good: it can no longer be written, grown or shrunk, by anyone
/// (this process included), and the seals themselves cannot be removed.
pub(crate) fn seal(file: &File) -> io::Result<()> {
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on a descriptor we own, with an integer argument.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};

    #[test]
    fn sealed_files_cannot_change() {
        let mut f = create("spikeforge-test").unwrap();
        f.write_all(b"verified").unwrap();
        seal(&f).unwrap();
        assert!(f.write_all(b"x").is_err(), "write after seal");
        assert!(f.set_len(2).is_err(), "truncate after seal");
        let mut back = String::new();
        f.rewind().unwrap();
        f.read_to_string(&mut back).unwrap();
        assert_eq!(back, "verified");
    }
}
