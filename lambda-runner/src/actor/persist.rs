//! How an actor's data lies in its KV, and the [`Saver`] that writes the state: at once for
//! an action waiting to reply, throttled in the background otherwise.
//!
//! # KV layout (every key of an actor starts with one tag byte)
//! - `01 00`: state header, CBOR `{v: 1, len, chunks}`.
//! - `01 01 <u32 BE i>`: chunk `i` of the CBOR-encoded state, at most 96 KiB each, at most 9.
//!   The header and all chunks go in one `kv_put`, which the gateway applies atomically, so a
//!   reader never sees a mix of two saves. Nine chunks keep one put under the gateway's
//!   976 KiB request limit; a larger state fails to save (`SaveError::TooLarge`).
//! - `02 <id>`: one pending scheduled action (see `schedule`).
//! - `03 <key>`: the actor's own KV (`ctx.kv()`).
//! - `04 <connection id>`: a hibernatable connection (see `hibernate`); changed records are
//!   written in the same put as the state.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::{SaveError, StartError};
use super::host::Host;

pub(crate) const STATE_TAG: u8 = 0x01;
pub(crate) const SCHEDULE_TAG: u8 = 0x02;
pub(crate) const USER_KV_TAG: u8 = 0x03;

const CHUNK_BYTES: usize = 96 * 1024;
const MAX_CHUNKS: usize = 9;
/// Largest encoded state that can be saved.
pub(crate) const MAX_STATE_BYTES: usize = CHUNK_BYTES * MAX_CHUNKS;
const LAYOUT_VERSION: u8 = 1;

pub(crate) fn state_header_key() -> Vec<u8> {
    vec![STATE_TAG, 0x00]
}

