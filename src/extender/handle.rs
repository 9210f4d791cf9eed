//! One filter or prioritize call: body bytes in, status and body bytes out.
//!
//! Synchronous and free of HTTP types, so the bench measures exactly what a
//! call costs and the HTTP layer stays a thin adapter.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use serde_json::value::RawValue;

use super::Extender;
use super::metrics::{NodeState, Request, Verb};
use super::score::{self, PodModels};
use super::view::{NodeView, Unreadable};
use super::wire::{
    EmptyMeta, ErrorBody, ExtenderArgs, FilterResult, HostPriority, Object, RawNodeList,
};

/// An answer: HTTP status and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    fn ok(body: Vec<u8>) -> Answer {
        Answer { status: 200, body }
    }

    /// A refusal with the message in `Error`.
    pub fn error(status: u16, message: &str) -> Answer {
        let body = serde_json::to_vec(&ErrorBody { error: message })
            .unwrap_or_else(|_| br#"{"Error":"unencodable error"}"#.to_vec());
        Answer { status, body }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VerbKind {
    Filter,
    Prioritize,
}

impl VerbKind {
    fn name(self) -> &'static str {
        match self {
            VerbKind::Filter => "filter",
            VerbKind::Prioritize => "prioritize",
        }
    }
}

/// The nodes of a request, whichever mode it came in.
enum Candidates<'a> {
    /// `NodeNames` (cache mode).
    Names(Vec<super::wire::Str<'a>>),
    /// `Nodes.items` (stateless mode), raw, with their parsed metadata.
    Nodes(Vec<(&'a RawValue, Object<'a>)>),
}

/// Counts of views by state, added to the metrics once per call.
#[derive(Default)]
struct Tally {
    fresh: u64,
    stale: u64,
    unreadable: [u64; 4],
}

impl Tally {
    fn see(&mut self, view: &NodeView, now_s: i64, max_age_s: i64) {
        match &view.state {
            Ok(_) if view.fresh(now_s, max_age_s).is_some() => self.fresh += 1,
            Ok(_) => self.stale += 1,
            Err(u) => {
                let i = match u {
                    Unreadable::Missing => 0,
                    Unreadable::Unversioned => 1,
                    Unreadable::UnsupportedVersion(_) => 2,
                    Unreadable::Invalid(_) => 3,
                };
                self.unreadable[i] += 1;
            }
        }
    }
}

const UNREADABLE_LABELS: [&str; 4] = ["missing", "unversioned", "unsupported_version", "invalid"];

impl Extender {
    /// `POST /filter`: fails only nodes where no GPU could ever hold a model
    /// of the pod; everything else passes.
    pub fn filter(&self, body: &[u8], now: SystemTime) -> Answer {
        self.call(VerbKind::Filter, body, now)
    }

    /// `POST /prioritize`: every node of the request with its score, in
    /// request order.
    pub fn prioritize(&self, body: &[u8], now: SystemTime) -> Answer {
        self.call(VerbKind::Prioritize, body, now)
    }

    fn call(&self, verb: VerbKind, body: &[u8], now: SystemTime) -> Answer {
        let start = Instant::now();
        let answer = self.answer(verb, body, now).unwrap_or_else(|message| {
            tracing::warn!(verb = verb.name(), %message, "bad extender request");
            Answer::error(400, &message)
        });
        let result = if answer.status == 200 {
            "ok"
        } else {
            "bad_request"
        };
        self.metrics
            .requests
            .get_or_create(&Request {
                verb: verb.name(),
                result,
            })
            .inc();
        self.metrics
            .duration
            .get_or_create(&Verb { verb: verb.name() })
            .observe(start.elapsed().as_secs_f64());
        answer
    }

    fn answer(&self, verb: VerbKind, body: &[u8], now: SystemTime) -> Result<Answer, String> {
        let args: ExtenderArgs<'_> = serde_json::from_slice(body)
            .map_err(|e| format!("the body is not extender/v1 ExtenderArgs JSON: {e}"))?;
        let pod = args
            .pod
            .ok_or("ExtenderArgs.Pod is missing: nothing to schedule")?;
        let models = PodModels::parse(pod.annotation(&self.keys.pod_models), &self.catalog);
        if !models.unknown.is_empty() {
            self.metrics.unknown_pod_models.inc();
            tracing::warn!(
                pod = %format!("{}/{}", pod.namespace().unwrap_or(""), pod.name().unwrap_or("")),
                unknown = ?models.unknown,
                "{} names models the catalog does not have; they score as cold",
                self.keys.pod_models
            );
        }
        let candidates = match (args.node_names, args.nodes) {
            (Some(names), _) => Candidates::Names(names),
            (None, Some(list)) => {
                let items = list.items.unwrap_or_default();
                let mut nodes = Vec::with_capacity(items.len());
                for (i, raw) in items.into_iter().enumerate() {
                    let meta: Object<'_> = serde_json::from_str(raw.get())
                        .map_err(|e| format!("Nodes.items[{i}] is not a Node: {e}"))?;
                    if meta.name().is_none() {
                        return Err(format!("Nodes.items[{i}] has no metadata.name"));
                    }
                    nodes.push((raw, meta));
                }
                Candidates::Nodes(nodes)
            }
            (None, None) => {
                return Err(
                    "ExtenderArgs has neither NodeNames (nodeCacheCapable: true) nor Nodes (nodeCacheCapable: false)"
                        .into(),
                );
            }
        };
        if matches!(candidates, Candidates::Names(_)) && self.cache.is_none() {
            return Err(
                "NodeNames came (nodeCacheCapable: true) but this extender runs without a node cache (--node-cache off); set nodeCacheCapable: false or run it with --node-cache watch"
                    .into(),
            );
        }
        let now_s = unix_seconds(now);
        Ok(match verb {
            VerbKind::Filter => self.filter_nodes(&models, candidates, now_s),
            VerbKind::Prioritize => self.prioritize_nodes(&models, candidates, now_s),
        })
    }

    /// Applies `f` to each candidate's view, in request order.
    fn each_view(
        &self,
        verb: VerbKind,
        candidates: &Candidates<'_>,
        now_s: i64,
        mut f: impl FnMut(usize, &str, &NodeView),
    ) {
        let mut tally = Tally::default();
        match candidates {
            Candidates::Names(names) => {
                let unknown = NodeView::unknown();
                let cache = self.cache.as_ref().map(|c| c.read());
                for (i, name) in names.iter().enumerate() {
                    let view = cache
                        .as_ref()
                        .and_then(|c| c.get(&**name))
                        .unwrap_or(&unknown);
                    tally.see(view, now_s, self.max_age_s);
                    f(i, name, view);
                }
            }
            Candidates::Nodes(nodes) => {
                for (i, (_, meta)) in nodes.iter().enumerate() {
                    let view = NodeView::parse(|k| meta.annotation(k), &self.keys, &self.catalog);
                    tally.see(&view, now_s, self.max_age_s);
                    f(i, meta.name().unwrap_or_default(), &view);
                }
            }
        }
        let verb = verb.name();
        let add = |view, n| {
            if n > 0 {
                self.metrics
                    .nodes
                    .get_or_create(&NodeState { verb, view })
                    .inc_by(n);
            }
        };
        add("fresh", tally.fresh);
        add("stale", tally.stale);
        for (label, n) in UNREADABLE_LABELS.into_iter().zip(tally.unreadable) {
            add(label, n);
        }
    }

    fn filter_nodes(&self, models: &PodModels, candidates: Candidates<'_>, now_s: i64) -> Answer {
        let mut failed: BTreeMap<&str, String> = BTreeMap::new();
        let mut pass = Vec::new();
        if models.known.is_empty() {
            // Nothing can fail: skip reading the views.
            pass.extend(0..count(&candidates));
        } else {
            let mut fails: Vec<(usize, String)> = Vec::new();
            self.each_view(
                VerbKind::Filter,
                &candidates,
                now_s,
                |i, _, view| match score::filter(models, view, &self.catalog, self.reserve_mib) {
                    Ok(()) => pass.push(i),
                    Err(why) => fails.push((i, why)),
                },
            );
            self.metrics.failed_nodes.inc_by(fails.len() as u64);
            for (i, why) in fails {
                failed.insert(name_at(&candidates, i), why);
            }
        }
        let result = match &candidates {
            Candidates::Names(names) => FilterResult {
                nodes: None,
                node_names: Some(pass.iter().map(|&i| &*names[i]).collect()),
                failed_nodes: failed.clone(),
                failed_and_unresolvable_nodes: failed,
                error: String::new(),
            },
            Candidates::Nodes(nodes) => FilterResult {
                nodes: Some(RawNodeList {
                    metadata: EmptyMeta {},
                    items: pass.iter().map(|&i| nodes[i].0).collect(),
                }),
                node_names: None,
                failed_nodes: failed.clone(),
                failed_and_unresolvable_nodes: failed,
                error: String::new(),
            },
        };
        encode(&result)
    }

    fn prioritize_nodes(
        &self,
        models: &PodModels,
        candidates: Candidates<'_>,
        now_s: i64,
    ) -> Answer {
        let mut scores = vec![0i64; count(&candidates)];
        if !models.is_empty() {
            self.each_view(VerbKind::Prioritize, &candidates, now_s, |i, _, view| {
                scores[i] = score::score(models, view, &self.catalog, now_s, self.max_age_s);
            });
        }
        let list: Vec<HostPriority<'_>> = scores
            .iter()
            .enumerate()
            .map(|(i, &score)| HostPriority {
                host: name_at(&candidates, i),
                score,
            })
            .collect();
        encode(&list)
    }
}

fn count(c: &Candidates<'_>) -> usize {
    match c {
        Candidates::Names(n) => n.len(),
        Candidates::Nodes(n) => n.len(),
    }
}

fn name_at<'c>(c: &'c Candidates<'_>, i: usize) -> &'c str {
    match c {
        Candidates::Names(n) => &n[i],
        Candidates::Nodes(n) => n[i].1.name().unwrap_or_default(),
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Answer {
    match serde_json::to_vec(value) {
        Ok(body) => Answer::ok(body),
        // Our own types of strings and integers always encode.
        Err(e) => Answer::error(500, &format!("cannot encode the answer: {e}")),
    }
}

/// Seconds since 1970 (negative before it).
pub fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}
