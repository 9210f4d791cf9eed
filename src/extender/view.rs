//! What a node's annotations say, read once into the form the scorer needs.
//!
//! The daemon writes `<domain>/residency` and its companions with
//! [`crate::cluster::residency::node_annotations`]; this is the reading
//! side. A view is parsed once per annotation change (in cache mode, per
//! watch event), never per scheduling request, and model names are turned
//! into catalog indices on the way in, so scoring a node compares integers.
//!
//! Nothing here fails: whatever the annotations hold, the result is a
//! [`NodeView`] whose [`Unreadable`] reason says why it carries no state.

use std::fmt;

use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;

use super::score::{Catalog, ModelRef};
use crate::cluster::residency;

/// The annotation keys of one domain, formatted once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub residency: String,
    pub queue_depth: String,
    pub version: String,
    pub time: String,
    /// The pod annotation naming the models a pod runs.
    pub pod_models: String,
}

/// The pod annotation's name after `<domain>/`.
pub const POD_MODELS: &str = "models";

impl Keys {
    pub fn new(domain: &str) -> Keys {
        let key = |name: &str| format!("{domain}/{name}");
        Keys {
            residency: key(residency::RESIDENCY),
            queue_depth: key(residency::QUEUE_DEPTH),
            version: key(residency::VERSION),
            time: key(residency::TIME),
            pod_models: key(POD_MODELS),
        }
    }
}

/// One node as the scorer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    pub state: Result<Residency, Unreadable>,
}

/// The daemon's last published state of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Residency {
    /// When the daemon read the state (Unix seconds).
    pub stamp_s: i64,
    /// Admissions waiting on the node (`<domain>/queue-depth`; 0 when absent).
    pub queue_depth: u32,
    pub gpus: Vec<GpuView>,
}

/// One GPU of a [`Residency`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuView {
    pub healthy: bool,
    pub total_mib: u64,
    pub free_mib: u64,
    pub idle_mib: u64,
    /// Ready copies of catalog models (names the catalog lacks are dropped).
    pub ready: Vec<ModelRef>,
    pub loading: Vec<ModelRef>,
    /// Tasks running on ready copies that have any (absent: idle).
    pub pins: Vec<(ModelRef, u32)>,
}

impl GpuView {
    /// Tasks on the ready copy of `m` (0 when idle or absent).
    pub fn pins(&self, m: ModelRef) -> u32 {
        self.pins
            .iter()
            .find(|(p, _)| *p == m)
            .map_or(0, |(_, n)| *n)
    }
}

/// Why a node's annotations give no usable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// No `<domain>/residency` annotation: no daemon has published here.
    Missing,
    /// A residency annotation without a version: written by a daemon from
    /// before version 2, with no time stamp to judge its age by.
    Unversioned,
    /// A version this extender does not know.
    UnsupportedVersion(String),
    /// The annotations are there but malformed.
    Invalid(String),
}

impl Unreadable {
    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Unreadable::Missing => "missing",
            Unreadable::Unversioned => "unversioned",
            Unreadable::UnsupportedVersion(_) => "unsupported_version",
            Unreadable::Invalid(_) => "invalid",
        }
    }
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unreadable::Missing => write!(f, "no residency annotation"),
            Unreadable::Unversioned => write!(
                f,
                "residency annotation without a version (a daemon older than schema {}); upgrade it",
                residency::SCHEMA_VERSION
            ),
            Unreadable::UnsupportedVersion(v) => write!(
                f,
                "residency schema version {v:?} is not one this extender reads ({}); upgrade the extender",
                residency::SCHEMA_VERSION
            ),
            Unreadable::Invalid(why) => write!(f, "malformed residency annotations: {why}"),
        }
    }
}

/// The most GPUs a view keeps: a bound on what one annotation can cost.
pub const MAX_GPUS: usize = 64;

/// `<domain>/residency` as written (version 2; unknown fields ignored so
/// additions stay compatible, as the version-1 reader read version 2).
#[derive(Debug, Deserialize)]
struct WireGpu {
    healthy: bool,
    free_mib: u64,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    loading: Vec<String>,
    total_mib: u64,
    idle_mib: u64,
    #[serde(default)]
    pins: std::collections::BTreeMap<String, u32>,
}