pub(crate) fn state_chunk_key(index: u32) -> Vec<u8> {
    let mut key = vec![STATE_TAG, 0x01];
    key.extend_from_slice(&index.to_be_bytes());
    key
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Header {
    v: u8,
    len: u64,
    chunks: u32,
}

/// KV entries of one write.
pub(crate) type KvEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// The encoded state as KV entries (header first) and the number of chunks.
pub(crate) fn state_entries(bytes: &[u8]) -> Result<(KvEntries, u32), SaveError> {
    if bytes.len() > MAX_STATE_BYTES {
        return Err(SaveError::TooLarge {
            bytes: bytes.len(),
            limit: MAX_STATE_BYTES,
        });
    }
    let chunks: Vec<&[u8]> = if bytes.is_empty() {
        vec![bytes]
    } else {
        bytes.chunks(CHUNK_BYTES).collect()
    };
    // At most MAX_CHUNKS (checked above), so the count fits.
    let count = chunks.len() as u32;
    let header = Header {
        v: LAYOUT_VERSION,
        len: bytes.len() as u64,
        chunks: count,
    };
    let mut header_bytes = Vec::new();
    ciborium::into_writer(&header, &mut header_bytes)
        .map_err(|error| SaveError::Encode(error.to_string()))?;
    let mut entries = Vec::with_capacity(chunks.len() + 1);
    entries.push((state_header_key(), header_bytes));
    for (index, chunk) in (0u32..).zip(chunks) {
        entries.push((state_chunk_key(index), chunk.to_vec()));
    }
    Ok((entries, count))
}

/// Reads the encoded state and its chunk count; `None` for an actor that has never saved.
pub(crate) async fn load_state(host: &dyn Host) -> Result<Option<(Vec<u8>, u32)>, StartError> {
    let Some(header) = host
        .kv_get(vec![state_header_key()])
        .await?
        .into_iter()
        .next()
        .flatten()
    else {
        return Ok(None);
    };
    let header: Header = ciborium::from_reader(header.as_slice())
        .map_err(|error| StartError::Corrupt(format!("state header: {error}")))?;
    if header.v != LAYOUT_VERSION {
        return Err(StartError::Corrupt(format!(
            "state layout version {} is unknown",
            header.v
        )));
    }
    if header.chunks as usize > MAX_CHUNKS {
        return Err(StartError::Corrupt(format!(
            "state has {} chunks; at most {MAX_CHUNKS} are written",
            header.chunks
        )));
    }
    let keys = (0..header.chunks).map(state_chunk_key).collect();
    let values = host.kv_get(keys).await?;
    let mut bytes = Vec::new();
    for (index, value) in values.into_iter().enumerate() {
        let chunk =
            value.ok_or_else(|| StartError::Corrupt(format!("state chunk {index} is missing")))?;
        bytes.extend_from_slice(&chunk);
    }
    if bytes.len() as u64 != header.len {
        return Err(StartError::Corrupt(format!(
            "state is {} bytes; its header says {}",
            bytes.len(),
            header.len
        )));
    }
    Ok(Some((bytes, header.chunks)))
}

// === impl Saver ===

/// Writes the state when it changed: at once for an action that waits for it (see
/// [`Saver::save_through`]), else at most once per interval in the background. Saves are
/// serialized by one lock and each writes a snapshot taken under it, so an older snapshot
/// never overwrites a newer one, and callers that queued behind a save it already covers
/// return without writing (one write for many actions).
///
/// A state that cannot be saved (too large, or not encodable) is rolled back in memory to the
/// last saved one, and every change since fails: nothing that could not be kept is ever
/// reported as done.
pub(crate) struct Saver {
    /// Bumped on every change (under the state's lock); a save records the version it wrote.
    version: AtomicU64,
    meta: tokio::sync::Mutex<SaveMeta>,
    dirty: Notify,
    interval: Duration,
}

struct SaveMeta {
    saved_version: u64,
    chunks_on_disk: u32,
    last_attempt: Option<Instant>,
    /// The encoded state as last saved (or as created, before the first save): what a
    /// rollback restores.
    last_saved: Vec<u8>,
    /// Versions undone by rollbacks, newest last; an action whose change falls in one fails.
    undone: VecDeque<Undone>,
}

/// Changes after `from` up to `through` were rolled back because of `error`.
struct Undone {
    from: u64,
    through: u64,
    error: SaveError,
}

/// Rollbacks remembered; an action waits for its save right after it ran, so only the last
/// few can concern one still waiting.
const UNDONE_KEPT: usize = 16;

/// Encodes the current state.
pub(crate) type Snapshot<'a> = &'a (dyn Fn() -> Result<Vec<u8>, SaveError> + Send + Sync);

/// KV entries that go in the same put as the state (changed connection records), and what
/// to do once they are durable.
#[derive(Default)]
pub(crate) struct ExtraWrite {
    pub(crate) entries: KvEntries,
    pub(crate) written: Option<Box<dyn FnOnce() + Send>>,
}

/// Collects the [`ExtraWrite`] of one save, under the save lock.
pub(crate) type Extra<'a> = &'a (dyn Fn() -> ExtraWrite + Send + Sync);

/// Puts the given encoded state back in memory; returns the change version it stands at
/// (read under the state's lock, so no change slips between).
pub(crate) type Restore<'a> = &'a (dyn Fn(&[u8]) -> Result<u64, SaveError> + Send + Sync);

impl Saver {
    /// A saver for `encoded`, the state as loaded (`unsaved == false`) or as just created.
    pub(crate) fn new(
        interval: Duration,
        chunks_on_disk: u32,
        unsaved: bool,
        encoded: Vec<u8>,
    ) -> Self {
        Self {
            version: AtomicU64::new(u64::from(unsaved)),
            meta: tokio::sync::Mutex::new(SaveMeta {
                saved_version: 0,
                chunks_on_disk,
                last_attempt: None,
                last_saved: encoded,
                undone: VecDeque::new(),
            }),
            dirty: Notify::new(),
            interval,
        }
    }

    /// Records a change and wakes the background saver.
    pub(crate) fn mark_dirty(&self) {
        self.version.fetch_add(1, Ordering::SeqCst);
        self.dirty.notify_one();
    }

    /// The current change version.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    /// Writes the state now unless the last save already holds every change; returns once it
    /// is durable.
    pub(crate) async fn save(
        &self,
        host: &dyn Host,
        snapshot: Snapshot<'_>,
        restore: Restore<'_>,
        extra: Extra<'_>,
    ) -> Result<(), SaveError> {
        self.save_through(host, snapshot, restore, extra, self.version())
            .await
    }

    /// Returns once change version `need` is durable: at once if a save already covered it,
    /// else after writing the current state. Fails if that change was rolled back.
    pub(crate) async fn save_through(
        &self,
        host: &dyn Host,
        snapshot: Snapshot<'_>,
        restore: Restore<'_>,
        extra: Extra<'_>,
        need: u64,
    ) -> Result<(), SaveError> {
        let mut meta = self.meta.lock().await;
        if let Some(undone) = meta
            .undone
            .iter()
            .find(|u| need > u.from && need <= u.through)
        {
            return Err(undone.error.clone());
        }
        if meta.saved_version >= need {
            return Ok(());
        }
        // Read the version before the snapshot: a change racing with it bumps the version
        // again, so it is saved next time rather than marked saved without being written.
        let version = self.version.load(Ordering::SeqCst);
        meta.last_attempt = Some(Instant::now());
        let encoded = snapshot().and_then(|bytes| {
            let entries = state_entries(&bytes)?;
            Ok((bytes, entries))
        });
        let (bytes, (entries, chunks)) = match encoded {
            Ok(encoded) => encoded,
            Err(error) => {
                // This state can never be saved: go back to the last one that was, and fail
                // every change since, rather than keep a state that is lost at the next stop.
                let through = restore(&meta.last_saved)?;
                let from = meta.saved_version;
                tracing::warn!(%error, undone_changes = through - from, "state rolled back to its last save");
                if meta.undone.len() == UNDONE_KEPT {
                    meta.undone.pop_front();
                }
                meta.undone.push_back(Undone {
                    from,
                    through,
                    error: error.clone(),
                });
                meta.saved_version = through;
                return Err(error);
            }
        };
        let ExtraWrite {
            entries: more,
            written,
        } = extra();
        let mut entries = entries;
        entries.extend(more);
        host.kv_put(entries).await?;
        if let Some(written) = written {
            written();
        }
        if meta.chunks_on_disk > chunks {
            // The header already says how many chunks count; stale ones are only garbage.
            let stale = (chunks..meta.chunks_on_disk).map(state_chunk_key).collect();
            if let Err(error) = host.kv_delete(stale).await {
                tracing::debug!(%error, "deleting stale state chunks failed");
            }
        }
        meta.chunks_on_disk = chunks;
        meta.saved_version = version;
        meta.last_saved = bytes;
        Ok(())
    }

    /// The background saver: after each change, waits out the rest of the interval since the
    /// last save, then saves. A failed save is retried one interval later.
    pub(crate) async fn run(
        &self,
        host: &dyn Host,
        snapshot: Snapshot<'_>,
        restore: Restore<'_>,
        extra: Extra<'_>,
        cancel: CancellationToken,
    ) {
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                () = self.dirty.notified() => {}
            }
            let wait = {
                let meta = self.meta.lock().await;
                meta.last_attempt.map_or(Duration::ZERO, |at| {
                    self.interval.saturating_sub(at.elapsed())
                })
            };
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            match self.save(host, snapshot, restore, extra).await {
                Ok(()) => {}
                // Rolled back: nothing left to save.
                Err(SaveError::TooLarge { .. } | SaveError::Encode(_)) => {}
                Err(error) => {
                    tracing::warn!(%error, "state save failed; retrying");
                    self.dirty.notify_one();
                }
            }
        }
    }
}
