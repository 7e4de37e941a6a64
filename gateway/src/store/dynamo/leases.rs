//! Node registrations and actor leases.
//!
//! A node item (`n#<node id>`, `node`) holds the node's URL, an incarnation that grows with
//! every registration, and a heartbeat expiry the node renews. An actor lease item
//! (`a#<id>`, `lease`) names the holding node and the incarnation it held then, and whether it
//! was released; it is never renewed. A lease binds other nodes while it is not released and
//! its node item still has that incarnation and a heartbeat in the future. So keeping every
//! awake actor owned costs one write per node per renewal, not one per actor.
//!
//! Every change is conditional, so two nodes racing for an actor cannot both win:
//! - taking a free, released or own lease is one `UpdateItem` ("no item, released, or my node
//!   id"), which is what almost every wake does;
//! - taking over the lease of a dead node is one `TransactWriteItems`: a `ConditionCheck` that
//!   the holder's node item is expired or of another incarnation, and the lease update
//!   conditioned on the lease being unchanged since it was read;
//! - releasing needs "same node and same epoch"; the epoch grows with every acquisition.

use aws_sdk_dynamodb::types::ReturnValue;

use super::keys::{actor_pk, node_pk, LEASE_SK, NODE_SK};
use super::table::{self, get_n, get_s, key, n, s, Cond, Item};
use super::{DynamoStore, StoreResult};
use crate::store::{Lease, LeaseClaim, NodeLease, StoreError};

/// Attempts of the read-then-take-over loop before reporting a conflict.
const TAKEOVER_ATTEMPTS: usize = 3;

fn node_of(it: &Item) -> StoreResult<NodeLease> {
    Ok(NodeLease {
        node_id: get_s(it, "node_id")?.to_owned(),
        node_url: get_s(it, "node_url")?.to_owned(),
        incarnation: get_n(it, "incarnation")?,
        expires_ms: get_n(it, "expires_ms")?,
    })
}

/// A lease item as callers see it, its expiry from the holder's registration.
fn lease_of(actor_id: &str, it: &Item, holder: Option<&NodeLease>) -> StoreResult<Lease> {
    // An item without `node_inc` was written by a gateway that renewed leases one by one;
    // it binds nobody (all nodes of a table are upgraded together).
    let node_incarnation: u64 = if it.contains_key("node_inc") {
        get_n(it, "node_inc")?
    } else {
        0
    };
    let released = node_incarnation == 0
        || matches!(it.get("released"), Some(v) if v.as_bool().is_ok_and(|b| *b));
    let expires_ms = match holder {
        Some(h) if !released && h.incarnation == node_incarnation => h.expires_ms,
        Some(_) | None => 0,
    };
    Ok(Lease {
        actor_id: actor_id.to_owned(),
        node_id: get_s(it, "node_id")?.to_owned(),
        node_url: get_s(it, "node_url")?.to_owned(),
        epoch: get_n(it, "epoch")?,
        node_incarnation,
        expires_ms,
    })
}

