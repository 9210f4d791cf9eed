//! Losing and regaining Triton (`node::reach`), against a real Triton
//! Inference Server: killed (a crash: it comes back empty), frozen with
//! SIGSTOP (alive and holding its models, answering nothing), and changed
//! behind the daemon's back.

use std::time::Duration;

use tonic::Code;
use tonic::transport::Channel;
use vision_node_daemon::config::Config;
use vision_node_daemon::daemon::{Daemon, Options};
use vision_node_daemon::proto::inference as tpb;
use vision_node_daemon::proto::vision::v1 as pb;

use crate::common::*;
use crate::triton_support::{
    ModelDef, TRITONS, Triton, admin_status, assert_expected, config, infer, ledger_is_empty,
    loaded_lines,
};

/// Checks Triton every 200 ms (the default is 2 s).
fn watched(mut c: Config) -> Config {
    c.runtime.health_interval = Duration::from_millis(200);
    c
}

/// A daemon whose `/readyz` needs no kubelet (there is none here).
async fn start_ready(config: Config) -> Running {
    let dir = tempfile::tempdir().expect("temp dir");
    let daemon = Daemon::start(Options {
        config,
        state_dir: dir.path().join("state"),
        dev_token: true,
        kubelet: kubelet_options(dir.path()),
        http_addr: Some("127.0.0.1:0".parse().expect("address")),
        ready_needs_kubelet: false,
    })
    .await
    .expect("daemon starts");
    let token = daemon.dev_token().expect("dev token").to_owned();
    Running { daemon, dir, token }
}

/// Every event, from the admin socket.
/// The next runtime event saying `reachable`.
async fn runtime_event(
    events: &mut tonic::Streaming<pb::WatchEvent>,
    reachable: bool,
) -> pb::RuntimeEvent {
    let ev = next_matching(
        events,
        |e| matches!(e, pb::watch_event::Event::Runtime(r) if r.reachable == reachable),
    )
    .await;
    let pb::watch_event::Event::Runtime(r) = ev else {
        unreachable!("matched above")
    };
    r
}

async fn keep_alive(
    c: &mut AdmissionClient<Channel>,
    token: &str,
    lease_id: u64,
) -> Result<pb::KeepAliveResponse, tonic::Status> {
    c.keep_alive(pb::KeepAliveRequest {
        token: token.into(),
        lease_id,
    })
    .await
    .map(tonic::Response::into_inner)
}

