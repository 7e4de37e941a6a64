//! What this store remembers of each actor between requests, so the common case skips a
//! read: the SQLite state it last saw (for the one-request commit, `sqlite_fast`, and to
//! answer the first read of a database it knows is empty) and what it knows of the actor's
//! KV (no intent pending; or empty since this store created the actor). Both are hints checked by the store's conditions or
//! dropped whenever they could be wrong; both are bounded and simply cleared when full (each
//! forgotten actor costs its next request one extra read).

use std::collections::HashMap;

use parking_lot::{Mutex, MutexGuard};

/// Actors remembered per map; past it the whole map is dropped.
const MAX_VIEWS: usize = 16_384;

/// A per-actor map of hints, bounded at [`MAX_VIEWS`] actors: a new actor arriving when it is
/// full clears it.
#[derive(Debug)]
pub(super) struct Bounded<V>(Mutex<HashMap<String, V>>);

impl<V> Default for Bounded<V> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<V: Clone + Default> Bounded<V> {
    pub(super) fn get(&self, actor_id: &str) -> Option<V> {
        self.0.lock().get(actor_id).cloned()
    }

    pub(super) fn remove(&self, actor_id: &str) -> Option<V> {
        self.0.lock().remove(actor_id)
    }

    /// Changes an actor's entry, creating it (default) if needed.
    pub(super) fn update(&self, actor_id: &str, f: impl FnOnce(&mut V)) {
        let mut map = self.0.lock();
        if map.len() >= MAX_VIEWS && !map.contains_key(actor_id) {
            map.clear();
        }
        f(map.entry(actor_id.to_owned()).or_default());
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, HashMap<String, V>> {
        self.0.lock()
    }
}

/// What this store last saw of an actor's SQLite state item.
#[derive(Debug, Clone, Default)]
pub(super) struct SqSeen {
    pub gen: u32,
    pub head: u64,
    /// The next version number.
    pub nv: u64,
    pub size: u32,
    /// Lowest visible version (for collection).
    pub fl: u64,
    /// Pages committed since their superseded versions were last collected.
    pub touched: Vec<u32>,
    pub commits: u32,
}

/// The views, per actor.
#[derive(Debug, Default)]
pub(super) struct SqViews(Bounded<SqSeen>);

impl SqViews {
    /// Records what a read or a multi-step commit saw (no pending attempt).
    pub(super) fn saw(&self, actor_id: &str, gen: u32, head: u64, nv: u64, size: u32, fl: u64) {
        self.0.update(actor_id, |view| {
            view.gen = gen;
            view.head = head;
            view.nv = nv;
            view.size = size;
            view.fl = fl;
        });
    }

    /// Drops an actor's view and returns it (its pages still to collect).
    pub(super) fn forget(&self, actor_id: &str) -> Option<SqSeen> {
        self.0.remove(actor_id)
    }

    /// This store created the actor: an empty database at generation `gen`.
    pub(super) fn created(&self, actor_id: &str, gen: u32) {
        self.saw(actor_id, gen, 0, 1, 0, 0);
    }

    /// This store moved the actor's generation mirror from its first value.
    pub(super) fn set_gen(&self, actor_id: &str, gen: u32) {
        if let Some(view) = self.0.lock().get_mut(actor_id) {
            view.gen = gen;
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, HashMap<String, SqSeen>> {
        self.0.lock()
    }

    pub(super) fn get(&self, actor_id: &str) -> Option<SqSeen> {
        self.0.get(actor_id)
    }
}

/// What this store knows of an actor's KV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Kv {
    /// No intent is pending on its state item.
    #[default]
    Clean,
    /// It has no entries at all (created by this store, never written since).
    Empty,
}

/// Actors whose KV this store knows something about. `Clean`: a read saw no intent on the
/// state item, or this store's own last write of the actor finished (its transaction's fence
/// required none, or it applied and removed its intent); KV reads then skip the state item.
/// `Empty`: this store created the actor and nothing has written its KV since; reads then
/// answer without a request. Only the actor's current generation writes KV, through the node
/// that runs it, so nothing else can change either meanwhile. A write starting, any failure,
/// a destroy and a change of generation after the first (another node may have run the actor
/// since) drop what is known.
#[derive(Debug, Default)]
pub(super) struct KvKnown(Bounded<Kv>);

impl KvKnown {
    /// Whether no intent can be pending.
    pub(super) fn is_clean(&self, actor_id: &str) -> bool {
        self.0.get(actor_id).is_some()
    }

    /// Whether the KV is known to be empty.
    pub(super) fn is_empty(&self, actor_id: &str) -> bool {
        self.0.get(actor_id) == Some(Kv::Empty)
    }

    /// A read saw no intent, or this store's write finished.
    pub(super) fn mark(&self, actor_id: &str) {
        self.0.update(actor_id, |kv| *kv = Kv::Clean);
    }

    /// This store created the actor.
    pub(super) fn mark_empty(&self, actor_id: &str) {
        self.0.update(actor_id, |kv| *kv = Kv::Empty);
    }

    pub(super) fn unmark(&self, actor_id: &str) {
        self.0.remove(actor_id);
    }
}
