//! The status page (`/`), its live updates (`/events`) and `/status.json`,
//! against an in-process daemon: over plain HTTP, and in headless Chromium
//! (with and without JavaScript), whose screenshots land in `target/`.

use std::path::PathBuf;
use std::time::Duration;

use crate::browser_support::Browser;
use crate::common::*;
use serde_json::Value;

/// How long the browser may take to show a change.
const SHOWS_WITHIN: Duration = Duration::from_secs(10);

fn screenshot_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let target = if target.is_relative() {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(target)
    } else {
        target
    };
    target.join("screenshots").join(name)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_and_its_json_show_the_gpus_residents_and_leases_by_pod() {
    let d = start(fast_dev_config()).await;
    let addr = d.daemon.http_addr().unwrap();
    let (code, html) = http_get(addr, "/").await;
    assert_eq!(code, 200);
    assert!(
        html.contains(r#"<article class="gpu" data-gpu="1">"#),
        "{html}"
    );
    assert!(!html.contains(r#"data-model="sd3b""#));

    let lease = lease_of(&mut d.task().await, admit(&d.token, "sd3b")).await;
    let (_, html) = http_get(addr, "/").await;
    assert!(
        html.contains(r#"data-model="sd3b" data-state="pinned""#),
        "{html}"
    );
    assert!(html.contains(&format!(r#"<tr data-lease="{}">"#, lease.lease_id)));

    let (code, json) = http_get(addr, "/status.json").await;
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&json).expect("JSON");
    let gpu = &v["gpus"][lease.gpu_index as usize];
    assert_eq!(gpu["residents"][0]["model"], "sd3b");
    assert_eq!(gpu["residents"][0]["state"], "pinned");
    assert_eq!(
        gpu["free_mib"].as_u64().unwrap() + 5700 + 6000,
        gpu["usable_mib"].as_u64().unwrap()
    );
    // The dev token's lease, under a name that is not the token.
    assert_eq!(v["pods"][0]["pod"], "dev token (no pod)");
    assert_eq!(v["pods"][0]["leases"][0]["lease_id"], lease.lease_id);
    assert!(
        !json.contains(&d.token),
        "the token never leaves the daemon"
    );
    let kinds: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"lease_granted"), "{kinds:?}");
    assert!(kinds.contains(&"model_loaded"), "{kinds:?}");
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_updates_live_in_a_browser_and_stands_without_javascript() {
    let d = start(fast_dev_config()).await;
    let url = format!("http://{}/", d.daemon.http_addr().unwrap());
    let browser = tokio::task::block_in_place(Browser::launch);
    let page = browser.page(1280, 1000, true);
    tokio::task::block_in_place(|| {
        page.goto(&url);
        // The first update arrived over /events.
        page.wait_for("#conn.live", SHOWS_WITHIN);
        assert_eq!(page.text(r#"#gpus [data-model="sd3b"]"#), None);
        // Set on this document: still there after the update means the
        // page changed in place, without a reload.
        page.eval("window.loadedOnce = 1");
    });

    let lease = lease_of(&mut d.task().await, admit(&d.token, "sd3b")).await;
    tokio::task::block_in_place(|| {
        let resident = page.wait_for(
            &format!(
                r#"#gpus [data-gpu="{}"] [data-model="sd3b"][data-state="pinned"]"#,
                lease.gpu_index
            ),
            SHOWS_WITHIN,
        );
        assert!(resident.contains("5700 MiB"), "{resident}");
        let row = page.wait_for(
            &format!(r#"#pods tr[data-lease="{}"]"#, lease.lease_id),
            SHOWS_WITHIN,
        );
        assert!(row.contains("sd3b"), "{row}");
        let event = page.wait_for(r#"#events li[data-kind="lease_granted"]"#, SHOWS_WITHIN);
        assert!(
            event.contains(&format!("lease {} granted: sd3b", lease.lease_id)),
            "{event}"
        );
        assert_eq!(
            page.eval("window.loadedOnce"),
            1,
            "updated without a reload"
        );
        page.screenshot(&screenshot_path("status-page.png"));
    });

    // With JavaScript off the page is the server's rendering, whole.
    let static_page = browser.page(1280, 1000, false);
    tokio::task::block_in_place(|| {
        static_page.goto(&url);
        assert_eq!(static_page.text("#conn").as_deref(), Some("snapshot"));
        let resident = static_page
            .text(r#"#gpus [data-model="sd3b"][data-state="pinned"]"#)
            .expect("the resident, rendered by the server");
        assert!(resident.contains("5700 MiB"), "{resident}");
        assert!(
            static_page
                .text(&format!(r#"#pods tr[data-lease="{}"]"#, lease.lease_id))
                .is_some()
        );
        static_page.screenshot(&screenshot_path("status-page-nojs.png"));
    });
    drop(browser);
    d.daemon.shutdown().await;
}
