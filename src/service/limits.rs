//! Bounds on what callers send and on what we say back.
//!
//! A string field longer than any valid value can be is refused with
//! INVALID_ARGUMENT before it reaches the node, naming the field and the
//! bound. Every status message is then clipped at the edge, and lists we
//! echo (the catalog, a model's task types) are cut short: whatever the
//! input, a `grpc-message` header stays far below a client's metadata limit
//! (grpcio's is 8 KiB soft, 16 KiB hard; over it grpcio drops the message
//! and reports RESOURCE_EXHAUSTED instead of our code — issue 16, item 6).

use std::borrow::Cow;
use std::fmt::Write;

use tonic::Status;

use crate::config::{MAX_MODEL_NAME_BYTES, MAX_TASK_TYPE_BYTES};

/// Tokens are 32 hex characters; twice that leaves room for a future format.
pub(super) const MAX_TOKEN_BYTES: usize = 64;
/// Model names (the catalog's rule).
pub(super) const MAX_MODEL_BYTES: usize = MAX_MODEL_NAME_BYTES;
/// Task types (the catalog's rule).
pub(super) const MAX_TASK_BYTES: usize = MAX_TASK_TYPE_BYTES;
/// A GPU UUID (NVML's are 40 bytes, MIG's longer) or an index.
pub(super) const MAX_GPU_BYTES: usize = 128;
/// `SetGpuFault`'s reason (echoed in events and logs).
pub(super) const MAX_REASON_BYTES: usize = 256;
/// The longest status message sent. Percent-encoding at most triples it.
pub(super) const MAX_MESSAGE_BYTES: usize = 1024;
/// Names listed in a message before "… and N more".
const MAX_LISTED: usize = 12;

/// Refuses `value` for the field `name` when it is longer than `max` bytes.
pub(super) fn field(name: &str, value: &str, max: usize) -> Result<(), Status> {
    if value.len() <= max {
        return Ok(());
    }
    Err(Status::invalid_argument(format!(
        "{name} is {} bytes; at most {max} are accepted",
        value.len()
    )))
}

/// `s` cut to at most `max` bytes at a character boundary, marked with `…`
/// when cut (for spans and logs, which see requests before they are checked).
pub(super) fn clip(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &s[..end]))
}

/// The same status with its message clipped to [`MAX_MESSAGE_BYTES`].
pub(super) fn bounded(status: Status) -> Status {
    if status.message().len() <= MAX_MESSAGE_BYTES {
        return status;
    }
    let message = clip(status.message(), MAX_MESSAGE_BYTES).into_owned();
    Status::new(status.code(), message)
}

/// `names` quoted and comma-separated, the first [`MAX_LISTED`] only, then
/// how many more there are and where to see them all.
pub(super) fn listing(names: &[String], all_in: &str) -> String {
    let mut out = String::new();
    for (i, n) in names.iter().take(MAX_LISTED).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{:?}", clip(n, MAX_MODEL_BYTES));
    }
    if names.len() > MAX_LISTED {
        let _ = write!(
            out,
            " … and {} more ({all_in} lists them all)",
            names.len() - MAX_LISTED
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_over_its_bound_is_an_invalid_argument_naming_it() {
        assert!(field("model", "yolo", MAX_MODEL_BYTES).is_ok());
        let e = field("model", &"m".repeat(1 << 20), MAX_MODEL_BYTES).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            e.message(),
            "model is 1048576 bytes; at most 63 are accepted"
        );
    }

    #[test]
    fn clipping_keeps_whole_characters() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("ééé", 3), "é…", "never half a character");
        let s = bounded(Status::not_found("x".repeat(100_000)));
        assert_eq!(s.code(), tonic::Code::NotFound);
        assert!(s.message().len() <= MAX_MESSAGE_BYTES + '…'.len_utf8());
    }

    #[test]
    fn long_lists_say_how_many_more_and_where() {
        let names: Vec<String> = (0..1000).map(|i| format!("model-{i}")).collect();
        let text = listing(&names, "ListModels");
        assert!(text.starts_with("\"model-0\", \"model-1\""), "{text}");
        assert!(
            text.ends_with("… and 988 more (ListModels lists them all)"),
            "{text}"
        );
        assert_eq!(
            listing(&names[..2], "ListModels"),
            "\"model-0\", \"model-1\""
        );
    }
}
