//! Caches of compiled code: the folder on disk shared by every process, and the in-memory memo
//! each process keeps in front of it.
//!
//! Disk entries are written atomically (temp file in the same folder, then `rename`), so a process
//! never sees half of an entry another one is writing. Blobs ([`write_blob`]/[`read_blob`]) carry a
//! checksum, so a damaged entry (a crash before the data reached the disk, a full disk, a stray
//! edit) reads as a miss and is rebuilt, never loaded.

use super::error::RuntimeError;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The cache folder: `$SPIKEFORGE_CACHE_DIR`, else `$XDG_CACHE_HOME/spikeforge`, else
/// `~/.cache/spikeforge`. Not created here (see [`subdir`]).
pub fn dir() -> PathBuf {
    let env_path = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = env_path("SPIKEFORGE_CACHE_DIR") {
        return p;
    }
    // The XDG spec says relative values are invalid and must be ignored.
    if let Some(p) = env_path("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return p.join("spikeforge");
    }
    if let Some(home) = env_path("HOME") {
        return home.join(".cache").join("spikeforge");
    }
    // No home (some containers and batch systems): a per-machine folder is better than failing.
    std::env::temp_dir().join("spikeforge-cache")
}

/// `root/name`, created if needed.
pub fn subdir(root: &Path, name: &str) -> Result<PathBuf, RuntimeError> {
    let p = root.join(name);
    fs::create_dir_all(&p).map_err(|e| RuntimeError::io("create the cache folder", &p, e))?;
    Ok(p)
}

/// SHA-256 (lower-case hex) of `parts`. Each part is prefixed with its length, so
/// `["ab", "c"]` and `["a", "bc"]` get different keys.
pub fn key(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex(&h.finalize())
}

/// SHA-256 (lower-case hex) of one text, the same digest as Python's `hashlib.sha256`: the key
/// Python computes for specs and kernel plans and Rust checks.
pub fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// A fresh path in the same folder as `dest`, for a file that will be renamed onto `dest`.
/// Unique across processes (pid) and threads (counter), and hidden so nobody mistakes it for an
/// entry.
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

/// Writes `bytes` to `dest` atomically.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<(), RuntimeError> {
    let tmp = temp_path(dest);
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
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

/// The payload of a blob written by [`write_blob`], or `None` if it is absent, unreadable or does
/// not match its checksum (all of which just mean: rebuild it).
pub fn read_blob(path: &Path) -> Option<Vec<u8>> {
    let mut bytes = fs::read(path).ok()?;
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

/// A process-wide map from key to a value that is expensive to build (a loaded library, a loaded
/// CUDA module). Each key has its own slot lock, so two threads asking for the same key build it
/// once, while threads asking for other keys (or for built ones) are never held up by a build.
/// Failures are not remembered: the next call tries again.
pub struct Memo<V> {
    slots: Mutex<HashMap<String, Arc<Mutex<Option<V>>>>>,
}

impl<V: Clone> Memo<V> {
    pub fn new() -> Self {
        Memo {
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The value for `key`, building it with `build` if it is not there yet.
    pub fn get_or_try_insert<E>(
        &self,
        key: &str,
        build: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        let slot = {
            // A poisoned lock only means a panic elsewhere; the map itself is always consistent.
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            match slots.get(key) {
                Some(s) => Arc::clone(s),
                None => Arc::clone(slots.entry(key.to_owned()).or_default()),
            }
        };
        let mut value = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = value.as_ref() {
            return Ok(v.clone());
        }
        let v = build()?;
        *value = Some(v.clone());
        Ok(v)
    }

    /// The value for `key` if it has been built.
    pub fn get(&self, key: &str) -> Option<V> {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()?;
        let value = slot.lock().unwrap_or_else(|e| e.into_inner());
        value.clone()
    }
}

impl<V: Clone> Default for Memo<V> {
    fn default() -> Self {
        Self::new()
    }
}

/// A fresh, empty folder under the system temp folder, for tests that need their own cache.
#[cfg(test)]
pub(crate) fn test_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("spikeforge-test-{tag}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&p);
    fs::create_dir_all(&p).unwrap();
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_sha256_hex_and_length_prefixed() {
        let k = key(&[b"abc"]);
        assert_eq!(k.len(), 64);
        assert!(k
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(k, key(&[b"abc"]));
        assert_ne!(key(&[b"ab", b"c"]), key(&[b"a", b"bc"]));
    }

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

        // No temp files are left behind.
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x.bin")]);
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

    #[test]
    fn memo_builds_once_and_forgets_failures() {
        let m: Memo<Arc<u32>> = Memo::new();
        let mut builds = 0;
        let a = m
            .get_or_try_insert::<()>("k", || {
                builds += 1;
                Ok(Arc::new(7))
            })
            .unwrap();
        let b = m
            .get_or_try_insert::<()>("k", || {
                builds += 1;
                Ok(Arc::new(8))
            })
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(builds, 1);
        assert_eq!(m.get_or_try_insert("bad", || Err("no")), Err("no"));
        assert_eq!(m.get("bad"), None);
        assert_eq!(
            *m.get_or_try_insert::<()>("bad", || Ok(Arc::new(1)))
                .unwrap(),
            1
        );
    }
}
