//! [`Memo`]: a process-wide map from key to a value built once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A process-wide map from key to a value that is expensive to build and small to keep (a
/// compiler's fingerprint, a prepared model spec); it keeps every value for the life of the
/// process. Loaded code, which is large and counted by the operating system, goes in
/// [`super::Lru`] instead, which bounds it. Each key has its own slot lock, so two threads asking for the same key build it
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

#[cfg(test)]
mod tests {
    use super::*;

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
