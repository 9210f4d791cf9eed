//! `vision-scheduler-extender` over real TCP, with requests shaped exactly
//! as kube-scheduler sends them (built from k8s-openapi `Pod` and `Node`
//! values, encoded as its Go encoder does), nodes annotated by real engines
//! through the daemon's own annotation function, and the node cache fed by
//! a fake API server at the HTTP layer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use crate::extender_support::*;
use k8s_openapi::api::core::v1::Node;
use serde_json::{Value, json};
use vision_node_daemon::config::Config;
use vision_node_daemon::engine::GpuId;
use vision_node_daemon::extender::{self, Extender, NodeCacheMode, Settings};

const L4: u64 = 24576;

fn settings(node_cache: NodeCacheMode) -> Settings {
    Settings {
        node_cache,
        ..Settings::from_config(&Config::dev())
    }
}

/// An extender served on 127.0.0.1:0; the server stops with the test.
async fn serve(settings: &Settings) -> (SocketAddr, Arc<Extender>) {
    let ext = Arc::new(Extender::new(settings));
    let (addr, _server) = extender::http::serve(
        "127.0.0.1:0".parse().expect("addr"),
        Arc::clone(&ext),
        std::future::pending(),
    )
    .await
    .expect("serves");
    (addr, ext)
}

async fn post(addr: SocketAddr, verb: &str, args: &Value) -> (u16, Value) {
    let (status, body) = http(addr, "POST", verb, &serde_json::to_vec(args).expect("JSON")).await;
    let body = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "{verb} answered non-JSON ({e}): {:?}",
            String::from_utf8_lossy(&body)
        )
    });
    (status, body)
}

/// The kinds of node the score tells apart, each a real engine's
/// annotations stamped now, for a pod that runs sd3b (11 700 MiB cold,
/// two tasks per copy).
fn fleet() -> Vec<Node> {
    let now = SystemTime::now();
    let mut warm = engine(&[L4]);
    preload(&mut warm, "sd3b", 0, true);
    let mut one_task = engine(&[L4]);
    preload(&mut one_task, "sd3b", 0, true);
    assert_eq!(admit(&mut one_task, "sd3b", 1), 1);
    let mut loading = engine(&[L4]);
    preload(&mut loading, "sd3b", 0, false);
    let roomy = engine(&[L4, L4]);
    // An idle sdxl-refiner (5 800 MiB) and 8 000 MiB used by someone else:
    // 10 264 MiB free, 16 064 MiB once the idle copy goes.
    let mut crowded = engine(&[L4]);
    preload(&mut crowded, "sdxl-refiner", 0, true);
    crowded.set_external_mib(GpuId(0), 8000, vision_node_daemon::engine::Time::ZERO);
    let mut full = engine(&[L4]);
    full.set_external_mib(GpuId(0), 20_000, vision_node_daemon::engine::Time::ZERO);
    // The copy is saturated (two tasks) and four more wait.
    let mut busy = engine(&[L4]);
    preload(&mut busy, "sd3b", 0, true);
    assert_eq!(admit(&mut busy, "sd3b", 6), 2);
    assert_eq!(busy.queued(), 4);
    [
        ("warm", &warm),
        ("one-task", &one_task),
        ("loading", &loading),
        ("roomy", &roomy),
        ("crowded", &crowded),
        ("full", &full),
        ("busy", &busy),
    ]
    .into_iter()
    .map(|(name, e)| node(name, published(e, now)))
    .collect()
}

fn scores(answer: &Value) -> Vec<(String, i64)> {
    answer
        .as_array()
        .expect("HostPriorityList is a bare array")
        .iter()
        .map(|h| {
            let keys: Vec<&str> = h
                .as_object()
                .expect("object")
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys, ["Host", "Score"], "HostPriority's Go field names");
            (
                h["Host"].as_str().expect("Host").to_owned(),
                h["Score"].as_i64().expect("Score"),
            )
        })
        .collect()
}

fn owned(pairs: &[(&str, i64)]) -> Vec<(String, i64)> {
    pairs.iter().map(|(h, s)| ((*h).to_owned(), *s)).collect()
}

