//! Node labels: a pure function of the engine status.
//!
//! Labels are for node selectors and affinities, so they carry only what is
//! stable — the hardware and how many slots the healthy part of it offers —
//! never residency or load, which change by the second (those go into
//! annotations, see [`super::residency`]).

use std::collections::BTreeMap;

use crate::engine::Status;

/// Label key → value, sorted (the order the apply body is written in).
pub(crate) type Labels = BTreeMap<String, String>;

/// The most characters a label value may have.
pub(crate) const LABEL_VALUE_MAX: usize = 63;

/// What `<domain>/gpu.product` says when no GPU name survives sanitising.
pub(crate) const UNKNOWN_PRODUCT: &str = "unknown";

/// The labels this node should carry:
///
/// - `<domain>/present=true` — the daemon runs here (a selector for
///   DaemonSets of model servers and routers);
/// - `<domain>/gpu.count` — every GPU, healthy or not (the hardware);
/// - `<domain>/gpu.product` — the most common GPU name (ties: the lowest
///   GPU index), sanitised by [`sanitize_label_value`];
/// - `<domain>/gpu.memory-mib` — the smallest GPU's total, the size a model
///   can count on whichever GPU it lands on;
/// - `<domain>/slots` — `slots_per_gpu` × healthy GPUs, what the slot device
///   plugin offers.
///
/// With no GPUs, `gpu.product` and `gpu.memory-mib` are left out (there is
/// nothing to describe) and server-side apply removes them.
pub(crate) fn node_labels(status: &Status, domain: &str, slots_per_gpu: u32) -> Labels {
    let key = |name: &str| format!("{domain}/{name}");
    let mut labels = Labels::new();
    labels.insert(key("present"), "true".into());
    labels.insert(key("gpu.count"), status.gpus.len().to_string());
    if let Some(name) = most_common_name(status) {
        let value = sanitize_label_value(name);
        let value = if value.is_empty() {
            UNKNOWN_PRODUCT.to_owned()
        } else {
            value
        };
        labels.insert(key("gpu.product"), value);
    }
    if let Some(smallest) = status.gpus.iter().map(|g| g.total_mib).min() {
        labels.insert(key("gpu.memory-mib"), smallest.to_string());
    }
    let healthy = status.gpus.iter().filter(|g| g.healthy).count() as u64;
    labels.insert(
        key("slots"),
        (u64::from(slots_per_gpu) * healthy).to_string(),
    );
    labels
}

/// The GPU name most GPUs have; on a tie, the one that appears first.
fn most_common_name(status: &Status) -> Option<&str> {
    // (name, count) in order of first appearance; a node has a handful of GPUs.
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for g in &status.gpus {
        match counts.iter_mut().find(|(n, _)| *n == g.name) {
            Some((_, c)) => *c += 1,
            None => counts.push((&g.name, 1)),
        }
    }
    // `max_by_key` keeps the last maximum; reversing keeps the first.
    counts
        .into_iter()
        .rev()
        .max_by_key(|(_, c)| *c)
        .map(|(n, _)| n)
}

/// Turns any text into a valid label value: at most 63 characters,
/// `[A-Za-z0-9]` at both ends, `[-_.A-Za-z0-9]` inside.
///
/// Each run of other characters (spaces, parentheses, non-ASCII) becomes one
/// `-`, so `NVIDIA A100-SXM4-80GB` reads `NVIDIA-A100-SXM4-80GB` and
/// `NVIDIA L4 (simulated)` reads `NVIDIA-L4-simulated`. The result may be
/// empty (itself a valid value) when nothing usable is left.
pub(crate) fn sanitize_label_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(2 * LABEL_VALUE_MAX));
    let mut replaced = false;
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
            if replaced && !out.is_empty() {
                out.push('-');
            }
            replaced = false;
            out.push(c);
        } else {
            replaced = true;
        }
    }
    // Only ASCII is left, so byte positions are character positions.
    out.truncate(LABEL_VALUE_MAX);
    out.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// Whether `value` is a valid label value (the API server's rule): the