impl NodeView {
    /// Reads a node's annotations; `get` looks one up by its full key.
    pub fn parse<'a>(
        get: impl Fn(&str) -> Option<&'a str>,
        keys: &Keys,
        catalog: &Catalog,
    ) -> NodeView {
        NodeView {
            state: parse_state(get, keys, catalog),
        }
    }

    /// A node nothing is known about.
    pub fn unknown() -> NodeView {
        NodeView {
            state: Err(Unreadable::Missing),
        }
    }

    /// The state, if its stamp is at most `max_age_s` old at `now_s` (a
    /// stamp from the future by more than that is as suspect as an old one).
    pub fn fresh(&self, now_s: i64, max_age_s: i64) -> Option<&Residency> {
        self.state
            .as_ref()
            .ok()
            .filter(|r| (now_s - r.stamp_s).abs() <= max_age_s)
    }
}

fn parse_state<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
    keys: &Keys,
    catalog: &Catalog,
) -> Result<Residency, Unreadable> {
    let residency = get(&keys.residency).ok_or(Unreadable::Missing)?;
    let version = get(&keys.version).ok_or(Unreadable::Unversioned)?;
    if version.trim() != residency::SCHEMA_VERSION.to_string() {
        return Err(Unreadable::UnsupportedVersion(truncate(version)));
    }
    let stamp =
        get(&keys.time).ok_or_else(|| Unreadable::Invalid(format!("{} is missing", keys.time)))?;
    let stamp_s = stamp
        .parse::<Timestamp>()
        .map_err(|e| Unreadable::Invalid(format!("{}: {:?}: {e}", keys.time, truncate(stamp))))?
        .as_second();
    let queue_depth = match get(&keys.queue_depth) {
        None => 0,
        Some(q) => q.trim().parse::<u32>().map_err(|_| {
            Unreadable::Invalid(format!(
                "{}: {:?} is not a count",
                keys.queue_depth,
                truncate(q)
            ))
        })?,
    };
    let wire: Vec<WireGpu> = serde_json::from_str(residency)
        .map_err(|e| Unreadable::Invalid(format!("{}: {e}", keys.residency)))?;
    if wire.len() > MAX_GPUS {
        return Err(Unreadable::Invalid(format!(
            "{}: {} GPUs, more than the {MAX_GPUS} a node can have here",
            keys.residency,
            wire.len()
        )));
    }
    let refs = |names: &[String]| -> Vec<ModelRef> {
        names.iter().filter_map(|n| catalog.find(n)).collect()
    };
    let gpus = wire
        .iter()
        .map(|g| GpuView {
            healthy: g.healthy,
            total_mib: g.total_mib,
            free_mib: g.free_mib,
            idle_mib: g.idle_mib,
            ready: refs(&g.models),
            loading: refs(&g.loading),
            pins: g
                .pins
                .iter()
                .filter_map(|(n, &p)| Some((catalog.find(n)?, p)))
                .collect(),
        })
        .collect();
    Ok(Residency {
        stamp_s,
        queue_depth,
        gpus,
    })
}

