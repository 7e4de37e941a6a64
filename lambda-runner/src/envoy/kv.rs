//! The KV API's own types, and the mapping between them and the wire's request and
//! response unions.

use bytes::Bytes;
use rivulet_wire::envoy::{
    KvDeleteRangeRequest, KvDeleteRequest, KvGetRequest, KvListPrefixQuery, KvListQuery,
    KvListRangeQuery, KvListRequest, KvPutRequest, KvRequestData, KvResponseData,
};

use super::error::EnvoyError;

/// One stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    /// The key.
    pub key: Bytes,
    /// Its value.
    pub value: Bytes,
    /// Opaque version the gateway stores with it.
    pub version: Bytes,
    /// When it was last written, ms since the epoch.
    pub update_ts: i64,
}

/// Which keys a list returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListQuery {
    /// Every key of the actor.
    All,
    /// Keys from `start` to `end` (`end` excluded if `exclusive`).
    Range {
        /// First key.
        start: Bytes,
        /// Last key.
        end: Bytes,
        /// Leave `end` out.
        exclusive: bool,
    },
    /// Keys starting with the prefix.
    Prefix(Bytes),
}

pub(crate) fn get(keys: Vec<Bytes>) -> KvRequestData {
    KvRequestData::KvGetRequest(KvGetRequest { keys })
}

pub(crate) fn list(query: ListQuery, reverse: bool, limit: Option<u64>) -> KvRequestData {
    let query = match query {
        ListQuery::All => KvListQuery::KvListAllQuery,
        ListQuery::Range {
            start,
            end,
            exclusive,
        } => KvListQuery::KvListRangeQuery(KvListRangeQuery {
            start,
            end,
            exclusive,
        }),
        ListQuery::Prefix(key) => KvListQuery::KvListPrefixQuery(KvListPrefixQuery { key }),
    };
    KvRequestData::KvListRequest(KvListRequest {
        query,
        reverse: Some(reverse),
        limit,
    })
}

pub(crate) fn put(entries: Vec<(Bytes, Bytes)>) -> KvRequestData {
    let (keys, values) = entries.into_iter().unzip();
    KvRequestData::KvPutRequest(KvPutRequest { keys, values })
}

pub(crate) fn delete(keys: Vec<Bytes>) -> KvRequestData {
    KvRequestData::KvDeleteRequest(KvDeleteRequest { keys })
}

pub(crate) fn delete_range(start: Bytes, end: Bytes) -> KvRequestData {
    KvRequestData::KvDeleteRangeRequest(KvDeleteRangeRequest { start, end })
}

/// The entries of a get or list answer.
pub(crate) fn entries(data: KvResponseData) -> Result<Vec<KvEntry>, EnvoyError> {
    let (keys, values, metadata) = match data {
        KvResponseData::KvGetResponse(r) => (r.keys, r.values, r.metadata),
        KvResponseData::KvListResponse(r) => (r.keys, r.values, r.metadata),
        other => return Err(unexpected(&other)),
    };
    if keys.len() != values.len() || keys.len() != metadata.len() {
        return Err(EnvoyError::Protocol(
            "kv answer lists keys, values and metadata of different lengths".into(),
        ));
    }
    Ok(keys
        .into_iter()
        .zip(values)
        .zip(metadata)
        .map(|((key, value), meta)| KvEntry {
            key,
            value,
            version: meta.version,
            update_ts: meta.update_ts,
        })
        .collect())
}

/// Checks that a write was answered with its own acknowledgement.
pub(crate) fn done(data: KvResponseData, expected: Expect) -> Result<(), EnvoyError> {
    match (&data, expected) {
        (KvResponseData::KvPutResponse, Expect::Put)
        | (KvResponseData::KvDeleteResponse, Expect::Delete)
        | (KvResponseData::KvDropResponse, Expect::Drop) => Ok(()),
        _ => Err(unexpected(&data)),
    }
}

/// Which acknowledgement a write expects.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Expect {
    Put,
    Delete,
    Drop,
}

fn unexpected(data: &KvResponseData) -> EnvoyError {
    let name = match data {
        KvResponseData::KvErrorResponse(_) => "error",
        KvResponseData::KvGetResponse(_) => "get",
        KvResponseData::KvListResponse(_) => "list",
        KvResponseData::KvPutResponse => "put",
        KvResponseData::KvDeleteResponse => "delete",
        KvResponseData::KvDropResponse => "drop",
    };
    EnvoyError::Protocol(format!("unexpected kv answer: {name}"))
}
