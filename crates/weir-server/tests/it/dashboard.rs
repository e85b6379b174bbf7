//! The dashboard in a real browser: headless Chromium (Debian's `chromium`) driven over the
//! DevTools protocol. The page loads with no console errors or blocked fetches, the charts
//! draw, and the numbers move once traffic is sent. A screenshot is written to
//! `$CARGO_TARGET_TMPDIR/dashboard.png` (and to `$WEIR_DASHBOARD_SCREENSHOT` when set).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

/// A headless Chromium, killed when dropped.
struct Chromium {
    child: Child,
    ws_url: String,
    _profile: TempDir,
}

impl Chromium {
    fn launch() -> Self {
        let profile = std::env::temp_dir().join(format!(
            "weir-chromium-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        // Chromium's own temporary files (with `--disable-dev-shm-usage`, its shared memory)
        // go inside the profile, and it runs in a process group of its own, so that the
        // renderers die with it and the profile's removal leaves nothing behind in /tmp.
        let tmp = profile.join("tmp");
        std::fs::create_dir_all(&tmp).expect("chromium's temporary directory");
        let mut child = Command::new("chromium")
            .env("TMPDIR", &tmp)
            .process_group(0)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--window-size=1400,1000",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium must be installed (the test command installs Debian's chromium)");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        // Chromium prints the DevTools address on stderr; keep draining it afterwards.
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    if !sent {
                        let _ = tx.send(url.trim().to_owned());
                        sent = true;
                    }
                }
            }
        });
        let ws_url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium printed its DevTools address");
        Self {
            child,
            ws_url,
            _profile: TempDir(profile),
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // The whole group: the browser and the renderers and helpers it started (the shell's
        // `kill`: Debian's `sh` is essential, a `kill` binary is not).
        let pid = self.child.id();
        let _ = Command::new("sh")
            .args(["-c", &format!("kill -KILL -- -{pid}")])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The profile is removed (when `_profile` drops) once no process of the group is left
        // to write into it: a signalled helper may still be finishing a write.
        for _ in 0..500 {
            let alive = Command::new("sh")
                .args(["-c", &format!("kill -0 -- -{pid} 2>/dev/null")])
                .status()
                .is_ok_and(|s| s.success());
            if !alive {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Helpers outside the group (Chromium starts some in sessions of their own) die when
        // the browser's pipes close; removal is retried until the profile stays gone.
        for _ in 0..200 {
            let _ = std::fs::remove_dir_all(&self._profile.0);
            if !self._profile.0.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A DevTools protocol session on one page (flattened sessions over the browser socket).
struct Page {
    ws: Ws,
    session: String,
    next_id: u64,
    events: Vec<Value>,
}

impl Page {
    async fn open(browser: &Chromium) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(&browser.ws_url)
            .await
            .expect("connect to DevTools");
        let mut page = Self {
            ws,
            session: String::new(),
            next_id: 0,
            events: Vec::new(),
        };
        let target = page
            .browser_call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let target_id = target["targetId"].as_str().expect("targetId").to_owned();
        let attached = page
            .browser_call(
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await;
        page.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_owned();
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            page.call(domain, json!({})).await;
        }
        page
    }

    async fn send(&mut self, method: &str, params: Value, session: bool) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if session {
            msg["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .expect("send to DevTools");
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method}"))
                .expect("DevTools socket open")
                .expect("DevTools message");
            let Message::Text(text) = msg else { continue };
            let v: Value = serde_json::from_str(&text).expect("DevTools JSON");
            if v["id"] == json!(id) {
                assert!(v.get("error").is_none(), "{method} failed: {v}");
                return v["result"].clone();
            }
            if v.get("method").is_some() {
                self.events.push(v);
            }
        }
    }

    async fn browser_call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, false).await
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, true).await
    }

    /// Evaluates a JavaScript expression in the page; returns its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(
            r.get("exceptionDetails").is_none(),
            "`{expression}` threw: {r}"
        );
        r["result"]["value"].clone()
    }

    /// Evaluates `expression` every 100 ms until it is true (at most `secs` seconds).
    async fn wait_for(&mut self, expression: &str, secs: u64) -> bool {
        for _ in 0..secs * 10 {
            if self.eval(expression).await == json!(true) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Console errors, uncaught exceptions and browser log errors (failed or blocked loads,
    /// CSP violations) seen so far.
    fn errors(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| match e["method"].as_str() {
                Some("Runtime.exceptionThrown") => true,
                Some("Runtime.consoleAPICalled") => {
                    matches!(e["params"]["type"].as_str(), Some("error" | "assert"))
                }
                Some("Log.entryAdded") => e["params"]["entry"]["level"] == "error",
                _ => false,
            })
            .collect()
    }
}

/// Pixels of a route's chart drawn in a colour close to `rgb`.
fn colored_pixels(route: &str, kind: &str, rgb: (u8, u8, u8)) -> String {
    format!(
        r#"(() => {{
            const card = [...document.querySelectorAll('.route')].find(c => c.dataset.route === {route:?});
            if (!card) return 0;
            const c = card.querySelector('canvas[data-kind="{kind}"]');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4) {{
                if (d[i + 3] > 128 && Math.abs(d[i] - {r}) < 40 && Math.abs(d[i + 1] - {g}) < 40 && Math.abs(d[i + 2] - {b}) < 40) n++;
            }}
            return n;
        }})()"#,
        r = rgb.0,
        g = rgb.1,
        b = rgb.2
    )
}

