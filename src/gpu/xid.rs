//! Which Xid errors make a GPU unhealthy, and what they mean.
//!
//! An Xid is the NVIDIA driver's report of a GPU error (it lands in the
//! kernel log as `NVRM: Xid (PCI:…): 79, …`). Some Xids are caused by one
//! application (a bad kernel, a page fault in user code) and leave the GPU
//! fine for everyone else; marking the GPU unhealthy for those would let any
//! buggy pod take a node's GPU out of service. The rest mean the GPU or its
//! driver state is damaged and it needs a reset.

/// Xids caused by an application, not by the GPU: ignored for health.
///
/// The same list NVIDIA's k8s-device-plugin skips (`applicationErrorXids` in
/// its health checker), so a node behaves the same whichever plugin runs it:
/// - 13: graphics engine exception (a faulting kernel, out-of-range access)
/// - 31: GPU memory page fault (illegal address in user code)
/// - 43: GPU stopped processing (the context was killed after a user error)
/// - 45: preemptive cleanup after a previous error (the process was ended)
/// - 68: video processor (NVDEC) exception from a malformed stream
/// - 109: context switch timeout (a kernel that does not yield)
pub const APPLICATION_XIDS: [u64; 6] = [13, 31, 43, 45, 68, 109];

/// True when the Xid is an application's error and the GPU stays healthy.
pub fn is_application_error(xid: u64) -> bool {
    APPLICATION_XIDS.contains(&xid)
}

/// A short meaning of well-known Xids, for the reason an operator reads in
/// `kubectl describe node`; `None` for the many that have no short name.
pub fn meaning(xid: u64) -> Option<&'static str> {
    Some(match xid {
        13 => "graphics engine exception",
        31 => "GPU memory page fault",
        43 => "GPU stopped processing",
        45 => "preemptive cleanup after a previous error",
        48 => "double-bit ECC error",
        61 => "internal micro-controller breakpoint",
        62 => "internal micro-controller halt",
        63 => "ECC page retirement or row remapping event",
        64 => "ECC page retirement or row remapping failure",
        68 => "video processor exception",
        69 => "graphics engine class error",
        74 => "NVLink error",
        79 => "GPU has fallen off the bus",
        92 => "high single-bit ECC error rate",
        94 => "contained ECC error",
        95 => "uncontained ECC error",
        109 => "context switch timeout",
        119 => "GSP RPC timeout",
        120 => "GSP error",
        _ => return None,
    })
}

/// The health reason for a critical Xid: `Xid 79: GPU has fallen off the bus`.
pub fn reason(xid: u64) -> String {
    match meaning(xid) {
        Some(text) => format!("Xid {xid}: {text}"),
        None => format!("Xid {xid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_xids_are_ignored_and_hardware_xids_are_not() {
        for xid in [13, 31, 43, 45, 68, 109] {
            assert!(is_application_error(xid), "Xid {xid}");
        }
        for xid in [48, 63, 74, 79, 94, 95, 119] {
            assert!(!is_application_error(xid), "Xid {xid}");
        }
    }

    #[test]
    fn reasons_carry_a_meaning_when_one_is_known() {
        assert_eq!(reason(79), "Xid 79: GPU has fallen off the bus");
        assert_eq!(reason(1234), "Xid 1234");
    }
}