#[tokio::test]
async fn prioritize_ranks_idle_over_ready_over_loading_over_saturated_over_free_over_evictable_over_cold()
 {
    let (addr, _) = serve(&settings(NodeCacheMode::Off)).await;
    let (status, answer) = post(
        addr,
        "/prioritize",
        &stateless_args(&pod(Some("sd3b")), &fleet()),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        scores(&answer),
        owned(&[
            ("warm", 10),
            ("one-task", 9),
            ("loading", 8),
            ("roomy", 5),
            ("crowded", 3),
            ("full", 0),
            // Saturated (6), halved and floored by a queue of four.
            ("busy", 3)
        ])
    );
}

#[tokio::test]
async fn a_stateless_filter_hands_back_the_nodes_as_sent_and_fails_only_gpus_too_small_ever() {
    let (addr, _) = serve(&settings(NodeCacheMode::Off)).await;
    let mut nodes = fleet();
    nodes.insert(
        1,
        node("small", published(&engine(&[8192]), SystemTime::now())),
    );
    let (status, answer) = post(
        addr,
        "/filter",
        &stateless_args(&pod(Some("clip-vit-b32, sd3b")), &nodes),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    // (serde_json's map is sorted.)
    let keys: Vec<&str> = answer
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "Error",
            "FailedAndUnresolvableNodes",
            "FailedNodes",
            "NodeNames",
            "Nodes"
        ],
        "ExtenderFilterResult's Go field names, all of them"
    );
    let mut passing = nodes.clone();
    passing.remove(1);
    // Byte for byte what was sent, full, busy and unknown-capacity nodes included.
    assert_eq!(
        answer["Nodes"],
        json!({"metadata": {}, "items": passing.iter().map(go_object).collect::<Vec<_>>()})
    );
    assert_eq!(answer["NodeNames"], Value::Null);
    let why = "model sd3b needs 11700 MiB on one GPU (weights + working memory); the largest GPU here holds 7680 MiB (8192 MiB − 512 MiB reserve)";
    assert_eq!(answer["FailedNodes"], json!({"small": why}));
    assert_eq!(answer["FailedAndUnresolvableNodes"], json!({"small": why}));
    assert_eq!(answer["Error"], "");
}

#[tokio::test]
async fn a_pod_without_models_passes_every_filter_with_equal_scores() {
    let (addr, _) = serve(&settings(NodeCacheMode::Off)).await;
    let mut nodes = fleet();
    nodes.push(node(
        "small",
        published(&engine(&[8192]), SystemTime::now()),
    ));
    for p in [pod(None), pod(Some(" , "))] {
        let (_, f) = post(addr, "/filter", &stateless_args(&p, &nodes)).await;
        assert_eq!(
            f["Nodes"]["items"].as_array().expect("items").len(),
            nodes.len()
        );
        assert_eq!(f["FailedNodes"], json!({}));
        let (_, s) = post(addr, "/prioritize", &stateless_args(&p, &nodes)).await;
        assert!(scores(&s).iter().all(|(_, score)| *score == 0), "{s}");
    }
}

#[tokio::test]
async fn stale_unversioned_and_unknown_version_annotations_score_as_unknown() {
    let (addr, _) = serve(&settings(NodeCacheMode::Off)).await;
    let mut warm = engine(&[L4]);
    preload(&mut warm, "sd3b", 0, true);
    let fresh = published(&warm, SystemTime::now());
    let stale = published(&warm, ago(181));
    let mut v1 = fresh.clone();
    v1.remove("vision.ai/residency-version");
    v1.remove("vision.ai/residency-time");
    let mut v3 = fresh.clone();
    v3.insert("vision.ai/residency-version".into(), "3".into());
    let mut garbage = fresh.clone();
    garbage.insert("vision.ai/residency".into(), "{\"not\": \"a list\"}".into());
    let small_but_stale = published(&engine(&[8192]), ago(3600));
    let nodes = vec![
        node("fresh", fresh),
        node("stale", stale),
        node("v1", v1),
        node("v3", v3),
        node("garbage", garbage),
        node("small-stale", small_but_stale),
    ];
    let args = stateless_args(&pod(Some("sd3b")), &nodes);
    let (_, s) = post(addr, "/prioritize", &args).await;
    assert_eq!(
        scores(&s),
        owned(&[
            ("fresh", 10),
            ("stale", 0),
            ("v1", 0),
            ("v3", 0),
            ("garbage", 0),
            ("small-stale", 0)
        ])
    );
    // Unreadable nodes pass; a stale view's GPU sizes still rule out a node.
    let (_, f) = post(addr, "/filter", &args).await;
    let passed: Vec<&str> = f["Nodes"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|n| n["metadata"]["name"].as_str().expect("name"))
        .collect();
    assert_eq!(passed, ["fresh", "stale", "v1", "v3", "garbage"]);
    assert!(
        f["FailedNodes"]["small-stale"]
            .as_str()
            .is_some_and(|w| w.contains("7680 MiB"))
    );
}

