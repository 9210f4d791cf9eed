//! Oversized and unknown strings on both sockets (issue 16, item 6): every
//! request string field has a bound and past it the answer is
//! INVALID_ARGUMENT; what the daemon echoes is bounded too, so that grpcio,
//! which drops a `grpc-message` over its metadata limit and reports
//! RESOURCE_EXHAUSTED instead, sees the daemon's own code.

use std::process::Command;

use tonic::Code;
use vision_node_daemon::config::{Config, MAX_MODELS};
use vision_node_daemon::proto::vision::v1 as pb;

use crate::common::*;
use crate::pyenv;

const MIB: usize = 1 << 20;
/// Every status message the daemon sends is at most this long (1 KiB and
/// the `…` that marks a cut).
const MESSAGE_BOUND: usize = 1024 + 3;

/// The dev catalog filled up to the largest allowed, with 63-character names.
fn full_catalog() -> Config {
    let mut c = fast_dev_config();
    let template = c.models[0].clone();
    let mut i = 0;
    while c.models.len() < MAX_MODELS {
        let mut m = template.clone();
        m.name = format!("m{i:0>62}");
        m.weights_mib = 1;
        m.working_mib = 1;
        c.models.push(m);
        i += 1;
    }
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_request_strings_are_invalid_arguments_on_both_sockets() {
    let d = start(fast_dev_config()).await;
    let (mut task, mut admin) = (d.task().await, d.admin().await);
    let huge = "m".repeat(MIB);
    let expect_invalid = |r: Result<_, tonic::Status>, what: &str, field: &str| {
        let e = r.expect_err(what);
        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e:?}");
        assert!(
            e.message().starts_with(&format!("{field} is ")),
            "{what}: {}",
            e.message()
        );
        assert!(e.message().len() < 100, "{what}: the value is not echoed");
    };
    expect_invalid(
        task.admit(admit(&d.token, &huge)).await.map(|_| ()),
        "Admit with a 1 MiB model name",
        "model",
    );
    let mut req = admit(&d.token, "yolo-v8n");
    req.task_type = "t".repeat(100_000);
    expect_invalid(
        task.admit(req).await.map(|_| ()),
        "a 100 KB task type",
        "task_type",
    );
    expect_invalid(
        task.admit(admit(&huge, "yolo-v8n")).await.map(|_| ()),
        "a 1 MiB token",
        "token",
    );
    let token = || huge.clone();
    expect_invalid(
        task.release(pb::ReleaseRequest {
            token: token(),
            lease_id: 1,
        })
        .await
        .map(|_| ()),
        "Release",
        "token",
    );
    expect_invalid(
        task.keep_alive(pb::KeepAliveRequest {
            token: token(),
            lease_id: 1,
        })
        .await
        .map(|_| ()),
        "KeepAlive",
        "token",
    );
    expect_invalid(
        task.status(pb::StatusRequest { token: token() })
            .await
            .map(|_| ()),
        "Status",
        "token",
    );
    expect_invalid(
        task.watch(pb::WatchRequest { token: token() })
            .await
            .map(|_| ()),
        "Watch",
        "token",
    );
    expect_invalid(
        admin
            .preload(pb::PreloadRequest {
                model: huge.clone(),
                gpu: String::new(),
            })
            .await
            .map(|_| ()),
        "Preload with a 1 MiB name",
        "model",
    );
    expect_invalid(
        admin
            .evict(pb::EvictRequest {
                model: "yolo-v8n".into(),
                gpu: huge.clone(),
            })
            .await
            .map(|_| ()),
        "Evict with a 1 MiB GPU",
        "gpu",
    );
    expect_invalid(
        admin
            .set_gpu_fault(pb::SetGpuFaultRequest {
                gpu: "0".into(),
                faulted: true,
                reason: huge.clone(),
            })
            .await
            .map(|_| ()),
        "SetGpuFault with a 1 MiB reason",
        "reason",
    );
    // The daemon still serves, and nothing was changed.
    lease_of(&mut task, admit(&d.token, "yolo-v8n")).await;
    assert!(
        d.daemon
            .node()
            .engine_status()
            .gpus
            .iter()
            .all(|g| g.healthy)
    );
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_model_in_a_full_catalog_is_not_found_with_a_bounded_message() {
    let d = start(full_catalog()).await;
    let mut task = d.task().await;
    let longest = "z".repeat(63);
    let e = task.admit(admit(&d.token, &longest)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().len() <= MESSAGE_BOUND, "{}", e.message().len());
    assert!(
        e.message().contains("more (ListModels lists them all)"),
        "{}",
        e.message()
    );
    // ListModels has them all, under the 4 MiB a stock client accepts.
    let listed = task.list_models(pb::ListModelsRequest {}).await.unwrap();
    assert_eq!(listed.into_inner().models.len(), MAX_MODELS);
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcio_sees_the_daemons_codes_for_oversized_and_unknown_strings() {
    let d = start(full_catalog()).await;
    let stubs = pyenv::stubs("vision/v1/admission.proto");
    let mut cmd = Command::new(pyenv::python());
    cmd.arg(pyenv::repo().join("tests/it/python/oversized.py"))
        .arg(&d.daemon.paths().task_socket)
        .arg(&d.daemon.paths().admin_socket)
        .arg(&d.token)
        .env("PYTHONPATH", stubs.path());
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("python runs"))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let reply: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON from oversized.py ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let calls = &reply["calls"];
    for (call, code) in [
        ("admit_model_1mib", "INVALID_ARGUMENT"),
        ("admit_task_type_100kb", "INVALID_ARGUMENT"),
        ("admit_token_1mib", "INVALID_ARGUMENT"),
        ("release_token_1mib", "INVALID_ARGUMENT"),
        ("admit_unknown_model", "NOT_FOUND"),
        ("preload_model_1mib", "INVALID_ARGUMENT"),
        ("evict_gpu_1mib", "INVALID_ARGUMENT"),
    ] {
        assert_eq!(calls[call]["code"], code, "{call}: {reply}");
        let bytes = calls[call]["details_bytes"].as_u64().unwrap() as usize;
        assert!(bytes > 0 && bytes <= MESSAGE_BOUND, "{call}: {reply}");
    }
    d.daemon.shutdown().await;
}
