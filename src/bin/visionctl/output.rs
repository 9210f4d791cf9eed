//! What visionctl prints for scripts (`-o json`) and how it names failures.
//!
//! The daemon's own messages (status, models, leases, watch events) are
//! printed as the proto defines them, field names included. The answers the
//! proto leaves thin (an empty ReleaseResponse, a KeepAliveResponse without
//! its lease) get a shape of their own here that names what was acted on.

use std::fmt;

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use tonic::Code;
use vision_node_daemon::proto::code_name;
use vision_node_daemon::proto::vision::v1 as pb;

/// Why a command failed: a gRPC status code, spelt the way gRPC spells it
/// (`NOT_FOUND`), for the daemon's answers and for visionctl's own failures
/// alike (no daemon: `UNAVAILABLE`; no token: `UNAUTHENTICATED`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: Code,
    pub message: String,
}

impl Failure {
    pub fn new(code: Code, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// `{"error": {"code": "NOT_FOUND", "message": "…"}}`
    pub fn json(&self) -> String {
        serde_json::json!({
            "error": { "code": code_name(self.code), "message": self.message }
        })
        .to_string()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", code_name(self.code), self.message)
    }
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Failure {
        Failure::new(s.code(), s.message())
    }
}

pub fn to_json<T: Serialize>(value: &T) -> Result<String, Failure> {
    serde_json::to_string_pretty(value).map_err(|e| Failure::new(Code::Internal, e.to_string()))
}

/// One watch event on one line: the event's fields beside `seq`, `at_ms`
/// and `missed`, its kind in `type` (`lease_granted`, `model_loaded`, …),
/// and its wall-clock `time` (RFC 3339, UTC) when the daemon sent one.
pub fn to_json_line(ev: &pb::WatchEvent) -> Result<String, Failure> {
    let internal = |e: serde_json::Error| Failure::new(Code::Internal, e.to_string());
    let mut v = serde_json::to_value(ev).map_err(internal)?;
    if let Some(obj) = v.as_object_mut() {
        if let Some(serde_json::Value::Object(body)) = obj.remove("event") {
            obj.extend(body);
        }
        if let Some(t) = wall_clock(ev.time_unix_ms) {
            obj.insert("time".into(), t.to_string().into());
        }
    }
    serde_json::to_string(&v).map_err(internal)
}

/// A Unix time in milliseconds as a timestamp; `None` for 0 (not sent).
pub fn wall_clock(unix_ms: u64) -> Option<Timestamp> {
    if unix_ms == 0 {
        return None;
    }
    Timestamp::from_millisecond(i64::try_from(unix_ms).ok()?).ok()
}

/// `release`: the lease that ended.
#[derive(Debug, Serialize)]
pub struct Released {
    pub lease_id: u64,
}

/// `keepalive`: the lease and its new expiry.
#[derive(Debug, Serialize)]
pub struct KeptAlive {
    pub lease_id: u64,
    pub expires_in_ms: u64,
}

/// `preload`: which model is now resident where.
#[derive(Debug, Serialize)]
pub struct Preloaded {
    pub model: String,
    pub gpu_index: u32,
    pub gpu_uuid: String,
    pub duration_ms: u64,
}

/// A GPU by index and UUID (the index is absent when the daemon's status
/// could not be read).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct GpuRef {
    pub gpu_index: Option<u32>,
    pub gpu_uuid: String,
}

impl GpuRef {
    pub fn from_uuid(uuid: &str, gpus: &[pb::GpuStatus]) -> GpuRef {
        GpuRef {
            gpu_index: gpu_index(uuid, gpus),
            gpu_uuid: uuid.to_owned(),
        }
    }
}

pub fn gpu_index(uuid: &str, gpus: &[pb::GpuStatus]) -> Option<u32> {
    gpus.iter().find(|g| g.uuid == uuid).map(|g| g.index)
}

/// `evict`: the model and the GPUs it left.
#[derive(Debug, Serialize)]
pub struct Evicted {
    pub model: String,
    pub gpus: Vec<GpuRef>,
}

/// `fault`: the GPU and its health now.
#[derive(Debug, Serialize)]
pub struct Faulted {
    pub gpu_index: u32,
    pub gpu_uuid: String,
    pub healthy: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_print_the_grpc_spelling_of_their_code() {
        let f: Failure = tonic::Status::not_found("lease 7 is not held").into();
        assert_eq!(f.to_string(), "NOT_FOUND: lease 7 is not held");
        assert_eq!(
            f.json(),
            r#"{"error":{"code":"NOT_FOUND","message":"lease 7 is not held"}}"#
        );
        let f = Failure::new(Code::DeadlineExceeded, "waited");
        assert_eq!(f.to_string(), "DEADLINE_EXCEEDED: waited");
    }

    #[test]
    fn watch_events_are_flat_json_with_a_snake_case_type() {
        let ev = pb::WatchEvent {
            seq: 4,
            at_ms: 1500,
            time_unix_ms: 1_796_191_200_123,
            missed: 0,
            event: Some(pb::watch_event::Event::ModelLoaded(pb::ModelEvent {
                model: "sd3b".into(),
                gpu_index: 1,
                gpu_uuid: "GPU-1".into(),
                weights_mib: 6000,
                reason: String::new(),
                duration_ms: 800,
            })),
        };
        let v: serde_json::Value = serde_json::from_str(&to_json_line(&ev).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "seq": 4, "at_ms": 1500, "time_unix_ms": 1_796_191_200_123_u64,
                "time": "2026-12-02T06:00:00.123Z", "missed": 0, "type": "model_loaded",
                "model": "sd3b", "gpu_index": 1, "gpu_uuid": "GPU-1",
                "weights_mib": 6000, "reason": "", "duration_ms": 800
            })
        );
    }
}