/// At most 64 characters of hostile text, for messages.
fn truncate(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::cluster::residency::node_annotations;
    use crate::config::Config;
    use crate::engine::{Engine, GpuSpec, Settings};

    fn catalog() -> Catalog {
        Catalog::new(&Config::dev().models)
    }

    fn view(a: &BTreeMap<String, String>) -> NodeView {
        NodeView::parse(
            |k| a.get(k).map(String::as_str),
            &Keys::new("vision.ai"),
            &catalog(),
        )
    }

    /// What a real engine's status publishes, as the daemon writes it.
    fn published(at: SystemTime) -> BTreeMap<String, String> {
        let config = Config::dev();
        let gpus = vec![
            GpuSpec {
                uuid: "GPU-a".into(),
                name: "L4".into(),
                total_mib: 24576,
            },
            GpuSpec {
                uuid: "GPU-b".into(),
                name: "L4".into(),
                total_mib: 24576,
            },
        ];
        let mut engine = Engine::new(gpus, config.models.clone(), Settings::from_config(&config))
            .expect("engine");
        engine
            .preload(
                "clip-vit-b32",
                Some(crate::engine::GpuId(1)),
                crate::engine::Time::ZERO,
            )
            .expect("preload");
        node_annotations(&engine.status(), "vision.ai", at)
    }

    #[test]
    fn what_the_daemon_writes_reads_back() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_205_600);
        let v = view(&published(at));
        let r = v.state.as_ref().expect("readable");
        assert_eq!(r.stamp_s, 1_796_205_600);
        assert_eq!(r.queue_depth, 0);
        assert_eq!(r.gpus.len(), 2);
        assert_eq!(r.gpus[0].total_mib, 24576);
        assert_eq!(r.gpus[0].free_mib, 24576 - 512);
        let clip = catalog().find("clip-vit-b32").expect("in the catalog");
        // Preloaded, the copy is loading until the runtime says it is done.
        assert_eq!(r.gpus[1].loading, vec![clip]);
        assert!(r.gpus[1].ready.is_empty());
        assert_eq!(v.fresh(1_796_205_600 + 60, 120), Some(r));
        assert_eq!(v.fresh(1_796_205_600 + 121, 120), None);
        assert_eq!(v.fresh(1_796_205_600 - 121, 120), None, "far future stamp");
    }

    #[test]
    fn versions_are_checked_before_anything_is_parsed() {
        let mut a = published(SystemTime::UNIX_EPOCH);
        a.insert("vision.ai/residency-version".into(), "3".into());
        a.insert("vision.ai/residency".into(), "{not json".into());
        assert_eq!(
            view(&a).state,
            Err(Unreadable::UnsupportedVersion("3".into()))
        );
        a.remove("vision.ai/residency-version");
        assert_eq!(view(&a).state, Err(Unreadable::Unversioned));
        a.remove("vision.ai/residency");
        assert_eq!(view(&a).state, Err(Unreadable::Missing));
    }

    #[test]
    fn malformed_annotations_say_which_key_is_wrong() {
        let good = published(SystemTime::UNIX_EPOCH);
        for (key, value, says) in [
            (
                "vision.ai/residency",
                "[{\"healthy\":1}]",
                "vision.ai/residency: invalid type",
            ),
            (
                "vision.ai/residency-time",
                "yesterday",
                "vision.ai/residency-time: \"yesterday\"",
            ),
            (
                "vision.ai/queue-depth",
                "-1",
                "vision.ai/queue-depth: \"-1\" is not a count",
            ),
        ] {
            let mut a = good.clone();
            a.insert(key.into(), value.into());
            match view(&a).state {
                Err(Unreadable::Invalid(why)) => assert!(why.starts_with(says), "{why}"),
                other => panic!("{key}={value}: {other:?}"),
            }
        }
        let mut a = good;
        a.insert(
            "vision.ai/residency".into(),
            format!(
                "[{}]",
                ["{\"healthy\":true,\"free_mib\":1,\"total_mib\":1,\"idle_mib\":0}"; 65].join(",")
            ),
        );
        assert!(matches!(view(&a).state, Err(Unreadable::Invalid(w)) if w.contains("65 GPUs")));
    }

    #[test]
    fn models_outside_the_catalog_are_left_out_and_unknown_fields_ignored() {
        let mut a = published(SystemTime::UNIX_EPOCH);
        a.insert(
            "vision.ai/residency".into(),
            r#"[{"uuid":"x","healthy":true,"free_mib":5,"models":["sd3b","mystery"],"loading":[],"total_mib":9,"idle_mib":1,"future":{"a":1}}]"#.into(),
        );
        let v = view(&a);
        let r = v.state.expect("readable");
        assert_eq!(r.gpus[0].ready, vec![catalog().find("sd3b").expect("sd3b")]);
    }

    #[test]
    fn long_hostile_values_are_cut_in_messages() {
        let mut a = published(SystemTime::UNIX_EPOCH);
        a.insert("vision.ai/residency-version".into(), "9".repeat(10_000));
        let Err(Unreadable::UnsupportedVersion(v)) = view(&a).state else {
            panic!("unsupported")
        };
        assert_eq!(v.chars().count(), 65);
    }
}
