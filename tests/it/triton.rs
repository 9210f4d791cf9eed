//! The Triton runtime against a real Triton Inference Server (tritonserver
//! 2.51 from PyPI, on the CPU, explicit model control), through the daemon
//! where the shell drives it and through the runtime where a test needs
//! what the shell cannot yet do (two copies, in-flight inferences).
//! `.ci/triton-setup` installs the server on first use.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::*;
use crate::triton_support::{
    ModelDef, TRITONS, Triton, admin_status, assert_expected, config, infer, infer_with,
    ledger_is_empty, loaded_lines,
};
use tokio::time::Instant;
use tonic::Code;
use vision_node_daemon::proto::inference as tpb;
use vision_node_daemon::runtime::triton::{Placement, Settings, TritonRuntime};
use vision_node_daemon::runtime::{LoadRequest, ModelRuntime, UnloadReason};

#[tokio::test(flavor = "multi_thread")]
async fn a_cold_admit_loads_the_model_in_triton_which_serves_the_lease_and_keeps_it_after_release()
{
    let _slot = TRITONS.acquire().await.unwrap();
    let triton = Triton::start(&[ModelDef::cpu("tiny_onnx")]).await;
    let d = start(config(&triton, 4096, &[("yolo-v8n", "tiny_onnx")])).await;
    let mut c = d.task().await;

    let lease = lease_of(&mut c, admit(&d.token, "yolo-v8n")).await;
    assert!(!lease.warm);
    assert_eq!(triton.state("tiny_onnx").await, "READY");
    assert_eq!(lease.runtime_endpoint, triton.endpoint());
    assert_eq!(
        lease.runtime_model, "tiny_onnx",
        "the lease names Triton's model"
    );
    let out = infer(&lease.runtime_endpoint, &lease.runtime_model)
        .await
        .expect("ModelInfer through the lease's endpoint");
    assert_expected(&out);

    release(&mut c, &d.token, lease.lease_id).await;
    assert_eq!(
        triton.state("tiny_onnx").await,
        "READY",
        "released, still warm"
    );
    let again = lease_of(&mut c, admit(&d.token, "yolo-v8n")).await;
    assert!(again.warm);
    assert_eq!(
        loaded_lines(&triton, "loaded", "tiny_onnx"),
        1,
        "loaded once"
    );
    release(&mut c, &d.token, again.lease_id).await;

    d.daemon.shutdown().await;
    assert_eq!(
        triton.state("tiny_onnx").await,
        "READY",
        "Triton's copies outlive the daemon"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_pressure_unloads_the_lru_victim_in_triton_before_the_new_model_loads() {
    let _slot = TRITONS.acquire().await.unwrap();
    let triton = Triton::start(&[ModelDef::cpu("first"), ModelDef::cpu("second")]).await;
    // Room for one model's weights and working memory, not two.
    let d = start(config(
        &triton,
        1500,
        &[("first", "first"), ("second", "second")],
    ))
    .await;
    let mut c = d.task().await;

    let a = lease_of(&mut c, admit(&d.token, "first")).await;
    release(&mut c, &d.token, a.lease_id).await;
    let b = lease_of(&mut c, admit(&d.token, "second")).await;
    assert!(!b.warm);

    let journal = triton.journal();
    let unloaded = journal
        .iter()
        .position(|l| l.starts_with("unloaded first "));
    let loaded = journal.iter().position(|l| l.starts_with("loaded second "));
    assert!(
        matches!((unloaded, loaded), (Some(u), Some(l)) if u < l),
        "the victim's unload finished before the new load began: {journal:?}"
    );
    assert_eq!(triton.state("first").await, "UNAVAILABLE");
    assert_eq!(triton.state("second").await, "READY");
    assert_expected(&infer(&b.runtime_endpoint, "second").await.expect("infer"));
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_model_gives_waiters_unavailable_with_tritons_reason_and_the_ledger_returns_to_zero()
 {
    let _slot = TRITONS.acquire().await.unwrap();
    let triton = Triton::start(&[ModelDef::broken("broken", "weights file is corrupt")]).await;
    let d = start(config(&triton, 4096, &[("broken", "broken")])).await;
    let mut c = d.task().await;

    let e = c.admit(admit(&d.token, "broken")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(
        e.message().contains("weights file is corrupt"),
        "{}",
        e.message()
    );
    let s = admin_status(&d).await;
    assert!(ledger_is_empty(&s), "{s:?}");
    assert_eq!(s.counters.expect("counters").loads_failed, 1);
    assert_eq!(triton.state("broken").await, "UNAVAILABLE");
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kind_gpu_on_a_machine_without_a_gpu_is_a_clean_load_failure_not_a_hang() {
    let _slot = TRITONS.acquire().await.unwrap();
    let triton = Triton::start(&[ModelDef::gpu("needs_gpu")]).await;
    let cfg = config(&triton, 4096, &[("needs-gpu", "needs_gpu")]);
    assert_eq!(cfg.runtime.load_timeout, Duration::from_secs(120));
    let d = start(cfg).await;
    let mut c = d.task().await;

    let started = Instant::now();
    let e = c.admit(admit(&d.token, "needs-gpu")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    // Triton's own refusal, not the daemon's load timeout.
    assert!(e.message().contains("KIND_GPU"), "{}", e.message());
    assert!(!e.message().contains("timed out"), "{}", e.message());
    assert!(started.elapsed() < Duration::from_secs(120));
    assert!(ledger_is_empty(&admin_status(&d).await));
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_daemon_adopts_the_catalog_models_triton_serves_and_leaves_the_others() {
    let _slot = TRITONS.acquire().await.unwrap();
    let triton = Triton::start(&[ModelDef::cpu("tiny_onnx"), ModelDef::cpu("stranger")]).await;
    triton
        .client()
        .await
        .repository_model_load(tpb::RepositoryModelLoadRequest {
            model_name: "stranger".into(),
            ..Default::default()
        })
        .await
        .expect("someone else loads a model the catalog does not know");

    let first = start(config(&triton, 4096, &[("yolo-v8n", "tiny_onnx")])).await;
    let mut c = first.task().await;
    let lease = lease_of(&mut c, admit(&first.token, "yolo-v8n")).await;
    release(&mut c, &first.token, lease.lease_id).await;
    first.daemon.shutdown().await;

    let second = start(config(&triton, 4096, &[("yolo-v8n", "tiny_onnx")])).await;
    let s = admin_status(&second).await;
    let residents: Vec<&str> = s.gpus[0]
        .residents
        .iter()
        .map(|r| r.model.as_str())
        .collect();
    assert_eq!(
        residents,
        ["yolo-v8n"],
        "adopted; the stranger is not the daemon's"
    );
    assert_eq!(
        s.gpus[0].weights_mib, 1000,
        "the adopted copy is in the ledger"
    );
    let mut c = second.task().await;
    let warm = lease_of(&mut c, admit(&second.token, "yolo-v8n")).await;
    assert!(warm.warm);
    assert_eq!(warm.runtime_endpoint, triton.endpoint());
    assert_expected(
        &infer(&warm.runtime_endpoint, "tiny_onnx")
            .await
            .expect("infer"),
    );
    assert_eq!(
        loaded_lines(&triton, "loaded", "tiny_onnx"),
        1,
        "never reloaded"
    );
    release(&mut c, &second.token, warm.lease_id).await;
    second.daemon.shutdown().await;
    assert_eq!(
        triton.state("stranger").await,
        "READY",
        "external models are left alone"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_load_past_the_load_timeout_fails_and_the_daemon_unloads_it_from_triton() {
    let _slot = TRITONS.acquire().await.unwrap();
    let triton = Triton::start(&[ModelDef::slow("slow", 4.0)]).await;
    let mut cfg = config(&triton, 4096, &[("slow", "slow")]);
    cfg.runtime.load_timeout = Duration::from_secs(1);
    let d = start(cfg).await;
    let mut c = d.task().await;

    let e = c.admit(admit(&d.token, "slow")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().contains("timed out"), "{}", e.message());
    assert!(ledger_is_empty(&admin_status(&d).await));
    // Triton finishes the load it was asked for; the daemon's unload follows.
    triton.wait_state("slow", "UNAVAILABLE").await;
    assert_eq!(
        loaded_lines(&triton, "unloaded", "slow"),
        1,
        "{:?}",
        triton.journal()
    );
    d.daemon.shutdown().await;
}

fn load_request(model: &str, gpu: u32) -> LoadRequest {
    LoadRequest {
        model: model.into(),
        gpu_uuid: format!("GPU-{gpu}"),
        gpu_index: gpu,
        weights_mib: 1000,
        load_id: u64::from(gpu),
        expected: Duration::from_secs(1),
    }
}

/// Instances of `model` by kind, from Triton's ModelConfig.
async fn cpu_instances(triton: &Triton, model: &str) -> i32 {
    triton
        .client()
        .await
        .model_config(tpb::ModelConfigRequest {
            name: model.into(),
            version: String::new(),
        })
        .await
        .expect("ModelConfig")
        .into_inner()
        .config
        .expect("config")
        .instance_group
        .iter()
        .map(|g| g.count)
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_copies_are_one_triton_model_updated_in_place_while_inferences_run() {
    let _slot = TRITONS.acquire().await.unwrap();
    let triton = Triton::start(&[ModelDef::cpu("tiny_onnx")]).await;
    let rt = TritonRuntime::new(Settings {
        endpoint: triton.endpoint(),
        client_endpoint: triton.endpoint(),
        model_repository: Some(triton.repo.path().to_owned()),
        models: BTreeMap::from([("tiny".to_owned(), "tiny_onnx".to_owned())]),
        gpus: vec!["GPU-0".into(), "GPU-1".into()],
        placement: Placement::CpuInstances,
        unload_timeout: Duration::from_secs(60),
    })
    .expect("runtime");
    rt.ready().await.expect("Triton is ready");
    rt.load(load_request("tiny", 0)).await.expect("first copy");
    assert_eq!(cpu_instances(&triton, "tiny_onnx").await, 1);

    // Three clients infer back to back for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    // Inferences answered so far, by all clients: the test waits on it.
    let (answered, mut answers) = tokio::sync::watch::channel(0usize);
    let answered = Arc::new(answered);
    let mut clients = Vec::new();
    for _ in 0..3 {
        let stop = Arc::clone(&stop);
        let answered = Arc::clone(&answered);
        let mut c = triton.client().await;
        clients.push(tokio::spawn(async move {
            let mut spans = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let out = infer_with(&mut c, "tiny_onnx").await;
                spans.push((started, Instant::now(), out));
                answered.send_modify(|n| *n += 1);
            }
            spans
        }));
    }
    let timed = |start: Instant| (start, Instant::now());
    // Every client is in its loop: some inferences have been answered.
    let seen = *answers.wait_for(|n| *n >= 6).await.expect("clients run");
    let t = Instant::now();
    rt.load(load_request("tiny", 1)).await.expect("second copy");
    let add = timed(t);
    assert_eq!(cpu_instances(&triton, "tiny_onnx").await, 2);
    assert_eq!(
        loaded_lines(&triton, "loaded", "tiny_onnx"),
        2,
        "one new instance; the first was not reloaded: {:?}",
        triton.journal()
    );
    let t = Instant::now();
    rt.unload("tiny", "GPU-1", UnloadReason::Evicted)
        .await
        .expect("remove the second copy");
    let remove = timed(t);
    assert_eq!(cpu_instances(&triton, "tiny_onnx").await, 1);
    assert_eq!(triton.state("tiny_onnx").await, "READY");
    assert_eq!(loaded_lines(&triton, "unloaded", "tiny_onnx"), 1);
    // Inferences go on being answered after the removal.
    let now = *answers.borrow();
    answers
        .wait_for(|n| *n >= now.max(seen) + 6)
        .await
        .expect("clients run");
    stop.store(true, Ordering::Relaxed);

    let mut spans = Vec::new();
    for c in clients {
        spans.extend(c.await.expect("client task"));
    }
    for (_, _, out) in &spans {
        match out {
            Ok(o) => assert_expected(o),
            Err(e) => panic!("an inference failed during the changes: {e:?}"),
        }
    }
    for (what, (from, to)) in [("add", add), ("remove", remove)] {
        assert!(
            spans.iter().any(|(s, e, _)| *s < from && *e > from),
            "an inference was in flight when the {what} began"
        );
        assert!(
            spans.iter().any(|(s, e, _)| *s >= from && *e <= to),
            "inferences ran during the {what}"
        );
    }

    let listed = rt.list_loaded().await.expect("list_loaded");
    let copies: Vec<(&str, &str)> = listed
        .iter()
        .map(|c| (c.model.as_str(), c.gpu_uuid.as_str()))
        .collect();
    assert_eq!(copies, [("tiny", "GPU-0")]);
    rt.unload("tiny", "GPU-0", UnloadReason::Evicted)
        .await
        .expect("last copy");
    assert_eq!(triton.state("tiny_onnx").await, "UNAVAILABLE");
    assert!(rt.list_loaded().await.expect("list").is_empty());
}
