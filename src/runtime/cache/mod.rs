//! Caches of compiled code: the folder on disk shared by a user's processes, and what each
//! process keeps in memory in front of it.
//!
//! * [`folder`]: where the cache lives; private to its user (`0700`, owner checked on every use);
//!   removal of what killed builds left behind.
//! * [`entry`]: entries written atomically, checksummed, and read back only if they verify.
//! * [`Lru`]: loaded code (libraries, CUDA modules), of which a bounded number is kept alive.
//! * [`Memo`]: small values built once per process.
//! * [`key`]: the hashes entries are named by.

mod entry;
mod folder;
mod lru;
mod memo;

pub use entry::{commit, read_blob, temp_path, write_atomic, write_blob};
pub use folder::{dir, open, root, stale_age, subdir, Scratch};
pub use lru::{Aliases, Lru};
pub use memo::Memo;

use sha2::{Digest, Sha256};

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

/// A fresh, empty, private folder under the system temp folder, for tests that need their own
/// cache.
#[cfg(test)]
pub(crate) fn test_dir(tag: &str) -> std::path::PathBuf {
    use std::os::unix::fs::DirBuilderExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("spikeforge-test-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::DirBuilder::new().mode(0o700).create(&p).unwrap();
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
}