#[tokio::test]
async fn bad_requests_get_a_400_or_413_with_an_error_and_the_server_carries_on() {
    let limited = Settings {
        max_body_bytes: 64 * 1024,
        ..settings(NodeCacheMode::Off)
    };
    let (addr, _) = serve(&limited).await;
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "/filter",
            b"{\"Pod\": ".to_vec(),
            400,
            "not extender/v1 ExtenderArgs JSON",
        ),
        (
            "/prioritize",
            b"[1,2,3]".to_vec(),
            400,
            "not extender/v1 ExtenderArgs JSON",
        ),
        (
            "/filter",
            br#"{"Pod":null,"Nodes":null,"NodeNames":["a"]}"#.to_vec(),
            400,
            "Pod is missing",
        ),
        (
            "/prioritize",
            br#"{"Pod":{"metadata":{}},"Nodes":null,"NodeNames":null}"#.to_vec(),
            400,
            "neither NodeNames",
        ),
        (
            "/filter",
            br#"{"Pod":{},"Nodes":{"items":[{"metadata":{}}]}}"#.to_vec(),
            400,
            "Nodes.items[0] has no metadata.name",
        ),
        (
            "/filter",
            br#"{"Pod":{},"Nodes":{"items":[7]}}"#.to_vec(),
            400,
            "Nodes.items[0] is not a Node",
        ),
        (
            "/prioritize",
            br#"{"Pod":{},"NodeNames":["a"]}"#.to_vec(),
            400,
            "--node-cache off",
        ),
        (
            "/filter",
            vec![b' '; 100 * 1024],
            413,
            "over 65536 bytes (--max-body-bytes)",
        ),
    ];
    for (verb, body, want_status, says) in cases {
        let (status, answer) = http(addr, "POST", verb, &body).await;
        let answer: Value = serde_json::from_slice(&answer).expect("a JSON error");
        assert_eq!(status, want_status, "{verb}: {answer}");
        let error = answer["Error"].as_str().expect("Error");
        assert!(error.contains(says), "{verb}: {error}");
    }
    let (status, _) = http(addr, "GET", "/filter", b"").await;
    assert_eq!(status, 405);
    // Still serving, and it counted what it refused.
    let (status, _) = post(
        addr,
        "/prioritize",
        &stateless_args(&pod(Some("sd3b")), &fleet()),
    )
    .await;
    assert_eq!(status, 200);
    let (_, metrics) = http(addr, "GET", "/metrics", b"").await;
    let metrics = String::from_utf8(metrics).expect("text");
    for line in [
        r#"vision_extender_requests_total{verb="filter",result="bad_request"} 4"#,
        r#"vision_extender_requests_total{verb="filter",result="too_large"} 1"#,
        r#"vision_extender_requests_total{verb="prioritize",result="ok"} 1"#,
        r#"vision_extender_nodes_total{verb="prioritize",view="fresh"} 7"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn unknown_model_names_score_cold_but_do_not_fail_nodes() {
    let (addr, _) = serve(&settings(NodeCacheMode::Off)).await;
    let nodes = fleet();
    let args = stateless_args(&pod(Some("sd3b,mystery-model")), &nodes);
    let (_, s) = post(addr, "/prioritize", &args).await;
    // The mean of sd3b's points and 0.
    assert_eq!(scores(&s)[0], ("warm".to_owned(), 5));
    let (_, f) = post(addr, "/filter", &args).await;
    assert_eq!(
        f["Nodes"]["items"].as_array().expect("items").len(),
        nodes.len()
    );
}

