//! etcd v3 discovery, through etcd's JSON gateway (`/v3/kv/range`, `/v3/watch`; the same
//! API as gRPC, so no protobuf toolchain): the prefix is read once, then watched from the
//! revision after the read. A watch that breaks (etcd restarted, the network) is resumed from
//! the last revision seen, so no change is missed; when etcd has compacted past it, the
//! prefix is read again. Reconnects back off from 100 ms to 10 s, trying each configured
//! member in turn. With `username`, a token from `/v3/auth/authenticate` is sent on every
//! call.
//!
//! Each key's value is `{"address": "HOST:PORT", "weight": N, "metadata": {...}}`; a value
//! that is not is skipped and counted (`invalid`), the other keys still apply.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::{Buf, Bytes, BytesMut};
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use weir_config::{EtcdDiscovery, UpstreamProtocol};

use super::{entry, sleep_until, wait, Feed};
use crate::member::{Source, Wanted};
use crate::pool::TlsTo;

/// Longest watch message accepted (one event batch).
const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// Why a call to etcd failed: the reason counted, and the message.
type Failure = (&'static str, String);

pub(super) async fn run(
    cfg: EtcdDiscovery,
    upstream: Arc<str>,
    mut feed: Feed,
    token: CancellationToken,
) {
    let https = cfg.endpoints.iter().any(|e| e.starts_with("https://"));
    let default_tls = weir_config::UpstreamTls::default();
    let tls = match cfg.tls.as_ref().or(https.then_some(&default_tls)) {
        Some(t) => match crate::tls::connector(&upstream, t, UpstreamProtocol::Http1) {
            Ok(t) => Some(Arc::new(t)),
            Err(e) => {
                feed.failure("tls", e);
                return;
            }
        },
        None => None,
    };
    let mut watcher = Watcher {
        cfg: &cfg,
        tls,
        member: 0,
        keys: BTreeMap::new(),
        revision: None,
        recheck: None,
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        if !feed.alive() {
            return;
        }
        let outcome = tokio::select! {
            () = token.cancelled() => return,
            r = watcher.session(&mut feed) => r,
        };
        if let Err((reason, message)) = outcome {
            feed.failure(reason, message);
            watcher.member += 1;
            if !wait(&token, Some(std::time::Instant::now() + backoff)).await {
                return;
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        } else {
            backoff = Duration::from_millis(100);
        }
    }
}

struct Watcher<'a> {
    cfg: &'a EtcdDiscovery,
    tls: Option<Arc<TlsTo>>,
    /// Which configured member to use (modulo their count).
    member: usize,
    /// The endpoints under the prefix, by key.
    keys: BTreeMap<String, Wanted>,
    /// The revision `keys` reflects; `None`: read the prefix again.
    revision: Option<i64>,
    /// When an empty prefix's grace ends: publish again then, events or not.
    recheck: Option<std::time::Instant>,
}

impl Watcher<'_> {
    /// One connection's life: authenticate, read the prefix if needed, then watch until the
    /// stream ends. Ok when it ended cleanly (and should be resumed).
    async fn session(&mut self, feed: &mut Feed) -> Result<(), Failure> {
        let url = self
            .cfg
            .endpoints
            .get(self.member % self.cfg.endpoints.len().max(1))
            .ok_or(("config", "no etcd endpoints".to_owned()))?
            .clone();
        let uri: Uri = url
            .parse()
            .map_err(|e| ("config", format!("etcd endpoint `{url}`: {e}")))?;
        let token = self.authenticate(&uri).await?;
        let (start, end) = prefix_range(&self.cfg.prefix);
        if self.revision.is_none() {
            let body = json!({"key": B64.encode(&start), "range_end": B64.encode(&end)});
            let reply = self
                .call(&uri, "/v3/kv/range", &body, token.as_deref())
                .await?;
            self.keys.clear();
            for kv in reply["kvs"].as_array().into_iter().flatten() {
                self.put(kv, feed);
            }
            self.revision = Some(int(&reply["header"]["revision"]));
            self.publish(feed);
        }
        let from = self.revision.unwrap_or(0) + 1;
        let create = json!({"create_request": {
            "key": B64.encode(&start),
            "range_end": B64.encode(&end),
            "start_revision": from.to_string(),
        }});
        let mut stream = self
            .open(&uri, "/v3/watch", &create, token.as_deref())
            .await?;
        let mut buf = BytesMut::new();
        loop {
            let next = tokio::select! {
                f = stream.frame() => Some(f),
                () = sleep_until(self.recheck) => None,
            };
            let Some(next) = next else {
                self.publish(feed);
                continue;
            };
            let frame = match next {
                None => return Ok(()),
                Some(Err(e)) => return Err(("watch", format!("watch stream: {e}"))),
                Some(Ok(frame)) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            if buf.len() > MAX_MESSAGE {
                return Err(("watch", "watch message too large".into()));
            }
            while let Some(line) = next_line(&mut buf) {
                let msg: Value = serde_json::from_slice(&line)
                    .map_err(|e| ("watch", format!("watch message: {e}")))?;
                if let Some(err) = msg.get("error") {
                    return Err(("watch", format!("watch: {err}")));
                }
                let result = &msg["result"];
                if int(&result["compact_revision"]) > 0 {
                    // Compacted past our revision: start over with a full read.
                    self.revision = None;
                    return Err((
                        "compacted",
                        "etcd compacted past the watched revision; reading the prefix again".into(),
                    ));
                }
                if result["canceled"].as_bool() == Some(true) {
                    return Err((
                        "watch",
                        format!("watch canceled: {}", result["cancel_reason"]),
                    ));
                }
                let events = result["events"].as_array();
                for ev in events.into_iter().flatten() {
                    let kv = &ev["kv"];
                    if ev["type"].as_str() == Some("DELETE") {
                        self.keys.remove(&key_of(kv));
                    } else {
                        self.put(kv, feed);
                    }
                    self.revision = Some(self.revision.unwrap_or(0).max(int(&kv["mod_revision"])));
                }
                if events.is_some_and(|e| !e.is_empty()) {
                    self.publish(feed);
                }
            }
        }
    }

    fn put(&mut self, kv: &Value, feed: &Feed) {
        let key = key_of(kv);
        let value = kv["value"]
            .as_str()
            .and_then(|v| B64.decode(v).ok())
            .unwrap_or_default();
        let parsed = serde_json::from_slice::<Value>(&value)
            .map_err(|e| e.to_string())
            .and_then(|v| entry(&v, Source::Etcd));
        match parsed {
            Ok(w) => {
                self.keys.insert(key, w);
            }
            Err(e) => {
                self.keys.remove(&key);
                feed.failure("invalid", format!("etcd key `{key}`: {e}"));
            }
        }
    }

    fn publish(&mut self, feed: &mut Feed) {
        let endpoints: Vec<Wanted> = self.keys.values().cloned().collect();
        self.recheck = feed.answer(endpoints);
    }

    async fn authenticate(&self, uri: &Uri) -> Result<Option<String>, Failure> {
        let (Some(user), Some(password)) = (&self.cfg.username, &self.cfg.password) else {
            return Ok(None);
        };
        let body = json!({"name": user, "password": password.expose()});
        let reply = self.call(uri, "/v3/auth/authenticate", &body, None).await?;
        reply["token"]
            .as_str()
            .map(|t| Some(t.to_owned()))
            .ok_or(("auth", format!("etcd refused the credentials: {reply}")))
    }

    /// A unary call: POST the JSON body, read the JSON reply.
    async fn call(
        &self,
        uri: &Uri,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Result<Value, Failure> {
        let timeout = self.cfg.timeout.get();
        let read = async {
            let resp = self.open(uri, path, body, token).await?;
            let bytes = resp
                .collect()
                .await
                .map_err(|e| ("unreachable", format!("etcd {path}: {e}")))?
                .to_bytes();
            let value: Value = serde_json::from_slice(&bytes)
                .map_err(|e| ("invalid", format!("etcd {path}: {e}")))?;
            if let Some(err) = value.get("error").or_else(|| value.get("message")) {
                return Err(("refused", format!("etcd {path}: {err}")));
            }
            Ok(value)
        };
        tokio::time::timeout(timeout, read).await.map_err(|_| {
            (
                "timeout",
                format!("etcd {path}: no answer within {timeout:?}"),
            )
        })?
    }

    /// Sends a POST on a new connection and returns the response body as it streams.
    async fn open(
        &self,
        uri: &Uri,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Result<Incoming, Failure> {
        let unreachable = |e: &dyn std::fmt::Display| ("unreachable", format!("etcd {uri}: {e}"));
        let authority = uri
            .authority()
            .ok_or_else(|| unreachable(&"no host"))?
            .clone();
        let port = authority
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                2379
            });
        let tcp = tokio::time::timeout(
            self.cfg.timeout.get(),
            TcpStream::connect((authority.host(), port)),
        )
        .await
        .map_err(|_| ("timeout", format!("etcd {uri}: connect timed out")))?
        .map_err(|e| unreachable(&e))?;
        let _ = tcp.set_nodelay(true);
        let mut req = Request::post(path)
            .header(http::header::HOST, authority.as_str())
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(t) = token {
            req = req.header(http::header::AUTHORIZATION, t);
        }
        let req = req
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| unreachable(&e))?;
        let resp = match &self.tls {
            Some(tls) => {
                let name = match &tls.sni {
                    Some(n) => n.clone(),
                    None => rustls::pki_types::ServerName::try_from(authority.host().to_owned())
                        .map_err(|e| unreachable(&e))?,
                };
                let stream = tls
                    .connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| unreachable(&e))?;
                send(TokioIo::new(stream), req).await
            }
            _ => send(TokioIo::new(tcp), req).await,
        }
        .map_err(|e| unreachable(&e))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err((
                "refused",
                format!("etcd {path}: {status}: {}", String::from_utf8_lossy(&text)),
            ));
        }
        Ok(resp.into_body())
    }
}

