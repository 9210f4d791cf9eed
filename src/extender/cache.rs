//! The node cache of `nodeCacheCapable: true`: every Node's parsed view,
//! kept current by a metadata-only watch.
//!
//! # How stale it may be
//! A view is replaced by the watch event of the annotation write that
//! changed it, normally well under a second after the daemon wrote it.
//! When the watch breaks, kube-rs resumes it or re-lists with backoff
//! (0.8 s doubling to 30 s) while the old views stay in place, and a re-list
//! replaces the whole map at once when it is complete. Either way every view
//! carries the daemon's own stamp, and the scorer counts a view stamped more
//! than `--max-age` ago as unknown: no score rests on state older than that
//! (plus the clock skew between nodes and the extender), however long the
//! watch is down. Until the first list completes, `/readyz` says so and
//! names not yet seen score as unknown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio_stream::StreamExt;

use super::view::NodeView;

/// Node name → view.
pub type Views = HashMap<Box<str>, NodeView>;

/// The cache. Requests hold the read lock for one pass over their node
/// names (never across an `.await`); the watch takes the write lock for one
/// insert, removal or swap.
#[derive(Debug, Default)]
pub struct NodeCache {
    nodes: RwLock<Views>,
    synced: AtomicBool,
    events: AtomicU64,
    errors: AtomicU64,
}

impl NodeCache {
    pub fn new() -> NodeCache {
        NodeCache::default()
    }

    /// The views, for one request's pass.
    pub fn read(&self) -> RwLockReadGuard<'_, Views> {
        self.nodes.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn insert(&self, name: &str, view: NodeView) {
        self.write().insert(name.into(), view);
    }

    pub fn remove(&self, name: &str) {
        self.write().remove(name);
    }

    /// Replaces every view at once (a completed list) and marks the cache
    /// synced.
    pub fn replace(&self, views: Views) {
        *self.write() = views;
        self.synced.store(true, Ordering::Release);
    }

    /// Whether a complete list has been seen.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Watch events handled.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Watch errors (each followed by a backoff and a retry).
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Views> {
        self.nodes.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Keeps `cache` current from a metadata-only watch of all Nodes until the
/// task is dropped; `parse` turns a Node's metadata into its view. Errors
/// are logged (the first of a streak at warn) and retried with kube-rs's
/// default backoff; this never returns on its own.
pub async fn watch(
    client: kube::Client,
    cache: std::sync::Arc<NodeCache>,
    parse: impl Fn(&PartialObjectMeta<Node>) -> NodeView,
) {
    // `Api<PartialObjectMeta<_>>` makes list and watch ask for
    // PartialObjectMetadata: names, labels and annotations, no status.
    let api: Api<PartialObjectMeta<Node>> = Api::all(client);
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    tokio::pin!(stream);
    // The views of a re-list in progress, swapped in whole at InitDone.
    let mut listing: Option<Views> = None;
    let mut failing = false;
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                cache.errors.fetch_add(1, Ordering::Relaxed);
                if failing {
                    tracing::debug!(error = %e, "node watch failed again");
                } else {
                    tracing::warn!(error = %e,
                        "node watch failed; retrying with backoff (cached views stay, aged by their stamps)");
                }
                failing = true;
                continue;
            }
        };
        if failing {
            tracing::info!("node watch is back");
            failing = false;
        }
        cache.events.fetch_add(1, Ordering::Relaxed);
        match event {
            Event::Init => listing = Some(Views::new()),
            Event::InitApply(node) => {
                let name = node.metadata.name.as_deref().unwrap_or_default();
                listing
                    .get_or_insert_with(Views::new)
                    .insert(name.into(), parse(&node));
            }
            Event::InitDone => {
                let views = listing.take().unwrap_or_default();
                tracing::info!(nodes = views.len(), "node cache synced");
                cache.replace(views);
            }
            Event::Apply(node) => {
                if let Some(name) = node.metadata.name.as_deref() {
                    cache.insert(name, parse(&node));
                }
            }
            Event::Delete(node) => {
                if let Some(name) = node.metadata.name.as_deref() {
                    cache.remove(name);
                }
            }
        }
    }
}
