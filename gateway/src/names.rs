//! What the hot path looks up by name, kept in memory: namespaces (never renamed or deleted,
//! so a found one stays valid) and the actor id behind a (namespace, name, key).
//!
//! A key's actor changes only when that actor is destroyed, and an awake actor is destroyed
//! only through the node serving it (API calls are forwarded to the lease holder). So a cached
//! id is trusted only while this node serves the actor awake (see `routing::resolve`); for an
//! actor asleep or served elsewhere the store is asked, which a wake pays for anyway. The
//! serving node forgets the key when it destroys the actor.
//!
//! Actor names that runners registered in a namespace are kept too, so that a request for a
//! name no runner serves is refused without creating anything. Runners only ever add names, so
//! a known name stays known; an unknown one is looked up in the store again at most once per
//! [`NAMES_REFRESH`], so a client asking for random names costs at most one read a second.
//!
//! The maps are bounded; past the bound an arbitrary entry is evicted, which costs one store
//! read later and nothing else.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::store::Namespace;

/// Namespaces kept; there are rarely more than a handful.
const MAX_NAMESPACES: usize = 1_024;
/// Keys kept; about 150 bytes each.
const MAX_KEYS: usize = 100_000;

/// How long a namespace's list of registered names is trusted to say a name is unknown.
pub const NAMES_REFRESH: Duration = Duration::from_secs(1);

/// (namespace id, actor name, key).
type KeyOf = (String, String, String);

/// The cache; one per gateway process.
#[derive(Default)]
pub struct Names {
    namespaces: Mutex<HashMap<String, Namespace>>,
    keys: Mutex<HashMap<KeyOf, String>>,
    registered: Mutex<HashMap<String, Registered>>,
}

/// The actor names runners registered in one namespace.
struct Registered {
    names: HashSet<String>,
    /// When the list was last read from the store; `None` if only runners' reports fed it.
    read_at: Option<Instant>,
}

/// What the cache knows of an actor name.
#[derive(Debug, PartialEq, Eq)]
pub enum NameLookup {
    /// A runner registered it.
    Registered,
    /// The store was read recently and no runner registered it; the names that are.
    Unknown(Vec<String>),
    /// Not known here: read the store's list and [`Names::put_registered`] it.
    Stale,
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

    /// Whether `name` is registered in the namespace, as far as this node knows.
    pub fn lookup_name(&self, namespace_id: &str, name: &str) -> NameLookup {
        let map = self.registered.lock();
        let Some(reg) = map.get(namespace_id) else {
            return NameLookup::Stale;
        };
        if reg.names.contains(name) {
            return NameLookup::Registered;
        }
        match reg.read_at {
            Some(at) if at.elapsed() < NAMES_REFRESH => {
                let mut names: Vec<String> = reg.names.iter().cloned().collect();
                names.sort();
                NameLookup::Unknown(names)
            }
            _ => NameLookup::Stale,
        }
    }

    /// Adds names to a namespace's registered set; `read_from_store` marks the set as the
    /// store's full list as of now.
    pub fn put_registered(
        &self,
        namespace_id: &str,
        names: impl IntoIterator<Item = String>,
        read_from_store: bool,
    ) {
        let mut map = self.registered.lock();
        if !map.contains_key(namespace_id) {
            evict_one_if_full(&mut map, MAX_NAMESPACES);
        }
        let reg = map
            .entry(namespace_id.to_owned())
            .or_insert_with(|| Registered {
                names: HashSet::new(),
                read_at: None,
            });
        reg.names.extend(names);
        if read_from_store {
            reg.read_at = Some(Instant::now());
        }
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

    #[test]
    fn a_name_is_unknown_only_after_a_recent_read_of_the_store() {
        let names = Names::default();
        assert_eq!(names.lookup_name("ns", "counter"), NameLookup::Stale);
        // A runner's report alone cannot prove a name unknown: another runner may have
        // registered it through another node.
        names.put_registered("ns", ["counter".to_owned()], false);
        assert_eq!(names.lookup_name("ns", "counter"), NameLookup::Registered);
        assert_eq!(names.lookup_name("ns", "chat"), NameLookup::Stale);
        names.put_registered("ns", ["chat".to_owned()], true);
        assert_eq!(names.lookup_name("ns", "chat"), NameLookup::Registered);
        assert_eq!(
            names.lookup_name("ns", "nope"),
            NameLookup::Unknown(vec!["chat".to_owned(), "counter".to_owned()])
        );
        assert_eq!(names.lookup_name("other", "chat"), NameLookup::Stale);
    }
}
