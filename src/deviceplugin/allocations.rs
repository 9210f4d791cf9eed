//! Pods' allocations: recorded in the node (which mints their tokens) and
//! persisted in the state dir, so that tokens survive a daemon restart.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use super::allocate::{self, ContainerSetup, Plan, PlanError, SlotSetup};
use super::devices::{Layout, Resource};
use super::store::{self, Record, Store, VramRecord};
use crate::engine::{AllocKind, GpuId};
use crate::node::{self, Node};

/// What Allocate hands containers besides the token.
#[derive(Debug, Clone)]
pub(crate) struct Mounts {
    pub(crate) domain: String,
    /// `<state>/pods` on the host: mounted into containers.
    pub(crate) host_pods_dir: PathBuf,
    pub(crate) container_socket_dir: PathBuf,
    pub(crate) cdi: bool,
    /// What slot containers get: the runtime's endpoint, GPU visibility.
    pub(crate) slot: SlotSetup,
}

/// Why an Allocate was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AllocateError {
    /// The device IDs make no allocation (kubelet sent something odd).
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("cannot record the allocation: {0}")]
    Record(#[source] node::AllocateError),
    #[error("cannot persist the allocation, refused: {0}")]
    Persist(#[source] store::Error),
}

/// The allocations both plugins make, recorded and persisted.
pub(crate) struct Allocations {
    node: Arc<Node>,
    layout: Layout,
    mounts: Mounts,
    store: Store,
    /// The persisted allocations; the lock also serialises writes of the file.
    records: Mutex<Vec<Record>>,
}

impl Allocations {
    pub(crate) fn new(
        node: Arc<Node>,
        layout: Layout,
        mounts: Mounts,
        store: Store,
    ) -> Allocations {
        Allocations {
            node,
            layout,
            mounts,
            store,
            records: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    pub(crate) fn domain(&self) -> &str {
        &self.mounts.domain
    }

    pub(crate) fn node(&self) -> &Arc<Node> {
        &self.node
    }

    pub(crate) fn records(&self) -> Vec<Record> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Restores saved allocations into the node (a daemon restart keeps
    /// running pods' tokens valid). Records whose GPU is gone are dropped.
    pub(crate) fn restore(&self, saved: Vec<Record>) -> usize {
        let mut kept = Vec::new();
        for rec in saved {
            let kind = match (&rec.resource, &rec.vram) {
                (Resource::Slot, _) => Some(AllocKind::Slots(rec.device_ids.len() as u32)),
                (Resource::Vram, Some(v)) => self
                    .layout
                    .gpus
                    .iter()
                    .position(|g| g.uuid == v.gpu_uuid)
                    .map(|gpu| AllocKind::Vram {
                        gpu: GpuId(gpu as u32),
                        mib: v.mib,
                    }),
                (Resource::Vram, None) => None,
            };
            let restored =
                kind.is_some_and(|kind| self.node.restore_allocation(&rec.key, kind).is_ok());
            if restored {
                kept.push(rec);
            } else {
                tracing::warn!(resource = %rec.resource, devices = ?rec.device_ids,
                    "saved allocation no longer matches this node's GPUs; dropped");
            }
        }
        let n = kept.len();
        *self.records.lock().unwrap_or_else(PoisonError::into_inner) = kept;
        n
    }

    /// Forgets the allocations behind `keys` (pods gone): the file is
    /// rewritten first (if that fails nothing changes and the next round
    /// retries), then the node revokes their leases and returns their memory.
    pub(crate) fn release(&self, keys: &[String]) -> Result<(), store::Error> {
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let remaining: Vec<Record> = records
            .iter()
            .filter(|r| !keys.contains(&r.key))
            .cloned()
            .collect();
        self.store.save(&remaining)?;
        *records = remaining;
        for key in keys {
            let _ = self.node.deallocate(key);
        }
        Ok(())
    }

    /// Allocates for every container of one request, all or nothing, and
    /// persists it before answering: a token kubelet hands to a container
    /// must survive a restart.
    pub(crate) fn allocate(
        &self,
        resource: Resource,
        containers: &[Vec<String>],
    ) -> Result<Vec<ContainerSetup>, AllocateError> {
        let plans = containers
            .iter()
            .map(|ids| Ok((ids, allocate::plan(&self.layout, resource, ids)?)))
            .collect::<Result<Vec<_>, PlanError>>()?;
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let mut added = Vec::new();
        let mut setups = Vec::new();
        for (ids, plan) in &plans {
            let kind = match plan {
                Plan::Slots(n) => AllocKind::Slots(*n),
                Plan::Vram { gpu, mib } => AllocKind::Vram {
                    gpu: GpuId(*gpu as u32),
                    mib: *mib,
                },
            };
            let token = match self.node.allocate(kind) {
                Ok(token) => token,
                Err(e) => {
                    self.undo(&added);
                    return Err(AllocateError::Record(e));
                }
            };
            let key = node::token::key(&token);
            records.push(Record {
                key: key.clone(),
                token: None,
                resource,
                device_ids: (*ids).clone(),
                vram: match plan {
                    Plan::Vram { gpu, mib } => Some(VramRecord {
                        gpu_uuid: self.layout.gpus[*gpu].uuid.clone(),
                        mib: *mib,
                    }),
                    Plan::Slots(_) => None,
                },
                allocated_at_ms: SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
            });
            setups.push(allocate::setup(
                &self.layout,
                plan,
                &token,
                &self.mounts.host_pods_dir,
                &self.mounts.container_socket_dir,
                self.mounts.cdi,
                &self.mounts.slot,
            ));
            added.push(key);
        }
        if let Err(e) = self.store.save(&records) {
            records.retain(|r| !added.contains(&r.key));
            self.undo(&added);
            return Err(AllocateError::Persist(e));
        }
        for (_, plan) in &plans {
            tracing::info!(resource = %resource, ?plan, "allocated");
        }
        Ok(setups)
    }

    fn undo(&self, keys: &[String]) {
        for t in keys {
            let _ = self.node.deallocate(t);
        }
    }
}
