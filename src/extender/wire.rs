//! The JSON of `k8s.io/kube-scheduler/extender/v1`, our own types.
//!
//! The Go structs carry no json tags, so the keys are the Go field names
//! (`Pod`, `Nodes`, `NodeNames`, `FailedNodes`, `Host`, `Score`…), and Go's
//! encoder writes every field, nil pointers and maps as `null`. kube-scheduler
//! sends `Nodes` (a whole `v1.NodeList`) when `nodeCacheCapable: false` and
//! `NodeNames` when it is true, the other one `null`.
//!
//! Requests are read borrowing from the body: of the Pod only its
//! annotations, of each Node only name, labels and annotations; the Node
//! objects themselves stay raw JSON so that a filter answer can hand back
//! exactly what it was given (kube-scheduler uses the Nodes of a
//! non-cache-mode filter answer as they come).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// `ExtenderArgs`: the body of a filter or prioritize call.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExtenderArgs<'a> {
    #[serde(borrow)]
    pub pod: Option<Object<'a>>,
    #[serde(borrow)]
    pub nodes: Option<NodeList<'a>>,
    #[serde(borrow)]
    pub node_names: Option<Vec<Str<'a>>>,
}

/// A string borrowed from the body unless it has escapes. (A bare
/// `Cow<str>` inside a `Vec` or a map always deserializes owned.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(transparent)]
pub struct Str<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Str<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// A `v1.NodeList` with its items left raw.
#[derive(Debug, Deserialize)]
pub struct NodeList<'a> {
    /// Go writes a nil slice as `null`.
    #[serde(borrow, default)]
    pub items: Option<Vec<&'a RawValue>>,
}

/// Any object, reduced to the metadata the extender reads.
#[derive(Debug, Default, Deserialize)]
pub struct Object<'a> {
    #[serde(borrow, default)]
    pub metadata: Option<Meta<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Meta<'a> {
    #[serde(borrow, default)]
    pub name: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub namespace: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub annotations: Option<HashMap<Str<'a>, Str<'a>>>,
}

impl<'a> Object<'a> {
    pub fn name(&self) -> Option<&str> {
        self.metadata.as_ref()?.name.as_deref()
    }

    pub fn namespace(&self) -> Option<&str> {
        self.metadata.as_ref()?.namespace.as_deref()
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get(key)
            .map(|v| &**v)
    }
}

/// `ExtenderFilterResult`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FilterResult<'a> {
    /// Non-cache mode: the nodes that pass, as they came.
    pub nodes: Option<RawNodeList<'a>>,
    /// Cache mode: the names of the nodes that pass.
    pub node_names: Option<Vec<&'a str>>,
    pub failed_nodes: BTreeMap<&'a str, String>,
    /// The same nodes again: a model that can never fit is not something
    /// preemption can fix. (kube-scheduler lets this map win over
    /// `FailedNodes`; older ones read only `FailedNodes`.)
    pub failed_and_unresolvable_nodes: BTreeMap<&'a str, String>,
    pub error: String,
}

/// The `v1.NodeList` of a non-cache-mode answer.
#[derive(Debug, Serialize)]
pub struct RawNodeList<'a> {
    pub metadata: EmptyMeta,
    pub items: Vec<&'a RawValue>,
}

/// `{}`: a list's metadata, as Go writes an empty `ListMeta`.
#[derive(Debug, Default, Serialize)]
pub struct EmptyMeta {}

/// One entry of `HostPriorityList` (a bare JSON array of these).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostPriority<'a> {
    pub host: &'a str,
    pub score: i64,
}

/// The body of an answer that refuses a request: an `ExtenderFilterResult`
/// with only `Error` set, which any extender/v1 reader can decode.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorBody<'a> {
    pub error: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_nulls_are_read_as_absent() {
        let body = br#"{"Pod":{"metadata":{"name":"p","annotations":{"a":"b"}}},"Nodes":null,"NodeNames":["n1","n\u00e9"]}"#;
        let args: ExtenderArgs<'_> = serde_json::from_slice(body).expect("parses");
        assert!(args.nodes.is_none());
        let names = args.node_names.expect("names");
        assert!(matches!(names[0].0, Cow::Borrowed("n1")));
        assert!(
            matches!(&names[1].0, Cow::Owned(n) if n == "né"),
            "escapes decoded"
        );
        let pod = args.pod.expect("pod");
        assert_eq!((pod.name(), pod.annotation("a")), (Some("p"), Some("b")));

        let body =
            br#"{"Pod":{"metadata":{}},"Nodes":{"metadata":{},"items":null},"NodeNames":null}"#;
        let args: ExtenderArgs<'_> = serde_json::from_slice(body).expect("parses");
        assert!(args.nodes.expect("a list").items.is_none());
        assert_eq!(args.pod.expect("pod").annotation("a"), None);
    }

    #[test]
    fn answers_use_the_go_field_names() {
        let raw: &RawValue =
            serde_json::from_str(r#"{"metadata":{"name":"n1"},"status":{}}"#).expect("raw");
        let r = FilterResult {
            nodes: Some(RawNodeList {
                metadata: EmptyMeta {},
                items: vec![raw],
            }),
            node_names: None,
            failed_nodes: BTreeMap::from([("n2", "why".to_owned())]),
            failed_and_unresolvable_nodes: BTreeMap::new(),
            error: String::new(),
        };
        assert_eq!(
            serde_json::to_string(&r).expect("json"),
            r#"{"Nodes":{"metadata":{},"items":[{"metadata":{"name":"n1"},"status":{}}]},"NodeNames":null,"FailedNodes":{"n2":"why"},"FailedAndUnresolvableNodes":{},"Error":""}"#
        );
        let p = [HostPriority {
            host: "n1",
            score: 7,
        }];
        assert_eq!(
            serde_json::to_string(&p).expect("json"),
            r#"[{"Host":"n1","Score":7}]"#
        );
    }
}
