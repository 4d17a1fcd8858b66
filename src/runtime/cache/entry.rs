//! Cache entries on disk: written atomically, read back only if their checksum matches.
//!
//! A file is written to a temp file in the same folder and renamed onto its name, so a process
//! never sees half of an entry another one is writing. Blobs ([`write_blob`]/[`read_blob`]) carry
//! the SHA-256 of their payload, so a damaged entry (a crash before the data reached the disk, a
//! full disk, a truncated copy, a stray edit) reads as a miss and is rebuilt, never loaded. Every
//! entry that is loaded as code is a blob.

use crate::runtime::error::RuntimeError;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh path in the same folder as `dest`, for a file that will be renamed onto `dest`.
/// Unique across processes (pid) and threads (counter), and hidden so nobody mistakes it for an
/// entry. Left-over ones are removed by the next process (see [`super::folder`]).
pub fn temp_path(dest: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = dest
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Moves the finished file `tmp` onto `dest` in one step. `rename` within one folder is atomic,
/// and replacing an entry another process just wrote is harmless: both have the same content.
pub fn commit(tmp: &Path, dest: &Path) -> Result<(), RuntimeError> {
    fs::rename(tmp, dest).map_err(|e| {
        let _ = fs::remove_file(tmp);
        RuntimeError::io("write the cache entry", dest, e)
    })
}

/// Writes `bytes` to `dest` atomically (readable by this user only).
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<(), RuntimeError> {
    let tmp = temp_path(dest);
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(RuntimeError::io("write the cache entry", dest, e));
    }
    commit(&tmp, dest)
}

const BLOB_MAGIC: &[u8; 8] = b"SPKFBLB1";
const BLOB_HEADER: usize = BLOB_MAGIC.len() + 32;

/// Writes `payload` atomically with a header holding its SHA-256, for [`read_blob`] to check.
pub fn write_blob(dest: &Path, payload: &[u8]) -> Result<(), RuntimeError> {
    let mut bytes = Vec::with_capacity(BLOB_HEADER + payload.len());
    bytes.extend_from_slice(BLOB_MAGIC);
    bytes.extend_from_slice(&Sha256::digest(payload));
    bytes.extend_from_slice(payload);
    write_atomic(dest, &bytes)
}

/// The payload of a blob written by [`write_blob`], or `None` if it is absent, not a regular
/// file, unreadable or does not match its checksum (all of which just mean: rebuild it). The
/// bytes returned are the ones checked: callers load them from memory, never the file again.
pub fn read_blob(path: &Path) -> Option<Vec<u8>> {
    // O_NOFOLLOW: an entry is never a link; O_NONBLOCK: a FIFO planted under an entry's name
    // cannot block the open (the folder is private, so this is belt and braces).
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    if bytes.len() < BLOB_HEADER || &bytes[..BLOB_MAGIC.len()] != BLOB_MAGIC {
        return None;
    }
    let payload = &bytes[BLOB_HEADER..];
    if Sha256::digest(payload).as_slice() != &bytes[BLOB_MAGIC.len()..BLOB_HEADER] {
        return None;
    }
    bytes.drain(..BLOB_HEADER);
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::cache::test_dir;

    #[test]
    fn blob_round_trip_and_corruption_is_a_miss() {
        let d = test_dir("blob");
        let p = d.join("x.bin");
        assert_eq!(read_blob(&p), None, "absent entry is a miss");
        write_blob(&p, b"hello cubin").unwrap();
        assert_eq!(read_blob(&p).as_deref(), Some(&b"hello cubin"[..]));

        // Flip one payload byte: the checksum no longer matches.
        let mut bytes = fs::read(&p).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        fs::write(&p, &bytes).unwrap();
        assert_eq!(read_blob(&p), None);

        // Truncated (a half-written file from some other tool): also a miss.
        fs::write(&p, &bytes[..10]).unwrap();
        assert_eq!(read_blob(&p), None);
        write_blob(&p, b"hello cubin").unwrap();
        let full = fs::read(&p).unwrap();
        fs::write(&p, &full[..full.len() - 1]).unwrap();
        assert_eq!(read_blob(&p), None);

        // No temp files are left behind.
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x.bin")]);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn links_and_fifos_are_misses() {
        let d = test_dir("blob-odd");
        let real = d.join("real.bin");
        write_blob(&real, b"payload").unwrap();
        let link = d.join("link.bin");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(
            read_blob(&link),
            None,
            "an entry is never read through a link"
        );
        let fifo = d.join("fifo.bin");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid path string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert_eq!(read_blob(&fifo), None, "a FIFO neither blocks nor reads");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn entries_are_private_files() {
        use std::os::unix::fs::MetadataExt;
        let d = test_dir("blob-mode");
        let p = d.join("e.bin");
        write_blob(&p, b"x").unwrap();
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn concurrent_writers_never_expose_partial_files() {
        let d = test_dir("race");
        let p = d.join("e.bin");
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..5 {
                        write_blob(&p, &payload).unwrap();
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..50 {
                    if let Some(got) = read_blob(&p) {
                        assert_eq!(got, payload);
                    }
                }
            });
        });
        assert_eq!(read_blob(&p).unwrap(), payload);
        let _ = fs::remove_dir_all(&d);
    }
}
