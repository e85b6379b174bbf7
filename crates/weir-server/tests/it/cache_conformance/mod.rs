//! RFC 9111 (with RFC 5861, 9110, 9211, 9213) conformance of the shared cache, one test per
//! requirement of the cache issue, through real sockets: a client, an in-process Weir with a
//! cache on its one route, and an in-process origin whose answers each test scripts and
//! whose received requests each test inspects. Section numbers are RFC 9111's unless named.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Request, Response};
use hyper::body::Incoming;
use weir_testkit::Body;

use crate::common::*;

/// A request as the origin saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: HeaderMap,
}

/// The origin's answer to the `n`th request (from 1) for a target.
type Script = dyn Fn(&Seen, usize) -> Response<Body> + Send + Sync;

struct Rig {
    gw: Gateway,
    origin: Origin,
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Response<Body> {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "text/plain");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(full(body.to_owned())).expect("response")
}

/// An origin script answering 200 with `headers` and the body `v1`, `v2`, … per target.
fn versions(
    headers: &'static [(&'static str, &'static str)],
) -> impl Fn(&Seen, usize) -> Response<Body> + Send + Sync + 'static {
    move |_, n| reply(200, headers, &format!("v{n}"))
}

fn cache_top(extra: &str) -> String {
    format!("[[caches]]\nname = \"edge\"\nmax_memory = \"16MiB\"\n{extra}\n")
}

async fn scripted_origin(script: Arc<Script>, seen: Arc<Mutex<Vec<Seen>>>) -> Origin {
    origin(move |req: Request<Incoming>| {
        let (script, seen) = (script.clone(), seen.clone());
        async move {
            let s = Seen {
                method: req.method().to_string(),
                target: req
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_owned(),
                headers: req.headers().clone(),
            };
            let n = {
                let mut all = seen.lock().expect("seen");
                all.push(s.clone());
                all.iter().filter(|x| x.target == s.target).count()
            };
            script(&s, n)
        }
    })
    .await
}

/// Weir with `cache = "edge"` (settings `extra`, route keys `route`) before a scripted origin.
async fn rig_with(
    extra: &str,
    route: &str,
    script: impl Fn(&Seen, usize) -> Response<Body> + Send + Sync + 'static,
) -> Rig {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let origin = scripted_origin(Arc::new(script), seen.clone()).await;
    let route = format!("cache = \"edge\"\n{route}");
    let gw = gateway(&guarded_config(
        origin.addr,
        &cache_top(extra),
        "",
        "",
        &route,
    ))
    .await;
    Rig { gw, origin, seen }
}

async fn rig(
    extra: &str,
    script: impl Fn(&Seen, usize) -> Response<Body> + Send + Sync + 'static,
) -> Rig {
    rig_with(extra, "", script).await
}

struct Got {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Got {
    fn cache_status(&self) -> &str {
        self.header("cache-status")
    }
    fn hit(&self) -> bool {
        self.cache_status().starts_with("edge; hit")
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl Rig {
    async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Got {
        let m = http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut r = client().request(m, self.gw.url(path));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let r = r.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.text().await.expect("body");
        // The store is written once the body has gone by: wait until every fill is done.
        caches_settled(&self.gw).await;
        Got {
            status,
            headers,
            body,
        }
    }
    async fn get(&self, path: &str) -> Got {
        self.send("GET", path, &[]).await
    }
    /// Requests the origin received for `target`.
    fn seen(&self, target: &str) -> Vec<Seen> {
        let all = self.seen.lock().expect("seen");
        all.iter().filter(|s| s.target == target).cloned().collect()
    }
    fn hits(&self, target: &str) -> usize {
        self.seen(target).len()
    }
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

fn days_ago(d: u64) -> String {
    http_date(SystemTime::now() - Duration::from_secs(d * 86_400))
}

mod disk;
mod fields;
mod freshness;
mod stale;
mod storing;
mod validation;
