//! The actor's lease: claiming it before waking or destroying the actor, adopting an
//! instance found running after a restart, giving it back, and losing it. Each claim
//! reports its outcome as an input; a refusal is kept for `publish`, so waiting requests
//! are forwarded to the holder or told the store failed.

use rivulet_wire::envoy::{Command, CommandStopActor, StopActorReason};

use super::Supervisor;
use crate::actor::lifecycle::Input;
use crate::actor::Status;
use crate::store::LeaseClaim;
use crate::util::now_ms;

impl Supervisor {
    /// Takes the actor's lease for this node and, unless nobody ever held it before,
    /// re-reads the record, since another node may have run the actor since this
    /// supervisor last looked.
    pub(super) async fn claim_lease(&mut self) -> Input {
        let Some(node) = self.ports.node.current() else {
            // Not registered (yet, or any more): the heartbeat is registering again.
            tracing::warn!("this node holds no registration; cannot take the actor's lease");
            return self.refused(None);
        };
        let claim = self
            .ports
            .store
            .acquire_lease(&self.record.actor_id, &node, now_ms())
            .await;
        match claim {
            Ok(LeaseClaim::Acquired(lease)) => {
                tracing::debug!(epoch = lease.epoch, "took the actor's lease");
                // The first lease ever taken on this actor: no node ran it before, so the
                // record this supervisor loaded is the stored one.
                let first = lease.epoch == 1;
                self.lease = Some(lease);
                self.refusal = None;
                if !first {
                    match self.reread().await {
                        Ok(true) => {}
                        Ok(false) => {
                            self.release_lease().await;
                            return Input::RecordGone;
                        }
                        Err(()) => {
                            self.release_lease().await;
                            return self.refused(None);
                        }
                    }
                }
                let running_on = self
                    .record
                    .connectable_ts
                    .and(self.record.envoy_key.clone());
                Input::LeaseAcquired {
                    generation: self.record.generation,
                    running_on,
                }
            }
            Ok(LeaseClaim::HeldBy(lease)) => {
                tracing::debug!(owner = %lease.node_id, "another node serves the actor");
                self.refused(Some(lease))
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not take the actor's lease");
                self.refused(None)
            }
        }
    }

    /// An actor found running after a gateway restart is adopted only if this node ran it:
    /// its own lease; no lease at all (the embedded store keeps none across restarts); or an
    /// expired one whose runner is connected here. A record left running by another node
    /// that died is not ours: its runner is connected there, and the next start (a new
    /// generation) fences it off.
    pub(super) async fn claim_adoption(&mut self) -> Input {
        let previous = match self.ports.store.get_lease(&self.record.actor_id).await {
            Ok(previous) => previous,
            Err(err) => {
                tracing::warn!(error = %err, "could not read the actor's lease");
                return self.refused(None);
            }
        };
        let runner_here = self
            .record
            .envoy_key
            .as_deref()
            .is_some_and(|key| self.ports.runners.is_connected(key));
        let ours = match &previous {
            Some(lease) => {
                lease.node_id == self.ports.node.id || (runner_here && !lease.is_live(now_ms()))
            }
            None => true,
        };
        if ours {
            let outcome = self.claim_lease().await;
            if matches!(
                outcome,
                Input::LeaseAcquired {
                    running_on: None,
                    ..
                }
            ) {
                tracing::info!("not adopting: the actor stopped or moved while this node was away");
            }
            return outcome;
        }
        match previous {
            Some(lease) if lease.is_live(now_ms()) => {
                tracing::debug!(owner = %lease.node_id, "not adopting: another node serves the actor");
                self.refused(Some(lease))
            }
            _ => {
                tracing::info!("not adopting: the actor stopped or moved while this node was away");
                Input::LeaseRefused
            }
        }
    }

    /// Records a refusal for `publish`: the holder's lease, or the store's failure.
    fn refused(&mut self, holder: Option<crate::store::Lease>) -> Input {
        let attempt = match &self.refusal {
            Some(Status::Elsewhere { attempt, .. } | Status::Unavailable { attempt }) => {
                attempt + 1
            }
            _ => 1,
        };
        self.refusal = Some(match holder {
            Some(lease) => Status::Elsewhere { lease, attempt },
            None => Status::Unavailable { attempt },
        });
        Input::LeaseRefused
    }

    /// Re-reads the record of an actor this node does not run.
    pub(super) async fn reload(&mut self) -> Option<Input> {
        match self.reread().await {
            Ok(true) => Some(Input::Reloaded {
                generation: self.record.generation,
            }),
            Ok(false) => Some(Input::RecordGone),
            Err(()) => {
                self.refused(None);
                None
            }
        }
    }

    /// Replaces the record with the stored one: `Ok(false)` if it is gone or destroyed.
    async fn reread(&mut self) -> Result<bool, ()> {
        match self.ports.store.get_actor(&self.record.actor_id).await {
            Ok(Some(record)) => {
                let live = !record.is_destroyed();
                self.record = record;
                self.record_dirty = false;
                Ok(live)
            }
            Ok(None) => Ok(false),
            Err(err) => {
                tracing::warn!(error = %err, "could not re-read the actor record");
                Err(())
            }
        }
    }

    pub(super) async fn release_lease(&mut self) {
        if let Some(lease) = self.lease.take() {
            if let Err(err) = self.ports.store.release_lease(&lease).await {
                // It expires on its own; until then other nodes forward here and find the
                // actor asleep, which wakes it here again.
                tracing::warn!(error = %err, "could not release the actor's lease");
            }
        }
    }

    /// Whether the lease was taken under the registration this node holds now. A lease of
    /// an earlier incarnation (or with none held) no longer binds anyone, so another node
    /// may already run a newer instance.
    pub(super) fn lease_still_binds(&self) -> bool {
        let Some(lease) = &self.lease else {
            return false;
        };
        self.ports
            .node
            .current()
            .is_some_and(|n| n.incarnation == lease.node_incarnation)
    }

    /// Another node owns the actor: tell this node's instance to stop without waiting for
    /// it, and forget the lease without writing (the new owner's records win).
    pub(super) fn abandon(&mut self, instance: Option<(String, u32)>) {
        tracing::warn!("lost the actor's lease; another node serves it now");
        if let Some((envoy, generation)) = instance {
            let cmd = self.command(
                generation,
                Command::CommandStopActor(CommandStopActor {
                    reason: StopActorReason::GoingAway,
                }),
            );
            self.ports.runners.send_command(&envoy, cmd);
            self.ports.runners.forget_commands(&self.record.actor_id);
            self.ports
                .runners
                .unassign(&self.record.actor_id, generation);
        }
        self.lease = None;
        self.refusal = None;
    }
}
