//! How every record maps onto the table's two string keys, `pk` and `sk` (docs/DYNAMODB.md
//! has the whole map). Partition keys are only ever compared for equality, so their components
//! are percent-escaped to keep `#` a safe separator; sort keys carry order (names, times, ids,
//! KV keys, page numbers, versions) and use encodings whose byte order is the order we list in.

use std::fmt::Write;

/// Partition of all namespaces (few, listed by name).
pub(super) const NAMESPACES_PK: &str = "ns";
/// Sort key of an actor's record item.
pub(super) const REC_SK: &str = "rec";
/// Sort key of an actor's state item (generation mirror, SQLite head, KV intent).
pub(super) const STATE_SK: &str = "st";
/// Sort key of an actor's lease item (which node serves it while awake).
pub(super) const LEASE_SK: &str = "lease";
/// Sort key of a node's registration, under `node_pk`.
pub(super) const NODE_SK: &str = "node";
/// Sort key of a key-reservation item.
pub(super) const KEY_SK: &str = "key";
/// Alarm index shards; `due_alarms` queries each. Changing it needs a migration.
pub(super) const ALARM_SHARDS: u32 = 8;
/// KV keys up to this many bytes are stored whole in the sort key; longer ones keep this
/// prefix plus a hash (the sort key limit is 1024 bytes).
pub(super) const KV_SHORT_KEY_BYTES: usize = 480;