async fn send<I>(io: I, req: Request<Full<Bytes>>) -> Result<http::Response<Incoming>, hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await
}

/// The key range of a prefix: `[prefix, prefix with its last byte + 1)`.
fn prefix_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    let start = prefix.as_bytes().to_vec();
    let mut end = start.clone();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return (start, end);
        }
    }
    // All 0xff (or empty): to the end of the keyspace.
    (start, vec![0])
}

fn key_of(kv: &Value) -> String {
    kv["key"]
        .as_str()
        .and_then(|k| B64.decode(k).ok())
        .map(|k| String::from_utf8_lossy(&k).into_owned())
        .unwrap_or_default()
}

/// etcd's JSON carries 64-bit integers as strings.
fn int(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

/// Takes one newline-terminated message off the front of `buf`.
fn next_line(buf: &mut BytesMut) -> Option<Bytes> {
    let at = buf.iter().position(|&b| b == b'\n')?;
    let line = buf.split_to(at).freeze();
    buf.advance(1);
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges() {
        assert_eq!(
            prefix_range("/svc/a/"),
            (b"/svc/a/".to_vec(), b"/svc/a0".to_vec())
        );
        assert_eq!(prefix_range(""), (Vec::new(), vec![0]));
    }

    #[test]
    fn lines_split_at_newlines() {
        let mut buf = BytesMut::from(&b"{\"a\":1}\n{\"b\""[..]);
        assert_eq!(next_line(&mut buf).as_deref(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(next_line(&mut buf), None);
        assert_eq!(&buf[..], b"{\"b\"");
    }
}
