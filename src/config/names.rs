//! Name rules the cluster imposes: DNS subdomains for the node and the
//! resource domain, DNS-label-like model names.
//!
//! Checked at load time because the cluster would reject them much later and
//! far from the config: a bad domain makes every device-plugin registration
//! fail, a bad model name ends up in node annotations and metric labels.

/// Why `s` is not an RFC 1123 DNS subdomain (what Kubernetes requires of node
/// names and of the prefix of label keys and extended resource names), or
/// `None` if it is one.
pub(crate) fn dns_subdomain_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if s.len() > 253 {
        return Some(format!(
            "is {} characters long; a DNS subdomain has at most 253",
            s.len()
        ));
    }
    for label in s.split('.') {
        if label.is_empty() {
            return Some(format!(
                "`{s}` has an empty label (`..`, or a leading or trailing dot)"
            ));
        }
        if label.len() > 63 {
            return Some(format!(
                "`{s}` has a label of {} characters; a DNS label has at most 63",
                label.len()
            ));
        }
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        let starts_ok = label.starts_with(alnum);
        let ends_ok = label.ends_with(alnum);
        if !label.chars().all(allowed) || !starts_ok || !ends_ok {
            return Some(format!(
                "`{s}` is not a valid DNS subdomain: use lower-case letters, digits, '-' and '.', \
                 each dot-separated part starting and ending with a letter or digit"
            ));
        }
    }
    None
}

/// Why `domain` cannot prefix `<domain>/slot` and `<domain>/vram`, or `None`.
///
/// Beyond being a DNS subdomain, Kubernetes reserves `kubernetes.io` (and its
/// subdomains) for native resources: an extended resource there is refused.
pub(crate) fn resource_domain_problem(domain: &str) -> Option<String> {
    if let Some(problem) = dns_subdomain_problem(domain) {
        return Some(problem);
    }
    if domain == "kubernetes.io" || domain.ends_with(".kubernetes.io") {
        return Some(format!(
            "`{domain}` is reserved by Kubernetes for native resources; use your own domain, e.g. `vision.ai`"
        ));
    }
    None
}

/// The longest model name: a DNS label-sized slot.
pub const MAX_MODEL_NAME_BYTES: usize = 63;

/// The longest task type (callers send it with every Admit; it is echoed
/// in errors).
pub const MAX_TASK_TYPE_BYTES: usize = 63;

/// Why `task_type` cannot be a model's task type, or `None`.
pub(crate) fn task_type_problem(task_type: &str) -> Option<String> {
    if task_type.trim().is_empty() {
        return Some("must not be empty".to_owned());
    }
    if task_type.len() > MAX_TASK_TYPE_BYTES {
        return Some(format!(
            "is {} bytes long; a task type has at most {MAX_TASK_TYPE_BYTES}",
            task_type.len()
        ));
    }
    None
}

/// Why `name` is not a valid model name, or `None`.
///
/// `[a-z0-9]([-a-z0-9._]*[a-z0-9])?`, at most 63 characters: it must fit a
/// DNS label-sized slot in annotations and metric labels, and `.`/`_` are
/// allowed for version suffixes (`clip-vit-b32.v2`).
pub(crate) fn model_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if name.len() > MAX_MODEL_NAME_BYTES {
        return Some(format!(
            "`{name}` is {} characters long; a model name has at most {MAX_MODEL_NAME_BYTES}",
            name.len()
        ));
    }
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let allowed = |c: char| alnum(c) || matches!(c, '-' | '.' | '_');
    if !name.chars().all(allowed) || !name.starts_with(alnum) || !name.ends_with(alnum) {
        return Some(format!(
            "`{name}` is not a valid model name: use lower-case letters, digits, '-', '.' and '_', \
             starting and ending with a letter or digit"
        ));
    }
    None
}

/// Why `name` cannot be a Triton model name, or `None`.
///
/// A Triton model is a directory of the model repository, named in gRPC
/// calls and in URL paths of Triton's HTTP API: no path separators, no
/// whitespace or control characters, not `.`/`..`, at most 255 bytes.
pub(crate) fn triton_model_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if name.len() > 255 {
        return Some(format!(
            "is {} bytes long; a directory name has at most 255",
            name.len()
        ));
    }
    if name == "." || name == ".." || name.contains(['/', '\\']) {
        return Some(format!(
            "`{name}` is not a directory name of the model repository"
        ));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!(
            "`{name}` contains whitespace or control characters; Triton's HTTP API puts the name in URL paths"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triton_model_names_are_plain_directory_names() {
        for ok in ["yolov8n_onnx", "clip-ViT.B32", "a"] {
            assert_eq!(triton_model_name_problem(ok), None, "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "tab\there", &"x".repeat(256)] {
            assert!(triton_model_name_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn ordinary_node_names_and_domains_are_dns_subdomains() {
        for ok in [
            "gpu-node-1",
            "vision.ai",
            "ip-10-0-0-1.ec2.internal",
            "a",
            "0",
        ] {
            assert_eq!(dns_subdomain_problem(ok), None, "{ok}");
        }
    }

    #[test]
    fn malformed_subdomains_are_rejected() {
        for bad in [
            "",
            "Vision.ai",
            "a..b",
            ".a",
            "a.",
            "-a",
            "a-",
            "a_b",
            "a b",
        ] {
            assert!(dns_subdomain_problem(bad).is_some(), "{bad:?}");
        }
        assert!(dns_subdomain_problem(&"a".repeat(64)).is_some());
        let long = vec!["a".repeat(60); 5].join(".");
        assert!(
            dns_subdomain_problem(&long)
                .unwrap()
                .contains("at most 253")
        );
    }

    #[test]
    fn the_kubernetes_io_domain_is_reserved() {
        assert!(resource_domain_problem("kubernetes.io").is_some());
        assert!(resource_domain_problem("gpu.kubernetes.io").is_some());
        assert_eq!(resource_domain_problem("notkubernetes.io"), None);
        assert_eq!(resource_domain_problem("vision.ai"), None);
    }

    #[test]
    fn model_names_allow_dots_and_underscores_inside() {
        for ok in ["yolo-v8n", "clip-vit-b32", "sd3b", "a", "m_1.v2"] {
            assert_eq!(model_name_problem(ok), None, "{ok}");
        }
        for bad in ["", "YOLO", "-a", "a-", "a.", "_a", "a/b", "a b"] {
            assert!(model_name_problem(bad).is_some(), "{bad:?}");
        }
        assert!(model_name_problem(&"a".repeat(64)).is_some());
        assert_eq!(model_name_problem(&"a".repeat(63)), None);
    }
}
