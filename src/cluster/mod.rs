//! Cluster publishing: tells the Kubernetes API about this node.
//!
//! Everything written is about the daemon's own Node object (`node_name`),
//! so the RBAC it needs is `nodes` patch and `events.k8s.io/events` create
//! and patch:
//!
//! - **labels** (stable hardware facts, for selectors) by server-side apply,
//!   rewritten only when they change — [`labels`];
//! - **annotations** (what is warm where, queue depth, for a scheduler
//!   extender or a router) by server-side apply, change-driven and rate
//!   limited — [`residency`], public because its schema is a contract with
//!   readers outside the daemon (`vision-scheduler-extender`);
//! - **Events** on the Node for what a human should see in
//!   `kubectl describe node` — [`events`].
//!
//! What to write is computed by pure functions of the engine status and of
//! the node's event stream; the [`publisher`] task only decides when, writes,
//! and backs off ([`backoff`]) when the API server fails. It never holds up
//! the daemon's other work: the engine lock is held for one status read.
//!
//! # Layout
//! - `labels`, [`residency`], `events`: the pure mappings.
//! - [`backoff`]: the retry schedule.
//! - `publisher`: the task, [`spawn`]ed once per daemon.

pub mod backoff;
mod events;
mod labels;
mod publisher;
pub mod residency;
#[cfg(test)]
mod test_support;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::config::Config;
use crate::node::Node;

/// The Events' reporting controller (the instance is the node name).
pub(crate) const REPORTER: &str = "vision-node-daemon";
/// Field manager of the label apply.
pub const LABEL_MANAGER: &str = "vision-node-daemon";
/// Field manager of the annotation apply. Separate from [`LABEL_MANAGER`]
/// because server-side apply removes every field a manager owned and no
/// longer sends: with one manager, each label apply (which carries no
/// annotations) would delete the annotations, and each annotation apply
/// the labels.
pub const ANNOTATION_MANAGER: &str = "vision-node-daemon-residency";

/// What the publisher needs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The Node object written to (and the Events' reporting instance).
    pub node_name: String,
    /// Label and annotation key prefix, e.g. `vision.ai`.
    pub domain: String,
    /// At most one annotation write per this interval.
    pub annotation_interval: Duration,
    /// For the `<domain>/slots` label.
    pub slots_per_gpu: u32,
}

impl Settings {
    pub fn from_config(cfg: &Config) -> Settings {
        Settings {
            node_name: cfg.node_name.clone(),
            domain: cfg.domain.clone(),
            annotation_interval: cfg.cluster.annotation_interval,
            slots_per_gpu: cfg.devices.slots_per_gpu,
        }
    }
}

/// Counters the metrics module reads. Only the publisher writes them.
#[derive(Debug, Default)]
pub struct Stats {
    /// Failed writes of any kind (labels, annotations, Events).
    pub publish_errors: AtomicU64,
    /// Successful label applies.
    pub label_writes: AtomicU64,
    /// Successful annotation applies.
    pub annotation_writes: AtomicU64,
    /// Events created or (a repeat within 6 minutes) counted up.
    pub events_published: AtomicU64,
}

/// Starts publishing for `node` through `client`; the task ends when the
/// node shuts down. It subscribes to the node's events before returning, so
/// no change made after `spawn` goes unseen.
pub fn spawn(
    node: Arc<Node>,
    client: kube::Client,
    settings: Settings,
    stats: Arc<Stats>,
) -> JoinHandle<()> {
    let events = node.subscribe();
    let publisher = publisher::Publisher::new(node, client, settings, stats);
    tokio::spawn(publisher.run(events))
}

/// Where a Kubernetes API configuration would come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ApiSource {
    /// `KUBECONFIG` (or `~/.kube/config`, named here) — tried first, as
    /// kube-rs and kubectl do.
    Kubeconfig(Option<PathBuf>),
    /// `KUBERNETES_SERVICE_HOST` in a pod, with the service account token.
    InCluster,
}

/// Decides, from the environment and the file system (passed in), whether
/// there is any Kubernetes API configuration to try.
fn api_source(
    env: impl Fn(&str) -> Option<OsString>,
    exists: impl Fn(&Path) -> bool,
) -> Option<ApiSource> {
    let set = |key: &str| env(key).filter(|v| !v.is_empty());
    if set("KUBECONFIG").is_some() {
        return Some(ApiSource::Kubeconfig(None));
    }
    if let Some(home) = set("HOME") {
        let path = Path::new(&home).join(".kube").join("config");
        if exists(&path) {
            return Some(ApiSource::Kubeconfig(Some(path)));
        }
    }
    set("KUBERNETES_SERVICE_HOST").map(|_| ApiSource::InCluster)
}

/// A client for the in-cluster API or the one `KUBECONFIG` /
/// `~/.kube/config` names; `None` when there is neither (as with `--dev`
/// on a laptop) — logged once at info — or when the configuration found is
/// unusable (logged as a warning). Either way the daemon runs on without
/// cluster publishing.
///
/// Checking the environment first, rather than reading whatever
/// `kube::Config::infer` falls back to, makes "no API configured" an
/// explicit, quiet outcome that can never turn into writes to some default
/// address.
pub(crate) async fn client_from_env() -> Option<kube::Client> {
    let Some(source) = api_source(|k| std::env::var_os(k), Path::exists) else {
        tracing::info!("no Kubernetes API configured; cluster publishing is off");
        return None;
    };
    let config = match kube::Config::infer().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(?source, error = %e,
                "cannot read the Kubernetes API configuration; cluster publishing is off");
            return None;
        }
    };
    let cluster_url = config.cluster_url.to_string();
    match kube::Client::try_from(config) {
        Ok(client) => {
            tracing::info!(?source, %cluster_url, "cluster publishing to the Kubernetes API");
            Some(client)
        }
        Err(e) => {
            tracing::warn!(?source, %cluster_url, error = %e,
                "cannot build a Kubernetes client; cluster publishing is off");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn no_kubeconfig_and_no_service_host_means_no_api() {
        assert_eq!(api_source(env(&[("HOME", "/home/me")]), |_| false), None);
        assert_eq!(api_source(env(&[("KUBECONFIG", "")]), |_| true), None);
    }

    #[test]
    fn in_a_pod_the_service_host_names_the_api() {
        let vars = [("KUBERNETES_SERVICE_HOST", "10.0.0.1"), ("HOME", "/root")];
        assert_eq!(
            api_source(env(&vars), |_| false),
            Some(ApiSource::InCluster)
        );
    }

    #[test]
    fn a_kubeconfig_comes_first_like_kubectl() {
        let vars = [
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
            ("KUBECONFIG", "/etc/kube.yaml"),
        ];
        assert_eq!(
            api_source(env(&vars), |_| false),
            Some(ApiSource::Kubeconfig(None))
        );
        let home = [("HOME", "/home/me")];
        assert_eq!(
            api_source(env(&home), |p| p == Path::new("/home/me/.kube/config")),
            Some(ApiSource::Kubeconfig(Some("/home/me/.kube/config".into())))
        );
    }
}
