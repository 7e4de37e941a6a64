//! Actor leases: one item per actor (`a#<id>`, `lease`) naming the node that serves it while
//! it is awake. Every change is one conditional `UpdateItem`, so two nodes racing for an actor
//! cannot both win: taking needs "no item, expired, or already mine"; renewing and releasing
//! need "same node and same epoch", and the epoch grows with every acquisition.

use aws_sdk_dynamodb::types::ReturnValue;

use super::keys::{actor_pk, LEASE_SK};
use super::table::{get_n, get_s, n, s, Cond, Item};
use super::{DynamoStore, StoreResult};
use crate::store::{Lease, LeaseClaim};

fn lease_of(actor_id: &str, it: &Item) -> StoreResult<Lease> {
    Ok(Lease {
        actor_id: actor_id.to_owned(),
        node_id: get_s(it, "node_id")?.to_owned(),
        node_url: get_s(it, "node_url")?.to_owned(),
        epoch: get_n(it, "epoch")?,
        expires_ms: get_n(it, "expires_ms")?,
    })
}

impl DynamoStore {
    pub(super) async fn acquire_lease_impl(
        &self,
        actor_id: &str,
        node_id: &str,
        node_url: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> StoreResult<LeaseClaim> {
        let res = self
            .update_if(
                &actor_pk(actor_id),
                LEASE_SK,
                "SET #node_id = :node, #node_url = :url, #expires_ms = :exp, \
                 #epoch = if_not_exists(#epoch, :zero) + :one",
                "attribute_not_exists(#pk) OR #expires_ms <= :now OR #node_id = :node",
                vec![
                    (":node", s(node_id)),
                    (":url", s(node_url)),
                    (":exp", n(now_ms.saturating_add(ttl_ms))),
                    (":now", n(now_ms)),
                    (":zero", n(0)),
                    (":one", n(1)),
                ],
                ReturnValue::AllNew,
            )
            .await?;
        match res {
            Cond::Applied(it) => Ok(LeaseClaim::Acquired(lease_of(actor_id, &it)?)),
            Cond::Failed(Some(it)) => Ok(LeaseClaim::HeldBy(lease_of(actor_id, &it)?)),
            // The condition only fails on an existing item; if it vanished meanwhile (the
            // actor's data was cleared), read again to report what is there now.
            Cond::Failed(None) => match self.get_lease_impl(actor_id).await? {
                Some(lease) => Ok(LeaseClaim::HeldBy(lease)),
                None => Err(crate::store::StoreError::Conflict {
                    what: format!("lease of actor {actor_id}"),
                }),
            },
        }
    }

    pub(super) async fn renew_lease_impl(
        &self,
        lease: &Lease,
        now_ms: i64,
        ttl_ms: i64,
    ) -> StoreResult<Option<Lease>> {
        self.set_lease_expiry(lease, now_ms.saturating_add(ttl_ms))
            .await
    }

    pub(super) async fn release_lease_impl(&self, lease: &Lease) -> StoreResult<bool> {
        Ok(self.set_lease_expiry(lease, 0).await?.is_some())
    }

    /// Moves the expiry of a lease the caller holds; `None` if it does not hold it.
    async fn set_lease_expiry(&self, lease: &Lease, expires_ms: i64) -> StoreResult<Option<Lease>> {
        let res = self
            .update_if(
                &actor_pk(&lease.actor_id),
                LEASE_SK,
                "SET #expires_ms = :exp",
                "#node_id = :node AND #epoch = :epoch",
                vec![
                    (":node", s(&lease.node_id)),
                    (":epoch", n(lease.epoch)),
                    (":exp", n(expires_ms)),
                ],
                ReturnValue::AllNew,
            )
            .await?;
        match res {
            Cond::Applied(it) => Ok(Some(lease_of(&lease.actor_id, &it)?)),
            Cond::Failed(_) => Ok(None),
        }
    }

    pub(super) async fn get_lease_impl(&self, actor_id: &str) -> StoreResult<Option<Lease>> {
        match self.get(&actor_pk(actor_id), LEASE_SK).await? {
            Some(it) => Ok(Some(lease_of(actor_id, &it)?)),
            None => Ok(None),
        }
    }
}