/// The cache mode end to end: a metadata-only list and watch of Nodes from
/// the fake API server, then NodeNames requests over TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cache_mode_the_watch_keeps_the_views_and_names_are_scored_from_them() {
    let (addr, ext) = serve(&settings(NodeCacheMode::Watch)).await;
    let (client, mut api) = fake_api();
    let (status, body) = http(addr, "GET", "/readyz", b"").await;
    assert_eq!(
        (
            status,
            String::from_utf8_lossy(&body).contains("not listed")
        ),
        (503, true)
    );
    let watch = tokio::spawn(Arc::clone(&ext).watch_nodes(client));

    let now = SystemTime::now();
    let mut warm = engine(&[L4]);
    preload(&mut warm, "sd3b", 0, true);
    let roomy = engine(&[L4]);
    let (list, answer) = api.next().await;
    assert!(!list.watch, "{list:?}");
    assert_eq!(list.path, "/api/v1/nodes");
    assert!(
        list.accept.contains("as=PartialObjectMetadataList"),
        "metadata only: {}",
        list.accept
    );
    answer.send_response(ok(serde_json::to_vec(&json!({
        "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": "100"},
        "items": [partial("gpu-a", "90", &published(&warm, now)),
                  partial("gpu-b", "91", &published(&roomy, now))],
    }))
    .expect("JSON")));

    // The watch starts once the list is in the cache.
    let (w, answer) = api.next().await;
    assert!(w.watch && w.query.contains("resourceVersion=100"), "{w:?}");
    assert!(
        w.accept.contains("as=PartialObjectMetadata"),
        "{}",
        w.accept
    );
    assert_eq!(http(addr, "GET", "/readyz", b"").await.0, 200);
    let names = ["gpu-a", "gpu-b", "gpu-new"];
    let (_, s) = post(
        addr,
        "/prioritize",
        &cached_args(&pod(Some("sd3b")), &names),
    )
    .await;
    assert_eq!(
        scores(&s),
        owned(&[("gpu-a", 10), ("gpu-b", 5), ("gpu-new", 0)])
    );

    // gpu-b warms up, gpu-new appears with a GPU too small for sd3b, gpu-a goes.
    let mut b_warm = engine(&[L4]);
    preload(&mut b_warm, "sd3b", 0, true);
    let small = engine(&[8192]);
    answer.send_response(ok(events(&[
        (
            "MODIFIED",
            partial("gpu-b", "101", &published(&b_warm, now)),
        ),
        ("ADDED", partial("gpu-new", "102", &published(&small, now))),
        ("DELETED", partial("gpu-a", "103", &published(&warm, now))),
    ])));
    // That watch ended; the next one resumes after the events just handled.
    let (w, _held) = api.next().await;
    assert!(w.watch && w.query.contains("resourceVersion=103"), "{w:?}");
    let (_, s) = post(
        addr,
        "/prioritize",
        &cached_args(&pod(Some("sd3b")), &names),
    )
    .await;
    assert_eq!(
        scores(&s),
        owned(&[("gpu-a", 0), ("gpu-b", 10), ("gpu-new", 0)])
    );
    let (status, f) = post(addr, "/filter", &cached_args(&pod(Some("sd3b")), &names)).await;
    assert_eq!(status, 200);
    assert_eq!(f["Nodes"], Value::Null);
    assert_eq!(f["NodeNames"], json!(["gpu-a", "gpu-b"]));
    assert!(
        f["FailedNodes"]["gpu-new"]
            .as_str()
            .is_some_and(|w| w.contains("sd3b"))
    );
    assert_eq!(f["Error"], "");
    assert_eq!(ext.cache().expect("a cache").len(), 2);
    watch.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relist_after_the_watch_expires_replaces_the_cache_at_once() {
    let ext = Arc::new(Extender::new(&settings(NodeCacheMode::Watch)));
    let (client, mut api) = fake_api();
    let watch = tokio::spawn(Arc::clone(&ext).watch_nodes(client));
    let now = SystemTime::now();
    let list = |names: &[&str], rv: &str| {
        let items: Vec<Value> = names
            .iter()
            .map(|n| partial(n, "1", &published(&engine(&[L4]), now)))
            .collect();
        ok(serde_json::to_vec(
            &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": rv}, "items": items}),
        )
        .expect("JSON"))
    };
    let (_, answer) = api.next().await;
    answer.send_response(list(&["a", "b", "c"], "200"));
    let (_, answer) = api.next().await;
    assert_eq!(ext.cache().expect("cache").len(), 3);
    // The resource version is too old: the API server says 410 Gone.
    answer.send_response(ok(events(&[(
        "ERROR",
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "message": "too old resource version: 200 (300)", "reason": "Expired", "code": 410}),
    )])));
    // kube-rs backs off, lists again; the old views serve meanwhile.
    let (relist, answer) = api.next().await;
    assert!(!relist.watch, "{relist:?}");
    assert_eq!(ext.cache().expect("cache").len(), 3);
    answer.send_response(list(&["b"], "300"));
    let (w, _held) = api.next().await;
    assert!(w.watch, "{w:?}");
    let cache = ext.cache().expect("cache");
    assert_eq!(cache.len(), 1);
    assert!(cache.read().contains_key("b"));
    assert!(cache.errors() >= 1);
    watch.abort();
}

