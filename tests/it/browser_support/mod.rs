//! Headless Chromium for the tests, driven over the DevTools protocol on a
//! pipe (`--remote-debugging-pipe`: JSON messages ended by a NUL byte on
//! the browser's file descriptors 3 and 4), so no WebSocket client and no
//! debugging port are needed. Debian's `chromium`, installed by
//! `.ci/browser-setup` on first use; it loads only loopback pages.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};

/// How long one DevTools call may take before the test fails.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `.ci/browser-setup` once per test process (a no-op when installed).
fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo_root().join(".ci/browser-setup"))
            .output()
            .expect("bash runs .ci/browser-setup");
        assert!(
            out.status.success(),
            ".ci/browser-setup failed ({}): it installs Debian's chromium and needs root\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

type Pending = Arc<Mutex<HashMap<u64, mpsc::Sender<Value>>>>;

/// A running headless Chromium; killed on drop.
pub struct Browser {
    child: Child,
    commands: Mutex<ChildStdin>,
    pending: Pending,
    /// The protocol's events (messages without an id), in order.
    events: Mutex<mpsc::Receiver<Value>>,
    next_id: Mutex<u64>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium with the flags that work on a machine whose network
    /// is closed (no background connections, no component updates).
    pub fn launch() -> Browser {
        install();
        let profile = tempfile::tempdir().unwrap();
        // The pipe is the browser's fds 3 (commands in) and 4 (answers out):
        // the shell maps them onto the child's stdin and stdout.
        let script = r#"exec /usr/bin/chromium "$@" 3<&0 4>&1 1>&2 0</dev/null"#;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--mute-audio",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts");
        let commands = child.stdin.take().unwrap();
        let answers = child.stdout.take().unwrap();
        let pending: Pending = Arc::default();
        let waiting = Arc::clone(&pending);
        let (events_tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(answers);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if buf.last() == Some(&0) {
                    buf.pop();
                }
                let Ok(msg) = serde_json::from_slice::<Value>(&buf) else {
                    continue;
                };
                // Answers carry the command's id; events have none.
                match msg.get("id").and_then(Value::as_u64) {
                    Some(id) => {
                        if let Some(tx) = waiting.lock().unwrap().remove(&id) {
                            let _ = tx.send(msg);
                        }
                    }
                    None => {
                        let _ = events_tx.send(msg);
                    }
                }
            }
        });
        Browser {
            child,
            commands: Mutex::new(commands),
            pending,
            events: Mutex::new(events),
            next_id: Mutex::new(1),
            _profile: profile,
        }
    }

    /// Sends one DevTools command (to the browser, or to a page's session)
    /// and waits for its answer; a protocol error fails the test.
    pub fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = {
            let mut n = self.next_id.lock().unwrap();
            *n += 1;
            *n
        };
        let (tx, rx) = mpsc::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        {
            let mut w = self.commands.lock().unwrap();
            w.write_all(&bytes).expect("write to chromium");
            w.flush().unwrap();
        }
        let answer = rx
            .recv_timeout(CALL_TIMEOUT)
            .unwrap_or_else(|_| panic!("chromium did not answer {method} within {CALL_TIMEOUT:?}"));
        if let Some(e) = answer.get("error") {
            panic!("{method} failed: {e}");
        }
        answer["result"].clone()
    }

    /// Opens a page (a new tab) of `width`×`height` CSS pixels.
    pub fn page(&self, width: u32, height: u32, javascript: bool) -> Page<'_> {
        let target = self.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["targetId"].as_str().unwrap().to_owned();
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        let session = attached["sessionId"].as_str().unwrap().to_owned();
        let page = Page {
            browser: self,
            session,
        };
        page.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        );
        page.call("Page.enable", json!({}));
        if !javascript {
            page.call(
                "Emulation.setScriptExecutionDisabled",
                json!({ "value": true }),
            );
        }
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One tab.
pub struct Page<'b> {
    browser: &'b Browser,
    session: String,
}

impl Page<'_> {
    pub fn call(&self, method: &str, params: Value) -> Value {
        self.browser.call(Some(&self.session), method, params)
    }

    /// Navigates to `url` and waits for the new document's load event.
    pub fn goto(&self, url: &str) {
        let events = self.browser.events.lock().unwrap();
        // Events of earlier pages or navigations do not count.
        while events.try_recv().is_ok() {}
        let nav = self.call("Page.navigate", json!({ "url": url }));
        assert!(
            nav.get("errorText").is_none(),
            "navigating to {url}: {}",
            nav["errorText"]
        );
        loop {
            let ev = events
                .recv_timeout(CALL_TIMEOUT)
                .unwrap_or_else(|_| panic!("{url} did not load within {CALL_TIMEOUT:?}"));
            if ev["method"] == "Page.loadEventFired" && ev["sessionId"] == self.session.as_str() {
                return;
            }
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns
    /// its value; an exception fails the test. Works with the page's own
    /// scripts disabled.
    pub fn eval(&self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expression}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Waits until an element matches `selector` (watching the DOM's
    /// mutations, at most `timeout`) and returns its text.
    pub fn wait_for(&self, selector: &str, timeout: Duration) -> String {
        let sel = serde_json::to_string(selector).unwrap();
        let ms = timeout.as_millis();
        let value = self.eval(&format!(
            r#"new Promise((resolve, reject) => {{
                const found = () => document.querySelector({sel});
                if (found()) return resolve(found().textContent);
                const timer = setTimeout(() => {{ obs.disconnect();
                    reject(new Error("nothing matched " + {sel} + " within {ms} ms")); }}, {ms});
                const obs = new MutationObserver(() => {{
                    const el = found();
                    if (el) {{ clearTimeout(timer); obs.disconnect(); resolve(el.textContent); }}
                }});
                obs.observe(document.documentElement, {{ subtree: true, childList: true, attributes: true, characterData: true }});
            }})"#
        ));
        value.as_str().unwrap_or_default().to_owned()
    }

    /// The text of the first element matching `selector`, if any.
    pub fn text(&self, selector: &str) -> Option<String> {
        let sel = serde_json::to_string(selector).unwrap();
        self.eval(&format!(
            "(document.querySelector({sel}) || {{}}).textContent ?? null"
        ))
        .as_str()
        .map(str::to_owned)
    }

    /// A PNG of the whole page, written to `path`.
    pub fn screenshot(&self, path: &Path) {
        let shot = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        );
        let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

/// Standard base64 (the DevTools protocol's encoding of binary data).
fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a') as u32 + 26,
            b'0'..=b'9' => (c - b'0') as u32 + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c) << (18 - 6 * i);
        }
        let k = chunk.len() * 6 / 8;
        out.extend_from_slice(&n.to_be_bytes()[1..1 + k]);
    }
    out
}

#[test]
fn base64_decodes_what_devtools_sends() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGk="), b"hi");
    assert_eq!(base64_decode("YWJj"), b"abc");
}