impl DynamoStore {
    pub(super) async fn register_node_impl(
        &self,
        node_id: &str,
        node_url: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> StoreResult<NodeLease> {
        let res = self
            .update_if(
                &node_pk(node_id),
                NODE_SK,
                "SET #node_id = :node, #node_url = :url, #expires_ms = :exp, \
                 #incarnation = if_not_exists(#incarnation, :zero) + :one",
                "",
                vec![
                    (":node", s(node_id)),
                    (":url", s(node_url)),
                    (":exp", n(now_ms.saturating_add(ttl_ms))),
                    (":zero", n(0)),
                    (":one", n(1)),
                ],
                ReturnValue::AllNew,
            )
            .await?;
        match res {
            Cond::Applied(it) => node_of(&it),
            Cond::Failed(_) => Err(StoreError::Conflict {
                what: format!("registration of node {node_id}"),
            }),
        }
    }

    pub(super) async fn renew_node_impl(
        &self,
        node: &NodeLease,
        now_ms: i64,
        ttl_ms: i64,
    ) -> StoreResult<Option<NodeLease>> {
        let res = self
            .update_if(
                &node_pk(&node.node_id),
                NODE_SK,
                "SET #expires_ms = :exp",
                "#incarnation = :inc",
                vec![
                    (":inc", n(node.incarnation)),
                    (":exp", n(now_ms.saturating_add(ttl_ms))),
                ],
                ReturnValue::AllNew,
            )
            .await?;
        match res {
            Cond::Applied(it) => Ok(Some(node_of(&it)?)),
            Cond::Failed(_) => Ok(None),
        }
    }

    pub(super) async fn get_node_impl(&self, node_id: &str) -> StoreResult<Option<NodeLease>> {
        match self.get(&node_pk(node_id), NODE_SK).await? {
            Some(it) => Ok(Some(node_of(&it)?)),
            None => Ok(None),
        }
    }

    pub(super) async fn acquire_lease_impl(
        &self,
        actor_id: &str,
        node: &NodeLease,
        now_ms: i64,
    ) -> StoreResult<LeaseClaim> {
        let set = "SET #node_id = :node, #node_url = :url, #node_inc = :inc, #released = :no, \
                   #epoch = if_not_exists(#epoch, :zero) + :one";
        let vals = || {
            vec![
                (":node", s(&node.node_id)),
                (":url", s(&node.node_url)),
                (":inc", n(node.incarnation)),
                (":no", aws_sdk_dynamodb::types::AttributeValue::Bool(false)),
                (":zero", n(0)),
                (":one", n(1)),
            ]
        };
        for _ in 0..TAKEOVER_ATTEMPTS {
            let mut free = vals();
            free.push((":yes", aws_sdk_dynamodb::types::AttributeValue::Bool(true)));
            let res = self
                .update_if(
                    &actor_pk(actor_id),
                    LEASE_SK,
                    set,
                    "attribute_not_exists(#pk) OR attribute_not_exists(#node_inc) \
                     OR #released = :yes OR #node_id = :node",
                    free,
                    ReturnValue::AllNew,
                )
                .await?;
            let held = match res {
                Cond::Applied(it) => {
                    return Ok(LeaseClaim::Acquired(lease_of(actor_id, &it, Some(node))?))
                }
                Cond::Failed(Some(it)) => it,
                // Failed on an item that vanished meanwhile: try again.
                Cond::Failed(None) => continue,
            };
            // Held by another node: it binds us only while that node is alive.
            let holder_id = get_s(&held, "node_id")?.to_owned();
            let holder_inc = lease_of(actor_id, &held, None)?.node_incarnation;
            let epoch: u64 = get_n(&held, "epoch")?;
            let holder = self.get_node_impl(&holder_id).await?;
            let lease = lease_of(actor_id, &held, holder.as_ref())?;
            if lease.is_live(now_ms) {
                return Ok(LeaseClaim::HeldBy(lease));
            }
            let mut takeover = vals();
            takeover.extend([
                (":holder", s(&holder_id)),
                (":hinc", n(holder_inc)),
                (":epoch", n(epoch)),
            ]);
            let actions = vec![
                table::tx_check(
                    &self.table,
                    key(node_pk(&holder_id), NODE_SK),
                    "attribute_not_exists(#pk) OR #incarnation <> :hinc OR #expires_ms <= :now",
                    vec![(":hinc", n(holder_inc)), (":now", n(now_ms))],
                )?,
                table::tx_update(
                    &self.table,
                    key(actor_pk(actor_id), LEASE_SK),
                    set,
                    "#node_id = :holder AND #node_inc = :hinc AND #epoch = :epoch",
                    takeover,
                )?,
            ];
            match table::transact(&self.client, "take over lease", actions).await? {
                Ok(()) => {
                    let lease = Lease {
                        actor_id: actor_id.to_owned(),
                        node_id: node.node_id.clone(),
                        node_url: node.node_url.clone(),
                        epoch: epoch + 1,
                        node_incarnation: node.incarnation,
                        expires_ms: node.expires_ms,
                    };
                    return Ok(LeaseClaim::Acquired(lease));
                }
                // The holder renewed, or someone else took the lease first: look again.
                Err(_) => continue,
            }
        }
        Err(StoreError::Conflict {
            what: format!("lease of actor {actor_id}"),
        })
    }

    pub(super) async fn release_lease_impl(&self, lease: &Lease) -> StoreResult<bool> {
        let res = self
            .update_if(
                &actor_pk(&lease.actor_id),
                LEASE_SK,
                "SET #released = :yes",
                "#node_id = :node AND #epoch = :epoch",
                vec![
                    (":node", s(&lease.node_id)),
                    (":epoch", n(lease.epoch)),
                    (":yes", aws_sdk_dynamodb::types::AttributeValue::Bool(true)),
                ],
                ReturnValue::None,
            )
            .await?;
        Ok(matches!(res, Cond::Applied(_)))
    }

    pub(super) async fn get_lease_impl(&self, actor_id: &str) -> StoreResult<Option<Lease>> {
        let Some(it) = self.get(&actor_pk(actor_id), LEASE_SK).await? else {
            return Ok(None);
        };
        let holder = self.get_node_impl(get_s(&it, "node_id")?).await?;
        Ok(Some(lease_of(actor_id, &it, holder.as_ref())?))
    }
}