/// Escapes a partition-key component: everything outside `[A-Za-z0-9._:-]` becomes `%XX`,
/// so `#` never appears inside a component.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-') {
            out.push(b as char);
        } else {
            // Writing into a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Lowercase hex; its byte order equals the byte order of the input.
pub(super) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A timestamp as 16 hex digits whose order is numeric order, negatives included.
pub(super) fn ts_hex(ts: i64) -> String {
    format!("{:016x}", (ts as u64) ^ (1 << 63))
}

/// FNV-1a, 128 bits: a stable hash for over-long key components. Not cryptographic; a
/// collision could only be built by whoever chooses the keys, and only hurts their own actor.
pub(super) fn fnv128(parts: &[&[u8]]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut h = OFFSET;
    for part in parts {
        // Length first, so ("ab", "c") and ("a", "bc") differ.
        for b in (part.len() as u64).to_be_bytes().iter().chain(part.iter()) {
            h ^= u128::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    }
    h
}

// === namespaces, runner configs, actor names ===

pub(super) fn namespace_sk(name: &str) -> String {
    format!("n#{name}")
}

/// Partition holding a namespace's runner configs and actor names.
pub(super) fn namespace_data_pk(namespace_id: &str) -> String {
    format!("nsd#{}", esc(namespace_id))
}

pub(super) const RUNNER_CONFIG_PREFIX: &str = "rc#";
pub(super) const ACTOR_NAME_PREFIX: &str = "an#";

// === actors ===

/// Partition of one gateway node's registration (`n#<node id>`).
pub(super) fn node_pk(node_id: &str) -> String {
    format!("n#{}", esc(node_id))
}

pub(super) fn actor_pk(actor_id: &str) -> String {
    format!("a#{}", esc(actor_id))
}

/// Sort key of chunk `i` of an input blob.
pub(super) fn blob_sk(blob: &str, i: usize) -> String {
    format!("in#{blob}#{i:04x}")
}

pub(super) fn blob_prefix(blob: &str) -> String {
    format!("in#{blob}#")
}

/// Partition of a key reservation; hashed when the escaped form would be too long.
pub(super) fn actor_key_pk(namespace_id: &str, name: &str, key: &str) -> String {
    let plain = format!("key#{}#{}#{}", esc(namespace_id), esc(name), esc(key));
    if plain.len() <= 1024 {
        plain
    } else {
        let h = fnv128(&[namespace_id.as_bytes(), name.as_bytes(), key.as_bytes()]);
        format!("keyh#{h:032x}")
    }
}

/// Index of a namespace's actors, by create time then id.
pub(super) fn by_namespace_pk(namespace_id: &str) -> String {
    format!("ans#{}", esc(namespace_id))
}

/// Index of a namespace's actors of one name, by create time then id.
pub(super) fn by_name_pk(namespace_id: &str, name: &str) -> String {
    format!("ann#{}#{}", esc(namespace_id), esc(name))
}

/// Sort key ordering by time, then by the id's bytes.
pub(super) fn time_id_sk(ts: i64, actor_id: &str) -> String {
    format!("{}#{}", ts_hex(ts), hex(actor_id.as_bytes()))
}

/// Shard of an actor's alarm entry.
pub(super) fn alarm_pk(actor_id: &str) -> String {
    let shard = (fnv128(&[actor_id.as_bytes()]) % u128::from(ALARM_SHARDS)) as u32;
    alarm_shard_pk(shard)
}

pub(super) fn alarm_shard_pk(shard: u32) -> String {
    format!("al#{shard}")
}

/// Upper bound (exclusive) of the alarm sort keys due at or before `now_ms`: `#` sorts below
/// `$`, so every `ts_hex(t)#…` with `t <= now_ms` is below it.
pub(super) fn alarm_due_below(now_ms: i64) -> String {
    format!("{}$", ts_hex(now_ms))
}

// === KV ===

pub(super) const KV_PREFIX: &str = "kv#";

/// Sort key of a KV entry. Short keys: `kv#` + hex(key) + `!`; `!` sorts below every hex
/// digit, so a key sorts before its extensions. Longer keys: `kv#` + hex(first 480 bytes) +
/// `~` + hash, so all long keys sharing those 480 bytes form one contiguous group, placed
/// exactly where their keys belong; only inside a group must readers sort by the full key.
pub(super) fn kv_sk(key: &[u8]) -> String {
    if key.len() <= KV_SHORT_KEY_BYTES {
        format!("{KV_PREFIX}{}!", hex(key))
    } else {
        let prefix = key.get(..KV_SHORT_KEY_BYTES).unwrap_or(key);
        format!("{KV_PREFIX}{}~{:032x}", hex(prefix), fnv128(&[key]))
    }
}

/// The long-key group a sort key belongs to (everything up to and including `~`), if any.
pub(super) fn kv_group(sk: &str) -> Option<&str> {
    let at = KV_PREFIX.len() + 2 * KV_SHORT_KEY_BYTES;
    match sk.as_bytes().get(at) {
        Some(b'~') => sk.get(..=at),
        Some(_) | None => None,
    }
}

/// Smallest sort key any key `>= start` can have.
pub(super) fn kv_lower(start: &[u8]) -> String {
    if start.len() <= KV_SHORT_KEY_BYTES {
        kv_sk(start)
    } else {
        let prefix = start.get(..KV_SHORT_KEY_BYTES).unwrap_or(start);
        format!("{KV_PREFIX}{}~", hex(prefix))
    }
}

/// Largest sort key any key `<= end` can have.
pub(super) fn kv_upper(end: &[u8]) -> String {
    if end.len() <= KV_SHORT_KEY_BYTES {
        kv_sk(end)
    } else {
        let prefix = end.get(..KV_SHORT_KEY_BYTES).unwrap_or(end);
        format!("{KV_PREFIX}{}~~", hex(prefix))
    }
}

/// Sort-key prefix every key starting with `prefix` has.
pub(super) fn kv_prefix(prefix: &[u8]) -> String {
    if prefix.len() <= KV_SHORT_KEY_BYTES {
        format!("{KV_PREFIX}{}", hex(prefix))
    } else {
        kv_lower(prefix)
    }
}

/// Sort key of chunk `i` of a KV intent's body.
pub(super) fn intent_sk(id: &str, i: usize) -> String {
    format!("kvi#{id}#{i:04x}")
}

pub(super) fn intent_prefix(id: &str) -> String {
    format!("kvi#{id}#")
}

// === SQLite ===

pub(super) const PAGE_PREFIX: &str = "pg#";
pub(super) const PAGE_LIST_PREFIX: &str = "pl#";

/// Sort key of version `vid` of page `pgno`: versions of one page are adjacent, oldest first.
pub(super) fn page_sk(pgno: u32, vid: u64) -> String {
    format!("{PAGE_PREFIX}{pgno:08x}#{vid:016x}")
}

/// First sort key of page `pgno`'s versions.
pub(super) fn page_lower(pgno: u32) -> String {
    format!("{PAGE_PREFIX}{pgno:08x}#")
}

/// Last sort key of page `pgno`'s versions.
pub(super) fn page_upper(pgno: u32) -> String {
    format!("{PAGE_PREFIX}{pgno:08x}#~")
}

/// (pgno, vid) of a page sort key.
pub(super) fn parse_page_sk(sk: &str) -> Option<(u32, u64)> {
    let rest = sk.strip_prefix(PAGE_PREFIX)?;
    let (pgno, vid) = rest.split_once('#')?;
    Some((
        u32::from_str_radix(pgno, 16).ok()?,
        u64::from_str_radix(vid, 16).ok()?,
    ))
}

/// Sort key of the `i`th page list written under version `vid`.
pub(super) fn page_list_sk(vid: u64, i: u32) -> String {
    format!("{PAGE_LIST_PREFIX}{vid:016x}#{i:08x}")
}

/// First page-list sort key of version `vid`.
pub(super) fn page_list_lower(vid: u64) -> String {
    format!("{PAGE_LIST_PREFIX}{vid:016x}#")
}

/// The version of a page-list sort key.
pub(super) fn parse_page_list_sk(sk: &str) -> Option<u64> {
    let rest = sk.strip_prefix(PAGE_LIST_PREFIX)?;
    let (vid, _) = rest.split_once('#')?;
    u64::from_str_radix(vid, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_sort_keys_follow_key_order() {
        let long = |fill: u8, tail: &[u8]| {
            let mut k = vec![fill; KV_SHORT_KEY_BYTES];
            k.extend_from_slice(tail);
            k
        };
        let ordered: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0xff],
            vec![1],
            vec![1; KV_SHORT_KEY_BYTES - 1],
            vec![1; KV_SHORT_KEY_BYTES],
            long(1, &[0]),
            vec![1, 2],
            long(2, &[5]),
            vec![0xff],
            vec![0xff, 0xff],
        ];
        for w in ordered.windows(2) {
            let (a, b) = (kv_sk(&w[0]), kv_sk(&w[1]));
            assert!(
                a < b,
                "{:?} < {:?}",
                &w[0][..w[0].len().min(4)],
                &w[1][..w[1].len().min(4)]
            );
        }
        for k in &ordered {
            assert!(kv_sk(k).len() <= 1024);
            assert!(kv_lower(k) <= kv_sk(k) && kv_sk(k) <= kv_upper(k));
        }
        let a = long(3, &[1]);
        let b = long(3, &[2]);
        assert_ne!(kv_sk(&a), kv_sk(&b));
        assert_eq!(kv_group(&kv_sk(&a)), kv_group(&kv_sk(&b)));
        assert!(kv_group(&kv_sk(&a)).is_some());
        assert_eq!(kv_group(&kv_sk(&[3; 10])), None);
        assert!(kv_sk(&a).starts_with(&kv_prefix(&[3, 3])));
        assert!(kv_sk(&a).starts_with(&kv_prefix(&a[..KV_SHORT_KEY_BYTES + 1])));
    }

    #[test]
    fn times_and_pages_sort_numerically() {
        let ts = [i64::MIN, -5, -1, 0, 1, 5, i64::MAX];
        for w in ts.windows(2) {
            assert!(ts_hex(w[0]) < ts_hex(w[1]));
            assert!(alarm_due_below(w[0]) < time_id_sk(w[1], ""));
            assert!(time_id_sk(w[0], "zzz") < alarm_due_below(w[0]));
        }
        assert!(page_sk(1, u64::MAX) < page_sk(2, 0));
        assert!(page_lower(7) < page_sk(7, 0) && page_sk(7, u64::MAX) < page_upper(7));
        assert_eq!(parse_page_sk(&page_sk(9, 77)), Some((9, 77)));
        assert_eq!(parse_page_list_sk(&page_list_sk(5, 3)), Some(5));
        assert!(page_list_lower(5) < page_list_sk(5, 0));
    }

    #[test]
    fn escaped_components_never_contain_separators() {
        assert_eq!(esc("a-b_c.d:e"), "a-b_c.d:e");
        assert_eq!(esc("a#b%c\0"), "a%23b%25c%00");
        assert_ne!(actor_pk("a"), actor_pk("a\0"));
        assert_ne!(actor_key_pk("n", "a#b", "c"), actor_key_pk("n", "a", "b#c"));
        assert!(actor_key_pk("n", "x", &"k".repeat(5000)).starts_with("keyh#"));
    }
}