fn dashboard_config(origin: SocketAddr, dead: SocketAddr) -> String {
    TestConfig::new()
        .admin()
        .top("[[caches]]\nname = \"edge\"\nmax_memory = \"8MiB\"")
        .upstream("api", &[origin], "")
        .upstream("broken", &[dead], "retry = { attempts = 0 }")
        .then("[[policies]]\nname = \"per-ip\"\nrate_limit = { limit = 1000000, period = \"1s\" }")
        .route(
            "api",
            "match = { path_prefix = \"/api/\" }\npolicies = [\"per-ip\"]\nproxy = { upstream = \"api\" }",
        )
        .route(
            "legacy",
            "match = { path_prefix = \"/legacy/\" }\nproxy = { upstream = \"broken\" }",
        )
        .route(
            "cached",
            "match = { path_prefix = \"/cached/\" }\ncache = \"edge\"\nproxy = { upstream = \"api\" }",
        )
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_loads_clean_draws_charts_and_moves_with_traffic() {
    let o = echo_origin().await;
    let dead = closed_addr();
    let gw = gateway(&dashboard_config(o.addr, dead)).await;
    let admin = gw.admin_addr();

    let browser = Chromium::launch();
    let mut page = Page::open(&browser).await;
    page.call("Page.navigate", json!({"url": format!("http://{admin}/")}))
        .await;
    assert!(
        page.wait_for("document.readyState === 'complete'", 20)
            .await,
        "the page loads"
    );
    // The page polls once a second; two updates prove the loop runs.
    assert!(
        page.wait_for("Number(document.body.dataset.updates || 0) >= 2", 20)
            .await,
        "the page updates itself"
    );
    assert_eq!(
        page.eval("document.getElementById('conn').textContent")
            .await,
        "live"
    );
    assert_eq!(
        page.eval("document.getElementById('total-rps').textContent")
            .await,
        "0.0",
        "no traffic yet"
    );
    assert_eq!(
        page.eval("document.getElementById('last-reload').textContent")
            .await,
        "none since start"
    );
    let table = page
        .eval("document.getElementById('upstreams').innerText")
        .await;
    let table = table.as_str().expect("table text");
    assert!(
        table.contains(&o.addr.to_string()) && table.contains("healthy"),
        "{table}"
    );

    // Traffic for a few seconds: 2xx on `api`, 502s on `legacy`.
    let traffic = {
        let api = gw.url("/api/x");
        let legacy = gw.url("/legacy/y");
        let cached = gw.url("/cached/z");
        tokio::spawn(async move {
            let c = client();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
            while tokio::time::Instant::now() < deadline {
                for _ in 0..20 {
                    let r = c.get(&api).send().await.expect("api request");
                    assert_eq!(r.status(), 200);
                    r.bytes().await.expect("body");
                }
                let r = c.get(&legacy).send().await.expect("legacy request");
                assert_eq!(r.status(), 502);
                r.bytes().await.expect("body");
                let r = c.get(&cached).send().await.expect("cached request");
                r.bytes().await.expect("body");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    assert!(
        page.wait_for(
            "parseFloat(document.getElementById('total-rps').textContent) > 10",
            15
        )
        .await,
        "requests/s moves with traffic"
    );
    assert!(
        page.wait_for(
            "(() => { const c = [...document.querySelectorAll('.route')].find(c => c.dataset.route === 'legacy'); \
              return !!c && c.querySelector('.now').textContent.includes('100.0% 5xx'); })()",
            15
        )
        .await,
        "the failing route shows its 5xx rate"
    );
    traffic.await.expect("traffic");
    // The charts are drawn: request rate in blue on `api`, error rate in red on `legacy`,
    // latency lines on `api` (waited for: a point is added each second).
    for (route, kind, rgb) in [
        ("api", "rps", (0x58, 0xa6, 0xff)),
        ("legacy", "err", (0xe5, 0x53, 0x4b)),
        ("api", "lat", (0xd8, 0xa3, 0x3a)),
    ] {
        let drawn = format!("{} > 20", colored_pixels(route, kind, rgb));
        assert!(page.wait_for(&drawn, 15).await, "{kind} line on {route}");
    }
    let rps_pixels = page
        .eval(&colored_pixels("api", "rps", (0x58, 0xa6, 0xff)))
        .await;
    assert!(
        rps_pixels.as_u64().is_some_and(|n| n > 20),
        "rps line: {rps_pixels}"
    );
    let err_pixels = page
        .eval(&colored_pixels("legacy", "err", (0xe5, 0x53, 0x4b)))
        .await;
    assert!(
        err_pixels.as_u64().is_some_and(|n| n > 20),
        "error line: {err_pixels}"
    );
    let p99_pixels = page
        .eval(&colored_pixels("api", "lat", (0xd8, 0xa3, 0x3a)))
        .await;
    assert!(
        p99_pixels.as_u64().is_some_and(|n| n > 20),
        "p99 line: {p99_pixels}"
    );
    // The 5xx chart's scale stops at 100% (a route failing every request draws at the top,
    // not under a 115% label).
    let err_max = page
        .eval("parseFloat([...document.querySelectorAll('.route')].find(c => c.dataset.route === 'legacy').querySelector('canvas[data-kind=\"err\"]').dataset.max)")
        .await;
    assert_eq!(err_max.as_f64(), Some(100.0), "{err_max}");
    // Answers by class and bytes since start, and the cache's row.
    let by_class = page
        .eval("document.getElementById('by-class').textContent")
        .await;
    let counts: Vec<u64> = by_class
        .as_str()
        .unwrap_or("")
        .split(" · ")
        .filter_map(|n| n.replace(',', "").parse().ok())
        .collect();
    assert!(
        counts.len() == 4 && counts[0] > 0 && counts[3] > 0,
        "2xx and 5xx counted: {by_class}"
    );
    assert!(
        page.wait_for(
            "!document.getElementById('caches-section').hidden && document.getElementById('caches').innerText.includes('edge')",
            10
        )
        .await,
        "the cache has its row"
    );
    // Each policy's decisions.
    assert!(
        page.wait_for(
            "(() => { const r = [...document.querySelectorAll('#policies tbody tr')].find(r => r.cells[0].textContent === 'per-ip'); \
              return !document.getElementById('policies-section').hidden && !!r && parseInt(r.cells[2].textContent.replace(/,/g, '')) > 0; })()",
            10
        )
        .await,
        "the policy row counts what it let through"
    );
    // No breaker configured reads "none", not a green "off".
    let breaker = page
        .eval("document.querySelector('#upstreams tbody tr td:nth-child(2)').textContent")
        .await;
    assert_eq!(breaker, "none");
    // The drain button drains through the admin API, and enable brings it back.
    let addr = o.addr.to_string();
    let button = format!("document.querySelector('button.action[data-endpoint=\"{addr}\"]')");
    for (action, state) in [("drain", "drained"), ("enable", "healthy")] {
        assert!(
            page.wait_for(
                &format!("!!{button} && {button}.textContent === '{action}'"),
                10
            )
            .await,
            "a {action} button for {addr}"
        );
        page.eval(&format!("{button}.click(), true")).await;
        let row_state = format!(
            "[...document.querySelectorAll('#upstreams tbody tr')].some(r => r.cells[2].textContent === '{addr}' && r.cells[3].textContent === '{state}')"
        );
        assert!(page.wait_for(&row_state, 10).await, "{addr} {state}");
    }

    let api_now = page
        .eval("[...document.querySelectorAll('.route')].find(c => c.dataset.route === 'api').querySelector('.now').textContent")
        .await;
    assert!(
        api_now.as_str().is_some_and(|t| t.contains("p99")),
        "{api_now}"
    );

    let shot = page
        .call("Page.captureScreenshot", json!({"format": "png"}))
        .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().expect("png data"))
        .expect("base64");
    assert!(png.starts_with(b"\x89PNG"));
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&out, &png).expect("write screenshot");
    if let Ok(path) = std::env::var("WEIR_DASHBOARD_SCREENSHOT") {
        std::fs::write(path, &png).expect("write screenshot copy");
    }

    let errors = page.errors();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

#[tokio::test]
async fn the_page_is_served_without_the_token_and_its_data_only_with_it() {
    let o = echo_origin().await;
    let toml = config(
        &[o.addr],
        "admin = { bind = \"127.0.0.1:0\", token = \"dashboard-token-0123456\" }",
    );
    let gw = gateway(&toml).await;
    let admin = gw.admin_addr();
    let c = client();
    let page = c
        .get(format!("http://{admin}/"))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
    let html = page.text().await.expect("html");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external references"
    );
    for asset in ["/dashboard.js", "/dashboard.css"] {
        let r = c
            .get(format!("http://{admin}{asset}"))
            .send()
            .await
            .expect("asset");
        assert_eq!(r.status(), 200, "{asset}");
        let body = r.text().await.expect("asset body");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{asset} fetches nothing external"
        );
    }
    let data = c
        .get(format!("http://{admin}/dashboard.json"))
        .send()
        .await
        .expect("data");
    assert_eq!(data.status(), 401);
    let data: Value = c
        .get(format!("http://{admin}/dashboard.json"))
        .bearer_auth("dashboard-token-0123456")
        .send()
        .await
        .expect("data")
        .json()
        .await
        .expect("json");
    assert_eq!(data["status"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        data["routes"].is_array() && data["upstreams"].is_array(),
        "{data}"
    );
}

/// The deployments table: a split route's shares, its canary plan's state and last check,
/// buttons that act on the plan through the admin API, and the route's mirror.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployments_table_shows_the_canary_and_its_buttons_act_on_it() {
    let v1 = echo_origin().await;
    let v2 = echo_origin().await;
    let toml = TestConfig::new()
        .admin()
        .upstream("v1", &[v1.addr], "")
        .upstream("v2", &[v2.addr], "")
        .route(
            "app",
            "proxy = { split = [{ upstream = \"v1\" }, { upstream = \"v2\" }], canary = { upstream = \"v2\", steps = [10, 50, 100], step_time = \"1h\", check_interval = \"50ms\" } }\nmirror = { upstream = \"v1\", percent = 100 }",
        )
        .build();
    let gw = gateway(&toml).await;
    for _ in 0..20 {
        client().get(gw.url("/")).send().await.expect("request");
    }
    let browser = Chromium::launch();
    let mut page = Page::loaded(&browser, gw.admin_addr(), "deploy-section").await;
    let state = "(document.querySelector('#splits tr[data-route=\"app\"] td.state') || {}).textContent || ''";
    assert!(
        page.wait_for(
            &format!("!document.getElementById('deploy-section').hidden && ({state}).startsWith('progressing · 10.0%')"),
            20
        )
        .await,
        "the plan's row: {}",
        page.eval(state).await
    );
    let row = page
        .eval("document.querySelector('#splits tr[data-route=\"app\"]').innerText")
        .await;
    let row = row.as_str().expect("row text");
    assert!(
        row.contains("v1 90.0% · v2 10.0%") && row.contains("v2 at step 1"),
        "{row}"
    );
    assert!(row.contains("waiting"), "the last check's verdict: {row}");
    let mirrors = page
        .eval("document.getElementById('mirrors').innerText")
        .await;
    assert!(
        mirrors
            .as_str()
            .is_some_and(|m| m.contains("app") && m.contains("v1")),
        "{mirrors}"
    );
    for (button, want) in [
        ("pause", "paused · 10.0%"),
        ("promote", "progressing · 50.0%"),
        ("abort", "aborted · 0.0%"),
    ] {
        let b = format!("document.querySelector('#splits button[data-canary=\"{button}\"]')");
        assert!(
            page.wait_for(&format!("!!{b}"), 10).await,
            "a {button} button"
        );
        page.eval(&format!("{b}.click(), true")).await;
        assert!(
            page.wait_for(&format!("({state}).startsWith('{want}')"), 10)
                .await,
            "after {button}: {}",
            page.eval(state).await
        );
    }
    let canaries: Value = reqwest::get(format!("http://{}/canaries", gw.admin_addr()))
        .await
        .expect("canaries")
        .json()
        .await
        .expect("json");
    assert_eq!(canaries["splits"][0]["canary"]["state"], "aborted");
    let shot = page
        .call("Page.captureScreenshot", json!({"format": "png"}))
        .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().expect("png data"))
        .expect("base64");
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("deployments.png");
    std::fs::write(&out, &png).expect("write screenshot");
    let errors = page.errors();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

/// The certificates table: an ACME certificate whose CA cannot be reached shows its
/// self-signed stand-in, its expiry, the failed order and its error, and the next attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificates_table_shows_an_acme_certificate_waiting_for_its_ca() {
    let state = TempDir::new("dash-acme");
    let toml = format!(
        "admin = {{ bind = \"127.0.0.1:0\" }}\n\n[[listeners]]\nname = \"main\"\nbind = \"127.0.0.1:0\"\n\n[[listeners]]\nname = \"https\"\nbind = \"127.0.0.1:0\"\ntls = {{ acme = {{ domains = [\"shop.weir.test\"], directory = \"https://{}/dir\", state_dir = \"{}\" }} }}\n\n[[routes]]\nrespond = {{ body = \"ok\" }}\n",
        closed_addr(),
        state.0.display()
    );
    let gw = gateway(&toml).await;
    let browser = Chromium::launch();
    let mut page = Page::loaded(&browser, gw.admin_addr(), "certs-section").await;
    let row =
        "(document.querySelector('#certs tr[data-name=\"shop.weir.test\"]') || {}).innerText || ''";
    assert!(
        page.wait_for(
            &format!("!document.getElementById('certs-section').hidden && ({row}).includes('self-signed') && !({row}).includes('\\t0 · 0 · 0')"),
            20
        )
        .await,
        "the certificate's row: {}",
        page.eval(row).await
    );
    let text = page.eval(row).await;
    let text = text.as_str().expect("row");
    let cells: Vec<&str> = text.split('\t').collect();
    assert_eq!(cells.len(), 7, "{text}");
    assert!(
        cells[2].contains("(in 6d") || cells[2].contains("(in 7d"),
        "a week-long stand-in: {text}"
    );
    assert!(
        cells[3].contains("2026") || cells[3].contains('/'),
        "last attempt: {text}"
    );
    assert!(
        cells[4].contains("(in ") || cells[4].contains("(now)"),
        "next attempt: {text}"
    );
    assert_eq!(cells[5], "0 · 1 · 0", "a failed order: {text}");
    assert!(
        cells[6].starts_with("creating the account at https://"),
        "its error: {text}"
    );
    let errors = page.errors();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

impl Page {
    /// The dashboard of `admin`, once loaded with the element `id` in it.
    async fn loaded(browser: &Chromium, admin: SocketAddr, id: &str) -> Self {
        let mut page = Page::open(browser).await;
        page.call("Page.navigate", json!({"url": format!("http://{admin}/")}))
            .await;
        let ready =
            format!("document.readyState === 'complete' && !!document.getElementById('{id}')");
        assert!(page.wait_for(&ready, 20).await, "the page loads");
        page
    }
}
