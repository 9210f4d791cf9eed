//! `vision-scheduler-extender`: a kube-scheduler HTTP extender that scores
//! nodes by what the daemons publish, so a pod lands where its models are
//! warm.
//!
//! A pod declares the models it will run in the annotation
//! `<domain>/models: "sd3b,clip-vit-b32"`. kube-scheduler (a profile that
//! lists this extender; see the Helm chart) calls `POST /filter` and
//! `POST /prioritize` with the pod and its candidate nodes; the extender
//! reads each node's `<domain>/residency` annotations
//! ([`crate::cluster::residency`]) and answers. It never binds, never locks
//! and never narrows the choice to one node: it fails only nodes where a
//! model could never fit, and scores the rest `0..=10`, leaving the decision
//! to kube-scheduler (the lessons of HAMi and gpushare, see
//! `CLUSTER_API.md`).
//!
//! Both extender modes are served at once; the request says which:
//! - `nodeCacheCapable: false`: whole Nodes arrive in `Nodes`; the
//!   extender is stateless and reads their annotations per call;
//! - `nodeCacheCapable: true`: only `NodeNames` arrive; the views come from
//!   the [`cache`], fed by a metadata-only watch of Nodes (its staleness
//!   bound is in the [`cache`] docs).
//!
//! # Layout
//! - [`wire`]: the extender/v1 JSON (our own types, PascalCase keys).
//! - [`view`]: annotations → [`view::NodeView`], parsed once per change.
//! - [`score`]: the pure filter and score, shared with the fleet simulator.
//! - [`cache`]: the node cache and its watch.
//! - `handle`: one call, bytes in, bytes out; [`http`]: the axum server.

pub mod cache;
mod handle;
pub mod http;
mod metrics;
pub mod score;
pub mod view;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;

pub use handle::{Answer, unix_seconds};
pub use score::{Catalog, MAX_PRIORITY, PodModels};

use crate::config::Config;
use cache::NodeCache;
use view::Keys;

/// Default `--max-age`: three missed heartbeats of the daemons
/// ([`crate::cluster::residency::REFRESH`]).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(180);

/// Default `--max-body-bytes`: room for ~2000 full Node objects in
/// stateless mode (kube-scheduler sends only the feasible nodes it found,
/// by default at most ~10 % of a large cluster); cache mode needs far less.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 << 20;

/// Where node views come from for `NodeNames` requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeCacheMode {
    /// A metadata-only watch of Nodes (`nodeCacheCapable: true`).
    Watch,
    /// None: only `nodeCacheCapable: false` requests can be answered.
    Off,
}

/// What the extender needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Annotation domain (the daemons' `domain`).
    pub domain: String,
    /// The daemons' `gpus.reserve_mib`: what a GPU never offers.
    pub reserve_mib: u64,
    pub models: Vec<crate::config::ModelSpec>,
    /// Views stamped longer ago count as unknown.
    pub max_age: Duration,
    pub max_body_bytes: usize,
    pub node_cache: NodeCacheMode,
}

impl Settings {
    /// From the daemons' config: the domain, the reserve and the catalog;
    /// the rest at its defaults.
    pub fn from_config(cfg: &Config) -> Settings {
        Settings {
            domain: cfg.domain.clone(),
            reserve_mib: cfg.gpus.reserve_mib,
            models: cfg.models.clone(),
            max_age: DEFAULT_MAX_AGE,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            node_cache: NodeCacheMode::Watch,
        }
    }
}

/// The extender: settings, catalog, cache and metrics. Cheap to share
/// behind an `Arc`; every call takes `&self`.
#[derive(Debug)]
pub struct Extender {
    keys: Keys,
    catalog: Catalog,
    reserve_mib: u64,
    max_age_s: i64,
    max_body_bytes: usize,
    /// `Some` in [`NodeCacheMode::Watch`], filled by [`cache::watch`].
    cache: Option<Arc<NodeCache>>,
    metrics: metrics::Metrics,
}

impl Extender {
    pub fn new(settings: &Settings) -> Extender {
        Extender {
            keys: Keys::new(&settings.domain),
            catalog: Catalog::new(&settings.models),
            reserve_mib: settings.reserve_mib,
            max_age_s: i64::try_from(settings.max_age.as_secs()).unwrap_or(i64::MAX),
            max_body_bytes: settings.max_body_bytes,
            cache: (settings.node_cache == NodeCacheMode::Watch)
                .then(|| Arc::new(NodeCache::new())),
            metrics: metrics::Metrics::default(),
        }
    }

    /// The node cache, in watch mode.
    pub fn cache(&self) -> Option<&Arc<NodeCache>> {
        self.cache.as_ref()
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Parses a Node's metadata into its view, as the cache does.
    pub fn view_of(
        &self,
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ) -> view::NodeView {
        let annotations = meta.annotations.as_ref();
        view::NodeView::parse(
            |k| annotations.and_then(|a| a.get(k)).map(String::as_str),
            &self.keys,
            &self.catalog,
        )
    }

    /// Keeps the cache current from `client`'s Nodes until dropped (watch
    /// mode; returns at once without a cache).
    pub async fn watch_nodes(self: Arc<Self>, client: kube::Client) {
        let Some(cache) = self.cache.clone() else {
            return;
        };
        let me = Arc::clone(&self);
        cache::watch(client, cache, move |node| me.view_of(&node.metadata)).await;
    }

    /// Ready for traffic: `Err(reason)` while the cache has not listed the
    /// Nodes yet.
    pub fn ready(&self) -> Result<(), String> {
        match &self.cache {
            Some(c) if !c.synced() => Err("the node cache has not listed the Nodes yet".into()),
            _ => Ok(()),
        }
    }

    /// A registry of this extender's metrics.
    pub fn registry(&self) -> Registry {
        metrics::registry(&self.metrics, self.cache.clone())
    }
}
