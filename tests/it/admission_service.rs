//! The admission service end to end: a daemon started in-process, clients
//! over its real Unix sockets.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

use crate::common::*;
use pb::admission_client::AdmissionClient;
use pb::watch_event::Event as Body;
use tonic::Code;
use tonic::transport::Channel;
use vision_node_daemon::proto::vision::v1 as pb;

/// One 8000 MiB GPU where `big` and `other` (7000 MiB each with working
/// memory) never fit together: a lease on one makes the other queue.
fn big_and_other() -> vision_node_daemon::config::Config {
    small_config(
        8_000,
        vec![
            model("big", 5_000, 2_000, 1),
            model("other", 5_000, 2_000, 1),
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cold_admission_loads_then_the_next_is_warm() {
    let d = start(fast_dev_config()).await;
    let mut c = d.task().await;
    let first = lease_of(&mut c, admit(&d.token, "yolo-v8n")).await;
    assert!(!first.warm);
    assert_eq!(first.model, "yolo-v8n");
    assert_eq!(first.ttl_ms, 60_000);
    assert!(first.gpu_uuid.starts_with("GPU-"), "{}", first.gpu_uuid);
    release(&mut c, &d.token, first.lease_id).await;
    let second = lease_of(&mut c, admit(&d.token, "yolo-v8n")).await;
    assert!(second.warm);
    assert_eq!(second.gpu_uuid, first.gpu_uuid);
    let status = c
        .status(pb::StatusRequest {
            token: d.token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.leases.len(), 1);
    assert_eq!(status.counters.unwrap().granted_warm, 1);
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_task_socket_shows_only_the_callers_leases_and_the_admin_socket_all() {
    let d = start(fast_dev_config()).await;
    let other_pod = d.allocate(2);
    let mut c = d.task().await;
    c.admit(admit(&d.token, "yolo-v8n")).await.unwrap();
    c.admit(admit(&other_pod, "clip-vit-b32")).await.unwrap();
    let mine = c
        .status(pb::StatusRequest {
            token: d.token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.active_leases, 2);
    assert_eq!(
        mine.leases
            .iter()
            .map(|l| l.model.as_str())
            .collect::<Vec<_>>(),
        ["yolo-v8n"]
    );
    assert_eq!(mine.slots, 16, "dev token: 8 slots × 2 GPUs");
    let all = d
        .admin()
        .await
        .status(pb::StatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.leases.len(), 2);
    assert_eq!(all.gpus.len(), 2);
    assert_eq!(all.gpu_backend, "simulated");
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_status_codes_that_say_what_to_do() {
    let mut cfg = fast_dev_config();
    cfg.models.push(model("giant", 30_000, 1_000, 1)); // no 24 GiB GPU holds it
    let d = start(cfg).await;
    let mut c = d.task().await;

    let e = c.admit(admit(&d.token, "nope")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(
        e.message().contains("yolo-v8n") && e.message().contains("sd3b"),
        "{}",
        e.message()
    );

    let e = c.admit(admit(&d.token, "giant")).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains("31000 MiB") && e.message().contains("24064 MiB"),
        "{}",
        e.message()
    );

    let e = c.admit(admit("", "yolo-v8n")).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("VISION_TOKEN"), "{}", e.message());
    let e = c.admit(admit("forged", "yolo-v8n")).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = c
        .status(pb::StatusRequest {
            token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    let e = c
        .release(pb::ReleaseRequest {
            token: d.token.clone(),
            lease_id: 999,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .keep_alive(pb::KeepAliveRequest {
            token: d.token.clone(),
            lease_id: 999,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    let mut typed = admit(&d.token, "yolo-v8n");
    typed.task_type = "caption".into();
    assert_eq!(
        c.admit(typed).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_node_queues_then_refuses_and_times_out() {
    let mut cfg = big_and_other();
    cfg.admission.queue_limit = 1;
    let d = start(cfg).await;
    let mut c = d.task().await;
    let held = lease_of(&mut c, admit(&d.token, "big")).await;

    // Nothing else fits while `big` is pinned: one waits, the next is refused.
    let mut waiting_client = d.task().await;
    let token = d.token.clone();
    let waiting = tokio::spawn(async move {
        waiting_client
            .admit(with_timeout(admit(&token, "other"), 60_000))
            .await
    });
    let mut watch = d.admin_watch().await;
    next_matching(&mut watch, |b| matches!(b, Body::Queue(q) if q.queued == 1)).await;
    let e = c
        .admit(with_timeout(admit(&d.token, "other"), 60_000))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(
        e.message().contains("queue is full (1 waiting)"),
        "{}",
        e.message()
    );
    let e = c
        .admit(with_timeout(admit(&d.token, "other"), 0))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::ResourceExhausted,
        "timeout 0 never queues: {}",
        e.message()
    );

    // Releasing `big` lets the waiter in (after evicting the idle copy).
    release(&mut c, &d.token, held.lease_id).await;
    let lease = waiting.await.unwrap().unwrap().into_inner().lease.unwrap();
    assert_eq!(lease.model, "other");
    assert!(lease.waited_ms > 0 || !lease.warm);

    // Now `big` cannot get in within 100 ms.
    let e = c
        .admit(with_timeout(admit(&d.token, "big"), 100))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded);
    assert!(e.message().contains("waited"), "{}", e.message());
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_calls_are_refused_on_the_task_socket_and_served_on_the_admin_socket() {
    let d = start(fast_dev_config()).await;
    let mut task = d.task().await;
    let e = task
        .preload(pb::PreloadRequest {
            model: "sd3b".into(),
            gpu: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("admin.sock"), "{}", e.message());
    let e = task
        .evict(pb::EvictRequest {
            model: "sd3b".into(),
            gpu: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    let mut admin = d.admin().await;
    let loaded = admin
        .preload(pb::PreloadRequest {
            model: "sd3b".into(),
            gpu: "1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(loaded.gpu_index, 1);
    let e = admin
        .preload(pb::PreloadRequest {
            model: "sd3b".into(),
            gpu: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    let models = task
        .list_models(pb::ListModelsRequest {})
        .await
        .unwrap()
        .into_inner();
    let sd3 = models.models.iter().find(|m| m.name == "sd3b").unwrap();
    assert_eq!(sd3.resident_on, vec![loaded.gpu_uuid.clone()]);
    let lease = lease_of(&mut task, admit(&d.token, "sd3b")).await;
    assert!(lease.warm, "the preloaded copy serves warm");
    let e = admin
        .evict(pb::EvictRequest {
            model: "sd3b".into(),
            gpu: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::FailedPrecondition,
        "pinned: {}",
        e.message()
    );
    release(&mut task, &d.token, lease.lease_id).await;
    let evicted = admin
        .evict(pb::EvictRequest {
            model: "sd3b".into(),
            gpu: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(evicted.gpu_uuids, vec![loaded.gpu_uuid]);
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sockets_have_their_modes_and_are_removed_at_shutdown() {
    let d = start(fast_dev_config()).await;
    let paths = d.daemon.paths().clone();
    let task = std::fs::metadata(&paths.task_socket).unwrap();
    let admin = std::fs::metadata(&paths.admin_socket).unwrap();
    assert!(task.file_type().is_socket() && admin.file_type().is_socket());
    assert_eq!(task.permissions().mode() & 0o777, 0o666);
    assert_eq!(admin.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        paths.task_socket.parent().unwrap().file_name().unwrap(),
        "pods"
    );
    assert_ne!(
        paths.admin_socket.parent(),
        paths.task_socket.parent(),
        "admin socket is not in the mounted dir"
    );
    let token_mode = std::fs::metadata(&paths.dev_token)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(token_mode, 0o600);
    d.daemon.shutdown().await;
    assert!(!paths.task_socket.exists(), "task socket removed");
    assert!(!paths.admin_socket.exists(), "admin socket removed");
}

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn the_state_dir_and_the_tokens_in_it_are_the_daemons_alone() {
    // As a hostPath DirectoryOrCreate and an older daemon left them: 0755
    // and a world-readable allocations file.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let saved = state.join("allocations.json");
    std::fs::write(&saved, r#"{"version":1,"allocations":[]}"#).unwrap();
    std::fs::set_permissions(&saved, std::fs::Permissions::from_mode(0o644)).unwrap();

    let d = start_in(fast_dev_config(), dir).await;
    let paths = d.daemon.paths().clone();
    assert_eq!(mode_of(&state), 0o700, "state dir");
    assert_eq!(mode_of(&saved), 0o600, "allocations file");
    assert_eq!(mode_of(&paths.dev_token), 0o600, "dev token");
    let pods = paths.task_socket.parent().unwrap();
    assert_eq!(mode_of(pods), 0o755, "pods dir: every pod's user enters it");
    assert_eq!(mode_of(&paths.task_socket), 0o666);
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_daemon_on_the_same_sockets_is_refused() {
    let d = start(fast_dev_config()).await;
    let state = d.daemon.paths().admin_socket.parent().unwrap().to_owned();
    let second = vision_node_daemon::daemon::Daemon::start(vision_node_daemon::daemon::Options {
        config: fast_dev_config(),
        state_dir: state,
        dev_token: false,
        kubelet: kubelet_options(d.dir.path()),
        http_addr: None,
        ready_needs_kubelet: false,
    })
    .await;
    let err = format!("{:#}", second.err().expect("refused"));
    assert!(err.contains("in use") || err.contains("another"), "{err}");
    // The first daemon is untouched.
    d.task()
        .await
        .admit(admit(&d.token, "yolo-v8n"))
        .await
        .unwrap();
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_answers_a_queued_admission_unavailable() {
    let d = start(big_and_other()).await;
    let mut c = d.task().await;
    c.admit(admit(&d.token, "big")).await.unwrap();
    let mut watch = d.admin_watch().await;
    let token = d.token.clone();
    let waiting =
        tokio::spawn(async move { c.admit(with_timeout(admit(&token, "other"), 60_000)).await });
    next_matching(&mut watch, |b| matches!(b, Body::Queue(q) if q.queued == 1)).await;
    d.daemon.shutdown().await;
    let e = waiting.await.unwrap().unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{}", e.message());
    assert!(e.message().contains("shutting down"), "{}", e.message());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_without_keepalive_expires_and_watchers_see_it() {
    let mut cfg = fast_dev_config();
    cfg.admission.lease_ttl = Duration::from_millis(300);
    let d = start(cfg).await;
    let mut c = d.task().await;
    let mut watch = c
        .watch(pb::WatchRequest {
            token: d.token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let lease = lease_of(&mut c, admit(&d.token, "yolo-v8n")).await;
    let kept = c
        .keep_alive(pb::KeepAliveRequest {
            token: d.token.clone(),
            lease_id: lease.lease_id,
        })
        .await
        .unwrap();
    assert!(kept.into_inner().expires_in_ms > 0);
    let ev = next_matching(&mut watch, |b| matches!(b, Body::LeaseExpired(_))).await;
    let Body::LeaseExpired(e) = ev else {
        unreachable!()
    };
    assert_eq!(e.lease.unwrap().lease_id, lease.lease_id);
    let status = c
        .status(pb::StatusRequest {
            token: d.token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.active_leases, 0);
    assert_eq!(status.counters.unwrap().expired, 1);
    let e = c
        .release(pb::ReleaseRequest {
            token: d.token.clone(),
            lease_id: lease.lease_id,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pods_watch_stream_carries_its_own_lease_events_and_node_events_only() {
    let d = start(fast_dev_config()).await;
    let other_pod = d.allocate(1);
    let mut c = d.task().await;
    let mut mine = c
        .watch(pb::WatchRequest {
            token: d.token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let other = lease_of(&mut c, admit(&other_pod, "clip-vit-b32")).await;
    let own = lease_of(&mut c, admit(&d.token, "yolo-v8n")).await;
    let mut granted = Vec::new();
    let mut loaded = Vec::new();
    while granted.is_empty() {
        match next_matching(&mut mine, |b| {
            matches!(b, Body::LeaseGranted(_) | Body::ModelLoaded(_))
        })
        .await
        {
            Body::LeaseGranted(e) => granted.push(e.lease.unwrap().lease_id),
            Body::ModelLoaded(m) => loaded.push(m.model),
            _ => unreachable!(),
        }
    }
    assert_eq!(
        granted,
        vec![own.lease_id],
        "the other pod's lease {} is not shown",
        other.lease_id
    );
    assert!(
        loaded.contains(&"clip-vit-b32".to_string()),
        "node-level model events are shown: {loaded:?}"
    );
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gpu_turning_unhealthy_revokes_its_leases_and_recovers() {
    let d = start(fast_dev_config()).await;
    let mut c = d.task().await;
    let lease = lease_of(&mut c, admit(&d.token, "sd3b")).await;
    let mut watch = c
        .watch(pb::WatchRequest {
            token: d.token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let faults = d
        .daemon
        .faults()
        .expect("simulated GPUs have a fault handle");
    faults
        .set_health(
            lease.gpu_index,
            vision_node_daemon::gpu::Health::Unhealthy("Xid 79: test".into()),
        )
        .unwrap();
    let revoked = next_matching(&mut watch, |b| matches!(b, Body::LeaseRevoked(_))).await;
    let Body::LeaseRevoked(e) = revoked else {
        unreachable!()
    };
    assert_eq!(e.lease.unwrap().lease_id, lease.lease_id);
    assert_eq!(e.reason, "gpu_unhealthy");
    let status = c
        .status(pb::StatusRequest {
            token: d.token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let gpu = &status.gpus[lease.gpu_index as usize];
    assert!(!gpu.healthy && gpu.residents.is_empty(), "{gpu:?}");
    // The other GPU keeps serving; the failed one comes back empty.
    let moved = lease_of(&mut c, admit(&d.token, "sd3b")).await;
    assert_ne!(moved.gpu_index, lease.gpu_index);
    faults
        .set_health(lease.gpu_index, vision_node_daemon::gpu::Health::Healthy)
        .unwrap();
    let back = next_matching(&mut watch, |b| matches!(b, Body::GpuHealth(h) if h.healthy)).await;
    let Body::GpuHealth(h) = back else {
        unreachable!()
    };
    assert_eq!(h.gpu_index, lease.gpu_index);
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_caller_that_gives_up_leaves_the_queue() {
    let d = start(big_and_other()).await;
    let mut c = d.task().await;
    c.admit(admit(&d.token, "big")).await.unwrap();
    let mut watch = d.admin_watch().await;
    // The server would wait 60 s; the client's own gRPC deadline is 300 ms.
    let mut req = tonic::Request::new(with_timeout(admit(&d.token, "other"), 60_000));
    req.set_timeout(Duration::from_millis(300));
    let e = c.admit(req).await.unwrap_err();
    // tonic's server answers an expired grpc-timeout with CANCELLED.
    assert!(
        matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{e:?}"
    );
    next_matching(&mut watch, |b| matches!(b, Body::Queue(q) if q.queued == 1)).await;
    next_matching(&mut watch, |b| matches!(b, Body::Queue(q) if q.queued == 0)).await;
    let status = d
        .admin()
        .await
        .status(pb::StatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.counters.unwrap().outcomes["cancelled"], 1);
    d.daemon.shutdown().await;
}

/// Callers killed while they wait (their connections dropped, no deadline,
/// no goodbye), all at once: every ticket leaves the queue, each counted as
/// cancelled, and the node serves the next caller as if they never came.
/// One storm in CI, 25 in the fault suite's long mode.
#[tokio::test(flavor = "multi_thread")]
async fn a_storm_of_callers_killed_while_waiting_leaves_the_queue_empty_and_the_node_serving() {
    const CALLERS: usize = 64;
    let storms = crate::fault_suite::scale(1, 25);
    let mut cfg = big_and_other();
    cfg.admission.per_pod_queue_limit = CALLERS;
    let d = start(cfg).await;
    let mut c = d.task().await;
    let big = lease_of(&mut c, admit(&d.token, "big")).await;
    let mut watch = d.admin_watch().await;
    for _ in 0..storms {
        let mut callers = d.waiting_callers(&d.token, "other", CALLERS).await;
        next_matching(
            &mut watch,
            |b| matches!(b, Body::Queue(q) if q.queued as usize == CALLERS),
        )
        .await;
        // Killed: their futures and connections dropped mid-call.
        callers.abort_all();
        while callers.join_next().await.is_some() {}
        next_matching(&mut watch, |b| matches!(b, Body::Queue(q) if q.queued == 0)).await;
    }
    let status = admin_status(&d).await;
    assert_eq!(
        status.counters.unwrap().outcomes["cancelled"],
        (storms * CALLERS) as u64
    );
    // Nothing of theirs is left: the memory goes to the next caller.
    release(&mut c, &d.token, big.lease_id).await;
    let next = lease_of(&mut c, admit(&d.token, "other")).await;
    assert_eq!(next.model, "other");
    d.daemon.shutdown().await;
}

fn fault(gpu: &str, faulted: bool, reason: &str) -> pb::SetGpuFaultRequest {
    pb::SetGpuFaultRequest {
        gpu: gpu.into(),
        faulted,
        reason: reason.into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn set_gpu_fault_on_the_admin_socket_revokes_that_gpus_leases_like_a_real_fault() {
    let d = start(fast_dev_config()).await;
    let mut c = d.task().await;
    let lease = lease_of(&mut c, admit(&d.token, "yolo-v8n")).await;
    let mut watch = c
        .watch(pb::WatchRequest {
            token: d.token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut admin = d.admin().await;
    let r = admin
        .set_gpu_fault(fault(&lease.gpu_uuid, true, "Xid 79: from a test"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.gpu_index, r.gpu_uuid.as_str()),
        (lease.gpu_index, lease.gpu_uuid.as_str())
    );
    let Body::GpuHealth(h) = next_matching(&mut watch, |b| matches!(b, Body::GpuHealth(_))).await
    else {
        unreachable!()
    };
    assert_eq!((h.gpu_index, h.healthy), (lease.gpu_index, false));
    assert_eq!(h.reason, "Xid 79: from a test");
    let Body::LeaseRevoked(e) =
        next_matching(&mut watch, |b| matches!(b, Body::LeaseRevoked(_))).await
    else {
        unreachable!()
    };
    assert_eq!(e.lease.unwrap().lease_id, lease.lease_id);
    assert_eq!(e.reason, "gpu_unhealthy");
    // The holder's next KeepAlive says the lease is gone.
    let gone = c
        .keep_alive(pb::KeepAliveRequest {
            token: d.token.clone(),
            lease_id: lease.lease_id,
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");

    // By index, and back to healthy; a default reason when none is given.
    let index = lease.gpu_index.to_string();
    admin.set_gpu_fault(fault(&index, false, "")).await.unwrap();
    let Body::GpuHealth(h) =
        next_matching(&mut watch, |b| matches!(b, Body::GpuHealth(h) if h.healthy)).await
    else {
        unreachable!()
    };
    assert_eq!(h.gpu_index, lease.gpu_index);
    admin.set_gpu_fault(fault(&index, true, "")).await.unwrap();
    let Body::GpuHealth(h) = next_matching(
        &mut watch,
        |b| matches!(b, Body::GpuHealth(h) if !h.healthy),
    )
    .await
    else {
        unreachable!()
    };
    assert_eq!(h.reason, "injected fault");
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn set_gpu_fault_refuses_pods_unknown_gpus_and_oversized_reasons() {
    let d = start(fast_dev_config()).await;
    let refused = d
        .task()
        .await
        .set_gpu_fault(fault("0", true, ""))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("admin socket"), "{refused:?}");
    let mut admin = d.admin().await;
    for (gpu, reason, what) in [
        ("7", "", "unknown GPU"),
        ("GPU-nope", "", "unknown GPU"),
        ("", "", "gpu is required"),
        ("0", &"x".repeat(257) as &str, "at most 256"),
    ] {
        let e = admin
            .set_gpu_fault(fault(gpu, true, reason))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{gpu:?}: {e:?}");
        assert!(e.message().contains(what), "{gpu:?}: {e:?}");
    }
    // Nothing was faulted along the way.
    let status = admin
        .status(pb::StatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(status.gpus.iter().all(|g| g.healthy), "{status:?}");
    d.daemon.shutdown().await;
}

// Without simulated GPUs SetGpuFault is a FAILED_PRECONDITION: a unit test
// of the service (src/service/grpc.rs), which builds it as a daemon on NVML
// GPUs does.

/// A task-socket connection whose HTTP/2 stream window is the protocol's
/// minimum, so a stream the test does not read backs up into the daemon
/// after ~64 KiB instead of the client's default megabytes. The connection
/// window stays large: h2's client tears down a connection whose unread
/// small DATA frames outgrow half of it (its "too_many_data_frames" guard).
async fn narrow_task_connection(d: &Running) -> AdmissionClient<Channel> {
    let path = d.daemon.paths().task_socket.clone();
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .initial_stream_window_size(Some(65_535))
        .initial_connection_window_size(Some(1 << 20))
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .expect("task socket");
    AdmissionClient::new(channel)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_never_read_does_not_hold_admission_back_and_is_told_what_it_missed() {
    let d = start(fast_dev_config()).await;
    let mut stuck = narrow_task_connection(&d)
        .await
        .watch(pb::WatchRequest {
            token: d.token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    // Thousands of events for this pod while its stream is never read: far
    // more than the HTTP/2 windows, the stream's queue and the pod's channel
    // hold. Admission must not wait for the reader.
    let mut c = d.task().await;
    const PAIRS: usize = 1_200;
    let mut last = 0;
    let pairs = async {
        for _ in 0..PAIRS {
            let lease = lease_of(&mut c, admit(&d.token, "yolo-v8n")).await;
            release(&mut c, &d.token, lease.lease_id).await;
            last = lease.lease_id;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), pairs)
        .await
        .expect("admission carries on while a Watch stream is stuck");

    // Now read: events arrive in order, and the first after the gap says how
    // many were lost, so a client knows to re-read Status.
    let (mut missed, mut delivered, mut prev) = (0u64, 0u64, None);
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), stuck.message())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .expect("the stream stays open");
        assert!(prev < Some(ev.seq), "in order");
        prev = Some(ev.seq);
        missed += ev.missed;
        delivered += 1;
        if matches!(&ev.event, Some(Body::LeaseReleased(e))
            if e.lease.as_ref().is_some_and(|l| l.lease_id == last))
        {
            break;
        }
    }
    assert!(missed > 0, "a gap was reported (delivered {delivered})");
    assert!(
        delivered + missed >= 2 * PAIRS as u64,
        "every event of the pod was either delivered or counted as missed: \
         {delivered} + {missed}"
    );
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_over_its_watch_streams_is_refused_naming_its_limit_and_another_pod_is_not() {
    let mut cfg = fast_dev_config();
    cfg.admission.watch_streams_per_pod = 2;
    let d = start(cfg).await;
    let other_pod = d.allocate(1);
    let mut c = d.task().await;
    let watch = |token: &str| pb::WatchRequest {
        token: token.to_owned(),
    };
    // Each stream is open once its first event (the queue depth) arrives.
    let mut first = c.watch(watch(&d.token)).await.unwrap().into_inner();
    first.message().await.unwrap().expect("opening event");
    let mut second = c.watch(watch(&d.token)).await.unwrap().into_inner();
    second.message().await.unwrap().expect("opening event");

    let e = c.watch(watch(&d.token)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(
        e.message().contains("2 Watch streams")
            && e.message().contains("admission.watch_streams_per_pod"),
        "names the limit and its key: {}",
        e.message()
    );

    // Another pod still opens its streams, and they carry its events.
    let mut theirs = c.watch(watch(&other_pod)).await.unwrap().into_inner();
    theirs.message().await.unwrap().expect("opening event");
    let lease = lease_of(&mut c, admit(&other_pod, "clip-vit-b32")).await;
    match next_matching(&mut theirs, |b| matches!(b, Body::LeaseGranted(_))).await {
        Body::LeaseGranted(g) => assert_eq!(g.lease.unwrap().lease_id, lease.lease_id),
        _ => unreachable!(),
    }
    // The admin socket's Watch is not a pod's and is not counted.
    d.admin_watch().await;

    // Closing one of the pod's streams gives its place back once the daemon
    // sees the stream reset (each try is a real Watch call).
    drop(first);
    let reopened = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match c.watch(watch(&d.token)).await {
                Ok(s) => break s,
                Err(e) => {
                    assert_eq!(e.code(), Code::ResourceExhausted);
                    tokio::task::yield_now().await;
                }
            }
        }
    })
    .await
    .expect("the closed stream's place comes back");
    drop(reopened);
    drop(second);
    d.daemon.shutdown().await;
}
