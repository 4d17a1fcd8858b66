//! [`Lru`]: a process-wide map from key to loaded code that keeps a bounded number alive.
//!
//! Every loaded shared library costs the process about five memory mappings, and the kernel
//! refuses new mappings past `vm.max_map_count` (65530 by default): a process that loads one
//! library per model and keeps them all cannot load its ~13,000th. An [`Lru`] holds at most
//! `capacity` values itself, dropping the least recently used one when a new one comes in. A
//! dropped value is freed (its library unloaded) once nobody else holds it: a call that is using
//! it holds an `Arc`, so code is never unloaded under a running call. Until then the map still
//! finds it (it keeps a weak reference), so a value is never loaded twice.

use crate::runtime::settings;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// A map from key to `Arc<T>` whose values are built once, by the first caller that asks (each
/// key has its own build lock, so builds of other keys and hits never wait for one), and of
/// which at most `capacity` are kept alive by the map itself. Failures are not remembered: the
/// next call tries again.
pub struct Lru<T> {
    capacity: usize,
    state: Mutex<State<T>>,
}

struct State<T> {
    entries: HashMap<String, Entry<T>>,
    /// Last-use clock: bumped by every lookup.
    clock: u64,
    /// Entries whose `held` is `Some` (at most `capacity`).
    held: usize,
    /// Forgotten entries (neither held nor alive) are swept when the map grows past this.
    sweep_at: usize,
}

struct Entry<T> {
    /// The build lock of the key, holding what was built while it is alive.
    slot: Arc<Mutex<Weak<T>>>,
    /// The map's own reference, if the value is among the `capacity` most recently used.
    held: Option<Arc<T>>,
    last_used: u64,
}

impl<T> Entry<T> {
    fn new() -> Self {
        Entry {
            slot: Arc::new(Mutex::new(Weak::new())),
            held: None,
            last_used: 0,
        }
    }

    /// Nobody is building it, holding its build lock, or holding its value.
    fn forgotten(&self) -> bool {
        self.held.is_none()
            && Arc::strong_count(&self.slot) == 1
            && self.slot.try_lock().is_ok_and(|w| w.strong_count() == 0)
    }
}

fn lock<U>(m: &Mutex<U>) -> MutexGuard<'_, U> {
    // A poisoned lock only means a panic elsewhere; the state is consistent at every unlock.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T> Lru<T> {
    /// A map that keeps at most `SPIKEFORGE_MAX_LOADED_MODULES` values alive by itself.
    pub fn new() -> Self {
        Self::with_capacity(settings::loaded_capacity())
    }

    /// A map that keeps at most `capacity` values alive by itself (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Lru {
            capacity: capacity.max(1),
            state: Mutex::new(State {
                entries: HashMap::new(),
                clock: 0,
                held: 0,
                sweep_at: 0,
            }),
        }
    }

    /// The value for `key`, building it with `build` if it is not alive.
    pub fn get_or_try_insert<E>(
        &self,
        key: &str,
        build: impl FnOnce() -> Result<Arc<T>, E>,
    ) -> Result<Arc<T>, E> {
        let slot = {
            let mut st = lock(&self.state);
            st.clock += 1;
            let now = st.clock;
            if !st.entries.contains_key(key) {
                st.entries.insert(key.to_owned(), Entry::new());
            }
            let e = st.entries.get_mut(key).expect("inserted above");
            e.last_used = now;
            if let Some(v) = &e.held {
                return Ok(Arc::clone(v));
            }
            Arc::clone(&e.slot)
        };
        let mut built = lock(&slot);
        let value = match built.upgrade() {
            Some(v) => v,
            None => match build() {
                Ok(v) => {
                    *built = Arc::downgrade(&v);
                    v
                }
                Err(e) => {
                    drop(built);
                    drop(slot);
                    let mut st = lock(&self.state);
                    if st.entries.get(key).is_some_and(Entry::forgotten) {
                        st.entries.remove(key);
                    }
                    return Err(e);
                }
            },
        };
        drop(built);
        drop(slot);
        self.hold(key, &value);
        Ok(value)
    }

    /// The value for `key` if it is alive (counts as a use).
    pub fn get(&self, key: &str) -> Option<Arc<T>> {
        let value = {
            let mut st = lock(&self.state);
            st.clock += 1;
            let now = st.clock;
            let e = st.entries.get_mut(key)?;
            e.last_used = now;
            if let Some(v) = &e.held {
                return Some(Arc::clone(v));
            }
            // A value being built is not there yet.
            let v = e.slot.try_lock().ok()?.upgrade()?;
            v
        };
        self.hold(key, &value);
        Some(value)
    }

    /// Makes the map hold `value` (the value of `key`, alive), dropping the least recently used
    /// values past `capacity` after the lock is released (dropping may unload a library, which
    /// must not happen under the map's lock).
    fn hold(&self, key: &str, value: &Arc<T>) {
        let mut dropped = Vec::new();
        {
            let mut st = lock(&self.state);
            st.clock += 1;
            let now = st.clock;
            if !st.entries.contains_key(key) {
                let e = Entry::new();
                *lock(&e.slot) = Arc::downgrade(value);
                st.entries.insert(key.to_owned(), e);
            }
            let e = st.entries.get_mut(key).expect("inserted above");
            e.last_used = now;
            if e.held.is_none() {
                e.held = Some(Arc::clone(value));
                st.held += 1;
            }
            while st.held > self.capacity {
                let oldest = st
                    .entries
                    .values_mut()
                    .filter(|e| e.held.is_some())
                    .min_by_key(|e| e.last_used)
                    .expect("held > 0");
                dropped.push(oldest.held.take());
                st.held -= 1;
            }
            if st.entries.len() > st.sweep_at {
                st.entries.retain(|_, e| !e.forgotten());
                st.sweep_at = (2 * st.entries.len()).max(2 * self.capacity + 64);
            }
        }
        drop(dropped);
    }

    /// How many values the map holds itself.
    pub fn held(&self) -> usize {
        lock(&self.state).held
    }
}