#[tokio::test]
async fn health_and_readiness_without_a_cache() {
    let (addr, _) = serve(&settings(NodeCacheMode::Off)).await;
    assert_eq!(
        http(addr, "GET", "/healthz", b"").await,
        (200, b"ok\n".to_vec())
    );
    assert_eq!(http(addr, "GET", "/readyz", b"").await.0, 200);
}

fn run(bin: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin)
        .args(args)
        .env("NODE_NAME", "ci-node")
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("the binary runs")
}

#[test]
fn the_extender_binary_checks_its_config_and_refuses_a_watch_without_an_api() {
    let bin = env!("CARGO_BIN_EXE_vision-scheduler-extender");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.yaml");
    let out = run(bin, &["check-config", example]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "domain: vision.ai",
        "pod annotation: vision.ai/models",
        "  - sd3b: needs 11700 MiB on one GPU (5700 weights + 6000 working)",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line:?} in:\n{stdout}");
    }
    let out = run(bin, &["check-config", "/nonexistent.yaml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the config file"));

    let out = run(bin, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen ADDR is required"));
    let out = run(bin, &["--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("--node-cache watch needs the Kubernetes API"),
        "{text}"
    );
}

#[test]
fn simulate_fleet_prints_both_routings_as_json_and_its_flags_need_fleet() {
    let bin = env!("CARGO_BIN_EXE_vision-node-daemon");
    let mut cold = Vec::new();
    for routing in ["spread", "warm"] {
        let out = run(
            bin,
            &[
                "simulate",
                "--fleet",
                "--nodes",
                "6",
                "--gpus-per-node",
                "2",
                "--duration",
                "3m",
                "--warmup",
                "1m",
                "--rate",
                "1",
                "--variants",
                "4",
                "--routing",
                routing,
                "--json",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(v["routing"], routing);
        assert_eq!(
            (v["nodes"].as_u64(), v["models"].as_u64()),
            (Some(6), Some(16))
        );
        assert!(v["first_task_wait_ms"]["p99"].is_u64());
        cold.push(
            v["including_warmup"]["cold_loads"]
                .as_u64()
                .expect("cold_loads"),
        );
    }
    assert!(cold[1] < cold[0], "{cold:?}");
    let out = run(bin, &["simulate", "--nodes", "5"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--fleet"));
    let out = run(bin, &["simulate", "--fleet", "--pods", "5"]);
    assert!(
        !out.status.success(),
        "--pods is the single-node simulator's"
    );
}
