//! What the hot path looks up by name, kept in memory: namespaces (never renamed or deleted,
//! so a found one stays valid) and the actor id behind a (namespace, name, key).
//!
//! A key's actor changes only when that actor is destroyed, and an awake actor is destroyed
//! only through the node serving it (API calls are forwarded to the lease holder). So a cached
//! id is trusted only while this node serves the actor awake (see `routing::resolve`); for an
//! actor asleep or served elsewhere the store is asked, which a wake pays for anyway. The
//! serving node forgets the key when it destroys the actor.
//!
//! Both maps are bounded; past the bound an arbitrary entry is evicted, which costs one store
//! read later and nothing else.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::store::Namespace;

/// Namespaces kept; there are rarely more than a handful.
const MAX_NAMESPACES: usize = 1_024;
/// Keys kept; about 150 bytes each.
const MAX_KEYS: usize = 100_000;

/// (namespace id, actor name, key).
type KeyOf = (String, String, String);

/// The cache; one per gateway process.
#[derive(Default)]
pub struct Names {
    namespaces: Mutex<HashMap<String, Namespace>>,
    keys: Mutex<HashMap<KeyOf, String>>,
}

impl Names {
    /// A namespace found before, by name.
    pub fn namespace(&self, name: &str) -> Option<Namespace> {
        self.namespaces.lock().get(name).cloned()
    }

    /// Remembers a namespace found in the store.
    pub fn put_namespace(&self, ns: &Namespace) {
        let mut map = self.namespaces.lock();
        evict_one_if_full(&mut map, MAX_NAMESPACES);
        map.insert(ns.name.clone(), ns.clone());
    }

    /// The actor id last seen for a key.
    pub fn actor_id(&self, namespace_id: &str, name: &str, key: &str) -> Option<String> {
        self.keys
            .lock()
            .get(&(namespace_id.to_owned(), name.to_owned(), key.to_owned()))
            .cloned()
    }

    /// Remembers which actor holds a key.
    pub fn put_actor_id(&self, namespace_id: &str, name: &str, key: &str, actor_id: &str) {
        let mut map = self.keys.lock();
        evict_one_if_full(&mut map, MAX_KEYS);
        map.insert(
            (namespace_id.to_owned(), name.to_owned(), key.to_owned()),
            actor_id.to_owned(),
        );
    }

    /// Forgets a key whose actor was destroyed.
    pub fn forget_key(&self, namespace_id: &str, name: &str, key: &str) {
        self.keys
            .lock()
            .remove(&(namespace_id.to_owned(), name.to_owned(), key.to_owned()));
    }

    /// Keys held (for tests).
    pub fn keys_len(&self) -> usize {
        self.keys.lock().len()
    }
}

fn evict_one_if_full<K: Clone + Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>, max: usize) {
    if map.len() >= max {
        if let Some(k) = map.keys().next().cloned() {
            map.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn keys_are_remembered_forgotten_and_bounded() {
        let names = Names::default();
        names.put_actor_id("ns", "counter", "a", "id-a");
        assert_eq!(
            names.actor_id("ns", "counter", "a").as_deref(),
            Some("id-a")
        );
        assert_eq!(names.actor_id("ns", "chat", "a"), None);
        names.forget_key("ns", "counter", "a");
        assert_eq!(names.actor_id("ns", "counter", "a"), None);
        for i in 0..MAX_KEYS + 10 {
            names.put_actor_id("ns", "n", &i.to_string(), "x");
        }
        assert_eq!(names.keys_len(), MAX_KEYS);
    }
}