fn residents(s: &pb::StatusResponse) -> Vec<(String, u32)> {
    s.gpus
        .iter()
        .flat_map(|g| g.residents.iter().map(|r| (r.model.clone(), r.pins)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn triton_killed_mid_load_answers_the_waiters_at_once_and_the_daemon_recovers_when_it_restarts()
 {
    let _slot = TRITONS.acquire().await.unwrap();
    let mut triton =
        Triton::start(&[ModelDef::slow("slow", 60.0), ModelDef::cpu("tiny_onnx")]).await;
    let models = [("slow", "slow"), ("yolo-v8n", "tiny_onnx")];
    let d = start_ready(watched(config(&triton, 4096, &models))).await;
    let http = d.daemon.http_addr().expect("http");
    let mut events = d.admin_watch().await;
    assert_eq!(http_get(http, "/readyz").await.0, 200);
    let mut c = d.task().await;

    let waiting = {
        let mut c = c.clone();
        let req = admit(&d.token, "slow");
        tokio::spawn(async move { c.admit(req).await })
    };
    triton.wait_state("slow", "LOADING").await;
    triton.kill();
    // The guard only fails the test; the load itself had a minute to go.
    let e = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the waiter is answered when Triton dies")
        .expect("task")
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(
        e.message().contains("unreachable") || e.message().contains("lost"),
        "{}",
        e.message()
    );
    let lost = runtime_event(&mut events, false).await;
    assert_eq!(lost.kind, "triton");

    // While it is gone nothing is admitted: refused at once, saying why.
    let e = c.admit(admit(&d.token, "yolo-v8n")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(
        e.message()
            .contains("the model runtime (triton) is unreachable"),
        "{}",
        e.message()
    );
    let (code, body) = http_get(http, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("model runtime is unreachable"), "{body}");
    let (_, metrics) = http_get(http, "/metrics").await;
    assert_eq!(
        sample(&metrics, r#"vision_runtime_up{runtime="triton"}"#),
        Some(0.0)
    );
    assert!(sample(&metrics, "vision_runtime_unavailable_total").is_some_and(|n| n >= 1.0));
    let s = admin_status(&d).await;
    assert!(ledger_is_empty(&s), "nothing leaked: {s:?}");
    let runtime = s.runtime.expect("runtime status");
    assert!(!runtime.reachable);
    assert!(!runtime.reason.is_empty());

    triton.restart().await;
    let back = runtime_event(&mut events, true).await;
    assert_eq!(
        (back.adopted, back.dropped),
        (0, 0),
        "a restarted Triton holds nothing"
    );
    assert_eq!(http_get(http, "/readyz").await.0, 200);
    let lease = lease_of(&mut c, admit(&d.token, "yolo-v8n")).await;
    assert!(!lease.warm);
    assert_expected(
        &infer(&lease.runtime_endpoint, &lease.runtime_model)
            .await
            .expect("infer"),
    );
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_held_when_triton_dies_stays_valid_and_is_revoked_when_triton_returns_without_its_copy()
 {
    let _slot = TRITONS.acquire().await.unwrap();
    let mut triton = Triton::start(&[ModelDef::cpu("first"), ModelDef::cpu("second")]).await;
    let models = [("first", "first"), ("second", "second")];
    let d = start_ready(watched(config(&triton, 4096, &models))).await;
    let mut events = d.admin_watch().await;
    let mut c = d.task().await;
    // An idle copy, and a pod with one slot holding a lease on the other.
    let idle = lease_of(&mut c, admit(&d.token, "second")).await;
    release(&mut c, &d.token, idle.lease_id).await;
    let pod = d.allocate(1);
    let mut pod_events = c
        .watch(pb::WatchRequest { token: pod.clone() })
        .await
        .expect("watch")
        .into_inner();
    let held = lease_of(&mut c, admit(&pod, "first")).await;
    // Its next admission waits for its slot.
    let queued = {
        let mut c = c.clone();
        let req = with_timeout(admit(&pod, "second"), 60_000);
        tokio::spawn(async move { c.admit(req).await })
    };
    next_matching(
        &mut events,
        |e| matches!(e, pb::watch_event::Event::Queue(q) if q.queued == 1),
    )
    .await;

    triton.kill();
    runtime_event(&mut events, false).await;
    let e = tokio::time::timeout(Duration::from_secs(30), queued)
        .await
        .expect("the queued admission is answered")
        .expect("task")
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("is unreachable"), "{}", e.message());
    let s = admin_status(&d).await;
    assert_eq!(
        residents(&s),
        [("first".to_owned(), 1)],
        "the idle copy left the ledger; the held one stays"
    );
    keep_alive(&mut c, &pod, held.lease_id)
        .await
        .expect("the lease stays valid while Triton is unreachable");

    triton.restart().await;
    let back = runtime_event(&mut events, true).await;
    assert_eq!((back.adopted, back.dropped), (0, 1));
    let revoked = next_matching(&mut pod_events, |e| {
        matches!(e, pb::watch_event::Event::LeaseRevoked(_))
    })
    .await;
    let pb::watch_event::Event::LeaseRevoked(revoked) = revoked else {
        unreachable!()
    };
    assert_eq!(revoked.reason, "runtime_lost");
    assert_eq!(revoked.lease.expect("lease").lease_id, held.lease_id);
    let e = keep_alive(&mut c, &pod, held.lease_id).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let s = admin_status(&d).await;
    assert!(ledger_is_empty(&s), "{s:?}");
    // The model loads again for the next task.
    let again = lease_of(&mut c, admit(&pod, "first")).await;
    assert!(!again.warm);
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_triton_is_lost_and_when_it_thaws_its_models_are_adopted_without_a_reload() {
    let _slot = TRITONS.acquire().await.unwrap();
    let triton = Triton::start(&[ModelDef::cpu("first"), ModelDef::cpu("second")]).await;
    let models = [("first", "first"), ("second", "second")];
    let d = start_ready(watched(config(&triton, 4096, &models))).await;
    let mut events = d.admin_watch().await;
    let mut c = d.task().await;
    let held = lease_of(&mut c, admit(&d.token, "first")).await;
    let idle = lease_of(&mut c, admit(&d.token, "second")).await;
    release(&mut c, &d.token, idle.lease_id).await;

    triton.freeze();
    let lost = runtime_event(&mut events, false).await;
    assert!(lost.reason.contains("no answer"), "{}", lost.reason);
    assert_eq!(
        residents(&admin_status(&d).await),
        [("first".to_owned(), 1)]
    );
    keep_alive(&mut c, &d.token, held.lease_id)
        .await
        .expect("still valid");

    triton.thaw();
    let back = runtime_event(&mut events, true).await;
    assert_eq!(
        (back.adopted, back.dropped),
        (1, 0),
        "second adopted, first confirmed"
    );
    keep_alive(&mut c, &d.token, held.lease_id)
        .await
        .expect("confirmed: the lease never broke");
    assert_expected(
        &infer(&held.runtime_endpoint, &held.runtime_model)
            .await
            .expect("the held copy serves"),
    );
    let warm = lease_of(&mut c, admit(&d.token, "second")).await;
    assert!(warm.warm, "the adopted copy serves warm");
    for m in ["first", "second"] {
        assert_eq!(
            loaded_lines(&triton, "loaded", m),
            1,
            "{m} was never reloaded: {:?}",
            triton.journal()
        );
    }
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn models_unloaded_or_loaded_behind_the_daemons_back_are_reconciled() {
    let _slot = TRITONS.acquire().await.unwrap();
    let triton = Triton::start(&[ModelDef::cpu("tiny_onnx"), ModelDef::cpu("other")]).await;
    let mut cfg = config(
        &triton,
        4096,
        &[("yolo-v8n", "tiny_onnx"), ("other", "other")],
    );
    cfg.runtime.reconcile_interval = Duration::from_millis(300);
    let d = start_ready(watched(cfg)).await;
    let mut events = d.admin_watch().await;
    let mut c = d.task().await;
    let lease = lease_of(&mut c, admit(&d.token, "yolo-v8n")).await;
    release(&mut c, &d.token, lease.lease_id).await;

    let mut t = triton.client().await;
    t.repository_model_unload(tpb::RepositoryModelUnloadRequest {
        model_name: "tiny_onnx".into(),
        ..Default::default()
    })
    .await
    .expect("someone unloads it in Triton");
    let gone = next_matching(
        &mut events,
        |e| matches!(e, pb::watch_event::Event::ModelEvicted(m) if m.model == "yolo-v8n"),
    )
    .await;
    let pb::watch_event::Event::ModelEvicted(gone) = gone else {
        unreachable!()
    };
    assert_eq!(gone.reason, "runtime_lost");
    let drift = |e: &pb::watch_event::Event| match e {
        pb::watch_event::Event::Runtime(r) if r.drifted => Some((r.adopted, r.dropped)),
        _ => None,
    };
    let said = next_matching(&mut events, |e| drift(e).is_some()).await;
    assert_eq!(drift(&said), Some((0, 1)), "watchers are told of the drift");
    assert!(ledger_is_empty(&admin_status(&d).await));

    t.repository_model_load(tpb::RepositoryModelLoadRequest {
        model_name: "other".into(),
        ..Default::default()
    })
    .await
    .expect("someone loads a catalog model in Triton");
    let said = next_matching(&mut events, |e| drift(e).is_some()).await;
    assert_eq!(drift(&said), Some((1, 0)), "adopted, and watchers are told");
    assert_eq!(residents(&admin_status(&d).await).len(), 1);
    let warm = lease_of(&mut c, admit(&d.token, "other")).await;
    assert!(warm.warm, "adopted, it serves warm");
    d.daemon.shutdown().await;
}