impl<T> Default for Lru<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Shortcuts from a caller's own key for something loaded (e.g. the hash of a model spec, known
/// before the source is generated) to its key in an [`Lru`]. Only names are kept, a bounded
/// number of them; the loaded thing itself lives in the `Lru`.
pub struct Aliases(Lru<String>);

impl Aliases {
    /// Room for four names per value an [`Lru::new`] keeps.
    pub fn new() -> Self {
        Self::with_capacity(4 * settings::loaded_capacity())
    }

    pub fn with_capacity(capacity: usize) -> Self {
        Aliases(Lru::with_capacity(capacity))
    }

    /// What `alias` was last [`recorded`](Self::record) for, if it is still alive in `target`.
    pub fn resolve<T>(&self, alias: &str, target: &Lru<T>) -> Option<Arc<T>> {
        target.get(&self.0.get(alias)?)
    }

    /// Records that `alias` stands for `key`.
    pub fn record(&self, alias: &str, key: &str) {
        let _ = self
            .0
            .get_or_try_insert::<()>(alias, || Ok(Arc::new(key.to_owned())));
    }
}

impl Default for Aliases {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts the values alive, like loaded libraries.
    struct Loaded<'a>(u32, &'a AtomicUsize);
    impl<'a> Loaded<'a> {
        fn new(v: u32, alive: &'a AtomicUsize) -> Arc<Self> {
            alive.fetch_add(1, Ordering::SeqCst);
            Arc::new(Loaded(v, alive))
        }
    }
    impl Drop for Loaded<'_> {
        fn drop(&mut self) {
            self.1.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn builds_once_and_forgets_failures() {
        let alive = AtomicUsize::new(0);
        let m = Lru::with_capacity(4);
        let mut builds = 0;
        let a = m
            .get_or_try_insert::<()>("k", || {
                builds += 1;
                Ok(Loaded::new(7, &alive))
            })
            .unwrap();
        let b = m
            .get_or_try_insert::<()>("k", || {
                builds += 1;
                Ok(Loaded::new(8, &alive))
            })
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(builds, 1);
        assert!(m.get_or_try_insert("bad", || Err("no")).is_err());
        assert!(m.get("bad").is_none());
        assert_eq!(
            m.get_or_try_insert::<()>("bad", || Ok(Loaded::new(1, &alive)))
                .unwrap()
                .0,
            1
        );
    }

    #[test]
    fn keeps_at_most_capacity_alive_and_evicts_the_least_recently_used() {
        let alive = AtomicUsize::new(0);
        let m = Lru::with_capacity(3);
        let load = |k: u32| {
            m.get_or_try_insert::<()>(&k.to_string(), || Ok(Loaded::new(k, &alive)))
                .unwrap()
        };
        for k in 0..3 {
            load(k);
        }
        assert_eq!(alive.load(Ordering::SeqCst), 3);
        load(0); // 0 is now the most recently used; 1 the least
        load(3);
        assert_eq!(alive.load(Ordering::SeqCst), 3);
        assert!(m.get("1").is_none(), "1 was dropped");
        for k in [0, 2, 3] {
            assert_eq!(m.get(&k.to_string()).unwrap().0, k);
        }
        for k in 0..1000 {
            assert_eq!(load(k).0, k);
            assert!(alive.load(Ordering::SeqCst) <= 3);
        }
        assert_eq!(m.held(), 3);
        let entries = lock(&m.state).entries.len();
        assert!(
            entries <= 2 * 3 + 64 + 1,
            "forgotten keys are swept: {entries}"
        );
    }

    #[test]
    fn a_value_in_use_is_never_dropped_nor_loaded_twice() {
        let alive = AtomicUsize::new(0);
        let m = Lru::with_capacity(2);
        let builds = AtomicUsize::new(0);
        let load = |k: u32| {
            m.get_or_try_insert::<()>(&k.to_string(), || {
                builds.fetch_add(1, Ordering::SeqCst);
                Ok(Loaded::new(k, &alive))
            })
            .unwrap()
        };
        let in_use = load(0);
        for k in 1..10 {
            load(k);
        }
        // Evicted from the map but held by a caller: alive, and found again without a build.
        assert_eq!(in_use.0, 0);
        assert_eq!(alive.load(Ordering::SeqCst), 3);
        let again = load(0);
        assert!(Arc::ptr_eq(&in_use, &again));
        assert_eq!(builds.load(Ordering::SeqCst), 10);
        drop((in_use, again));
        load(20);
        load(21);
        assert_eq!(
            alive.load(Ordering::SeqCst),
            2,
            "dropped once the caller let go"
        );
    }

    #[test]
    fn aliases_resolve_while_the_target_lives() {
        let alive = AtomicUsize::new(0);
        let m = Lru::with_capacity(1);
        let aliases = Aliases::with_capacity(4);
        assert!(aliases.resolve("spec-a", &m).is_none());
        m.get_or_try_insert::<()>("lib-a", || Ok(Loaded::new(1, &alive)))
            .unwrap();
        aliases.record("spec-a", "lib-a");
        assert_eq!(aliases.resolve("spec-a", &m).unwrap().0, 1);
        m.get_or_try_insert::<()>("lib-b", || Ok(Loaded::new(2, &alive)))
            .unwrap();
        assert!(
            aliases.resolve("spec-a", &m).is_none(),
            "lib-a was unloaded"
        );
    }

    #[test]
    fn concurrent_callers_build_each_key_once() {
        let alive = AtomicUsize::new(0);
        let builds = AtomicUsize::new(0);
        let m = Lru::with_capacity(8);
        std::thread::scope(|s| {
            for t in 0..4 {
                let (m, alive, builds) = (&m, &alive, &builds);
                s.spawn(move || {
                    for i in 0..200u32 {
                        let k = (i * 7 + t) % 8;
                        let v = m
                            .get_or_try_insert::<()>(&k.to_string(), || {
                                builds.fetch_add(1, Ordering::SeqCst);
                                Ok(Loaded::new(k, alive))
                            })
                            .unwrap();
                        assert_eq!(v.0, k);
                    }
                });
            }
        });
        assert_eq!(
            builds.load(Ordering::SeqCst),
            8,
            "8 keys, capacity 8: no rebuilds"
        );
    }
}
