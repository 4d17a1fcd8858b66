//! Where the cache lives, and keeping it private to its user.
//!
//! Whatever is in the cache ends up running in this process (a shared library is loaded, a CUBIN
//! runs on the GPU), so whoever can write the folder can run code as its user. The folder is
//! created `0700` and checked on every use: it must be a folder owned by this user that nobody else
//! can write, reached through no symbolic link owned by someone else. Anything else is refused with
//! [`RuntimeError::UnsafeCache`], which says how to fix it; there is no silent fallback, because a
//! folder another user controls is a configuration to repair, not to work around. (Checksums,
//! [`super::read_blob`], catch damage; only this check keeps out planted entries.)
//!
//! Temp files and build folders of builds that were killed (a process killed mid-compile, a
//! machine that lost power) are removed the first time a process opens the cache, once they are
//! older than [`stale_age`].

use crate::runtime::error::RuntimeError;
use crate::runtime::settings;
use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime};

/// The cache folder: `$SPIKEFORGE_CACHE_DIR`, else `$XDG_CACHE_HOME/spikeforge`, else
/// `~/.cache/spikeforge`, else (no home) `<tmp>/spikeforge-cache-<uid>`. Neither created nor
/// checked here: [`root`] does both.
pub fn dir() -> PathBuf {
    dir_from(|name| std::env::var_os(name))
}

fn dir_from(env: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    let env_path = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
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
    // No home (some containers and batch systems): a folder per user in the shared temp folder.
    // Per user, so that two users never share one; another user who creates it first only causes
    // a clear error (its owner is checked), never a load of their files.
    std::env::temp_dir().join(format!("spikeforge-cache-{}", current_uid()))
}

/// The cache folder ([`dir`]), created if missing and checked to be private; the first call for a
/// folder in a process also removes what killed builds left in it.
pub fn root() -> Result<PathBuf, RuntimeError> {
    open(&dir())
}

/// [`root`] for an explicit folder.
pub fn open(path: &Path) -> Result<PathBuf, RuntimeError> {
    ensure_private_dir(path)?;
    static CLEANED: LazyLock<Mutex<HashSet<PathBuf>>> = LazyLock::new(Default::default);
    let first = CLEANED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(path.to_owned());
    if first {
        remove_stale(path, stale_age());
    }
    Ok(path.to_owned())
}

/// `root/name` (`name` may have several components, e.g. `cuda/failed`), each folder created
/// `0700` if missing and checked like the root.
pub fn subdir(root: &Path, name: &str) -> Result<PathBuf, RuntimeError> {
    let mut p = root.to_owned();
    for part in Path::new(name).components() {
        p.push(part);
        ensure_private_dir(&p)?;
    }
    Ok(p)
}

fn current_uid() -> u32 {
    // SAFETY: geteuid cannot fail and has no preconditions.
    unsafe { libc::geteuid() }
}

/// Creates `path` (`0700`; missing parents with the default mode) if it does not exist, then
/// checks it with [`check_private`].
fn ensure_private_dir(path: &Path) -> Result<(), RuntimeError> {
    if let Err(e) = fs::symlink_metadata(path) {
        if e.kind() != ErrorKind::NotFound {
            return Err(RuntimeError::io("inspect the cache folder", path, e));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)
                .map_err(|e| RuntimeError::io("create the cache folder", parent, e))?;
        }
        match fs::DirBuilder::new().mode(0o700).create(path) {
            // Another process may have created it meanwhile: the check below judges it.
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(RuntimeError::io("create the cache folder", path, e)),
        }
    }
    check_private(path)
}