/// tests' oracle for [`sanitize_label_value`].
#[cfg(test)]
fn is_valid_label_value(value: &str) -> bool {
    let inner = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    value.is_empty()
        || (value.len() <= LABEL_VALUE_MAX
            && value.chars().all(inner)
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_support::{gpu, status};
    use proptest::prelude::*;

    #[test]
    fn spaces_become_dashes_in_a_gpu_name() {
        assert_eq!(
            sanitize_label_value("NVIDIA A100-SXM4-80GB"),
            "NVIDIA-A100-SXM4-80GB"
        );
        assert_eq!(
            sanitize_label_value("NVIDIA L4 (simulated)"),
            "NVIDIA-L4-simulated"
        );
        assert_eq!(
            sanitize_label_value("Tesla  V100 / 16GB"),
            "Tesla-V100-16GB"
        );
        assert_eq!(
            sanitize_label_value("Radeon™ Pro W7900"),
            "Radeon-Pro-W7900"
        );
    }

    #[test]
    fn empty_and_all_invalid_names_sanitise_to_empty() {
        assert_eq!(sanitize_label_value(""), "");
        assert_eq!(sanitize_label_value("  ()[] ™ "), "");
        assert_eq!(sanitize_label_value("-_.-"), "");
        assert_eq!(sanitize_label_value("(x)"), "x");
    }

    #[test]
    fn long_names_are_cut_to_63_and_never_end_in_punctuation() {
        let long = "A".repeat(62) + "-B" + &"C".repeat(40);
        let v = sanitize_label_value(&long);
        assert_eq!(v, "A".repeat(62));
        let exact = "x".repeat(63);
        assert_eq!(sanitize_label_value(&exact), exact);
        assert_eq!(sanitize_label_value(&"y".repeat(200)).len(), 63);
    }

    proptest! {
        #[test]
        fn sanitised_values_are_always_valid(text in "\\PC{0,100}") {
            let v = sanitize_label_value(&text);
            prop_assert!(is_valid_label_value(&v), "{v:?} from {text:?}");
        }

        #[test]
        fn valid_values_are_kept(v in "[A-Za-z0-9]([-_.A-Za-z0-9]{0,61}[A-Za-z0-9])?") {
            prop_assert_eq!(sanitize_label_value(&v), v);
        }
    }

    #[test]
    fn labels_describe_the_hardware_and_the_healthy_slots() {
        let mut s = status(vec![
            gpu("NVIDIA A100-SXM4-80GB", 81920),
            gpu("NVIDIA A100-SXM4-40GB", 40960),
            gpu("NVIDIA A100-SXM4-80GB", 81920),
        ]);
        s.gpus[2].healthy = false;
        let labels = node_labels(&s, "vision.ai", 4);
        let want: Labels = [
            ("vision.ai/present", "true"),
            ("vision.ai/gpu.count", "3"),
            ("vision.ai/gpu.product", "NVIDIA-A100-SXM4-80GB"),
            ("vision.ai/gpu.memory-mib", "40960"),
            ("vision.ai/slots", "8"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(labels, want);
    }

    #[test]
    fn a_tie_between_gpu_names_goes_to_the_first_gpu() {
        let s = status(vec![gpu("B", 1), gpu("A", 1), gpu("A", 1), gpu("B", 1)]);
        assert_eq!(node_labels(&s, "d", 1)["d/gpu.product"], "B");
    }

    #[test]
    fn an_unusable_gpu_name_reads_unknown() {
        let s = status(vec![gpu("???", 1024)]);
        assert_eq!(node_labels(&s, "d", 1)["d/gpu.product"], UNKNOWN_PRODUCT);
    }

    #[test]
    fn a_node_without_gpus_has_no_product_or_memory_label() {
        let labels = node_labels(&status(vec![]), "d", 8);
        assert_eq!(
            labels.keys().map(String::as_str).collect::<Vec<_>>(),
            ["d/gpu.count", "d/present", "d/slots"]
        );
        assert_eq!(labels["d/slots"], "0");
    }
}
