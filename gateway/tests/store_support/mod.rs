//! Record builders shared by the store test binaries (`store_embedded`, `store_dynamo`).
#![allow(dead_code)]

pub mod hanging;

use rivulet_gateway::store::conformance::marker_page;
use rivulet_gateway::store::{ActorRecord, CrashPolicy, SqliteCommit};

pub fn actor(id: &str, key: Option<&str>) -> ActorRecord {
    ActorRecord {
        actor_id: id.to_owned(),
        namespace_id: "ns".to_owned(),
        name: "counter".to_owned(),
        key: key.map(str::to_owned),
        runner_name_selector: "default".to_owned(),
        crash_policy: CrashPolicy::Restart,
        input: None,
        create_ts: 1,
        start_ts: None,
        pending_allocation_ts: None,
        connectable_ts: None,
        sleep_ts: None,
        reschedule_ts: None,
        destroy_ts: None,
        error: None,
        generation: 1,
        envoy_key: None,
        envoy_instance: None,
        alarm_ts: None,
        revision: 0,
    }
}

pub fn commit(actor_id: &str, head: u64, pages: Vec<(u32, Vec<u8>)>, size: u32) -> SqliteCommit {
    SqliteCommit {
        actor_id: actor_id.to_owned(),
        generation: 1,
        expected_head: head,
        pages,
        db_size_pages: size,
        now_ms: 0,
    }
}

pub fn marked(pgnos: impl IntoIterator<Item = u32>, txid: u64) -> Vec<(u32, Vec<u8>)> {
    pgnos.into_iter().map(|p| (p, marker_page(txid))).collect()
}