/// `Ok` if `path` is a folder owned by this user that no other user can write, reached through
/// no symbolic link owned by someone else.
fn check_private(path: &Path) -> Result<(), RuntimeError> {
    let me = current_uid();
    let refuse = |reason: String| {
        Err(RuntimeError::UnsafeCache {
            path: path.to_owned(),
            reason,
        })
    };
    let link = fs::symlink_metadata(path)
        .map_err(|e| RuntimeError::io("inspect the cache folder", path, e))?;
    if link.file_type().is_symlink() && link.uid() != me {
        return refuse(format!(
            "is a symbolic link owned by user {} (you are user {me})",
            link.uid()
        ));
    }
    let meta =
        fs::metadata(path).map_err(|e| RuntimeError::io("inspect the cache folder", path, e))?;
    if !meta.is_dir() {
        return refuse("is not a folder".to_owned());
    }
    if meta.uid() != me {
        return refuse(format!(
            "is owned by user {} (you are user {me})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return refuse(format!(
            "can be written by other users (mode {:03o})",
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

/// How old a temp file or build folder must be before a new process removes it as left over from
/// a killed build: an hour, or twice the compile timeout if that is longer; a day when compiles
/// have no time limit.
pub fn stale_age() -> Duration {
    const HOUR: Duration = Duration::from_secs(3600);
    match settings::compile_timeout() {
        Ok(Some(t)) => HOUR.max(t.saturating_mul(2)),
        Ok(None) => 24 * HOUR,
        Err(_) => HOUR,
    }
}

/// Where build folders ([`Scratch`]) live.
const SCRATCH_DIR: &str = "tmp";

/// Removes temp files (`.*.tmp`, see [`super::temp_path`]) and build folders older than `age`
/// under `root`. Best effort: what cannot be removed now is tried again by the next process.
fn remove_stale(root: &Path, age: Duration) {
    let old = |path: &Path| {
        fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|a| a >= age)
    };
    let entries = |dir: &Path| -> Vec<PathBuf> {
        fs::read_dir(dir)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    };
    for dir in ["", "cpu", "cuda", "cuda/failed"] {
        for p in entries(&root.join(dir)) {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            if name.starts_with('.') && name.ends_with(".tmp") && old(&p) {
                let _ = fs::remove_file(&p);
            }
        }
    }
    for p in entries(&root.join(SCRATCH_DIR)) {
        if old(&p) {
            let _ = fs::remove_dir_all(&p);
        }
    }
}

/// A private build folder under `<root>/tmp`, removed with everything in it when dropped (and, if
/// the process is killed first, by [`remove_stale`] in a later process).
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// A new, empty folder `<root>/tmp/<pid>-<n>`; `root` must come from [`root`] or [`open`].
    pub fn new(root: &Path) -> Result<Self, RuntimeError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let parent = subdir(root, SCRATCH_DIR)?;
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = parent.join(format!("{}-{n}", std::process::id()));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(Scratch { path }),
                // Left by an earlier process with the same pid: take the next name.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(RuntimeError::io("create a build folder", path, e)),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::cache::test_dir;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn default_folder_by_environment() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(
            dir_from(env(&[("SPIKEFORGE_CACHE_DIR", "/a"), ("HOME", "/h")])),
            PathBuf::from("/a")
        );
        assert_eq!(
            dir_from(env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")])),
            PathBuf::from("/x/spikeforge")
        );
        assert_eq!(
            dir_from(env(&[("XDG_CACHE_HOME", "rel"), ("HOME", "/h")])),
            PathBuf::from("/h/.cache/spikeforge")
        );
        // No home: one folder per user in the temp folder, never one shared by all users.
        assert_eq!(
            dir_from(env(&[("HOME", "")])),
            std::env::temp_dir().join(format!("spikeforge-cache-{}", current_uid()))
        );
    }

    #[test]
    fn created_private() {
        let base = test_dir("folder-new");
        let root = base.join("a").join("cache");
        open(&root).unwrap();
        let mode = fs::metadata(&root).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700, "created {mode:o}");
        let sub = subdir(&root, "cuda/failed").unwrap();
        assert_eq!(fs::metadata(&sub).unwrap().mode() & 0o777, 0o700);
        assert_eq!(
            fs::metadata(root.join("cuda")).unwrap().mode() & 0o777,
            0o700
        );
        let _ = fs::remove_dir_all(&base);
    }

    #[test]
    fn writable_by_others_is_refused() {
        let base = test_dir("folder-perm");
        let root = base.join("cache");
        fs::create_dir(&root).unwrap();
        // Readable by others is fine (an older version created it 0755).
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        open(&root).unwrap();
        for mode in [0o777, 0o770, 0o1777, 0o702] {
            fs::set_permissions(&root, fs::Permissions::from_mode(mode)).unwrap();
            let err = open(&root).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, RuntimeError::UnsafeCache { .. }), "{err:?}");
            assert!(msg.contains("can be written by other users"), "{msg}");
            assert!(msg.contains("SPIKEFORGE_CACHE_DIR"), "{msg}");
            assert!(msg.contains(&root.display().to_string()), "{msg}");
        }
        // A subfolder is checked too.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
        fs::create_dir(root.join("cpu")).unwrap();
        fs::set_permissions(root.join("cpu"), fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            subdir(&root, "cpu"),
            Err(RuntimeError::UnsafeCache { .. })
        ));
        // A file where the folder should be.
        let file = base.join("file");
        fs::write(&file, b"x").unwrap();
        assert!(open(&file)
            .unwrap_err()
            .to_string()
            .contains("is not a folder"));
        let _ = fs::remove_dir_all(&base);
    }

    /// Root only: a folder (or a symbolic link) owned by another user is refused.
    #[test]
    fn owned_by_someone_else_is_refused() {
        if current_uid() != 0 {
            eprintln!("SKIPPED owned_by_someone_else_is_refused: needs root to chown");
            return;
        }
        let nobody = 65534;
        let base = test_dir("folder-owner");
        let root = base.join("cache");
        fs::DirBuilder::new().mode(0o700).create(&root).unwrap();
        std::os::unix::fs::chown(&root, Some(nobody), Some(nobody)).unwrap();
        let msg = open(&root).unwrap_err().to_string();
        assert!(
            msg.contains(&format!("is owned by user {nobody} (you are user 0)")),
            "{msg}"
        );

        let mine = base.join("mine");
        fs::DirBuilder::new().mode(0o700).create(&mine).unwrap();
        let link = base.join("link");
        std::os::unix::fs::symlink(&mine, &link).unwrap();
        open(&link).unwrap();
        std::os::unix::fs::lchown(&link, Some(nobody), Some(nobody)).unwrap();
        let msg = open(&link).unwrap_err().to_string();
        assert!(msg.contains("is a symbolic link owned by user"), "{msg}");
        let _ = fs::remove_dir_all(&base);
    }

    #[test]
    fn stale_leftovers_are_removed_fresh_ones_kept() {
        let base = test_dir("folder-stale");
        let root = base.join("cache");
        open(&root).unwrap();
        let cpu = subdir(&root, "cpu").unwrap();
        let old_tmp = cpu.join(".abc.so.123.0.tmp");
        let new_tmp = cpu.join(".abc.so.123.1.tmp");
        let entry = cpu.join("abc.so");
        for p in [&old_tmp, &new_tmp, &entry] {
            fs::write(p, b"x").unwrap();
        }
        let old_build = Scratch::new(&root).unwrap();
        let old_build_path = old_build.path().to_owned();
        std::mem::forget(old_build); // as if the process was killed mid-build
        fs::write(old_build_path.join("lib.so"), b"x").unwrap();
        let new_build = Scratch::new(&root).unwrap();

        let an_hour_ago = SystemTime::now() - Duration::from_secs(3700);
        for p in [&old_tmp, &old_build_path] {
            fs::File::open(p)
                .unwrap()
                .set_modified(an_hour_ago)
                .unwrap();
        }
        remove_stale(&root, Duration::from_secs(3600));
        assert!(!old_tmp.exists() && !old_build_path.exists());
        assert!(new_tmp.exists() && entry.exists() && new_build.path().exists());
        let p = new_build.path().to_owned();
        drop(new_build);
        assert!(!p.exists(), "a build folder is removed when dropped");
        let _ = fs::remove_dir_all(&base);
    }
}
