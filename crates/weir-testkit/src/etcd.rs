//! A real `etcd` (Debian's `etcd-server`) for tests: one member on free loopback ports with
//! its own data directory, which can be stopped and started again on the same ports and data
//! (to test a watch that resumes), optionally with a second, TLS client listener (the helper
//! itself keeps to the plaintext one). Keys are written through etcd's JSON gateway. A missing
//! `etcd` is a loud failure, never a skip (the test command installs it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::redis::free_port;

/// A running (or stopped) etcd member.
pub struct EtcdServer {
    child: Option<Child>,
    /// Its client address.
    pub addr: SocketAddr,
    peer_port: u16,
    dir: PathBuf,
    /// Sent on every call once authentication is on.
    token: Option<String>,
    /// The TLS client listener: its port, certificate chain and key (PEM files).
    tls: Option<(u16, PathBuf, PathBuf)>,
}

impl EtcdServer {
    /// Starts one and waits until it answers.
    pub async fn start() -> Self {
        Self::launch(None).await
    }

    /// Starts one that also serves clients over TLS with `cert` and `key` (PEM files), at
    /// [`EtcdServer::tls_url`].
    pub async fn start_with_tls(cert: &Path, key: &Path) -> Self {
        Self::launch(Some((free_port(), cert.to_owned(), key.to_owned()))).await
    }

    async fn launch(tls: Option<(u16, PathBuf, PathBuf)>) -> Self {
        let dir =
            std::env::temp_dir().join(format!("weir-etcd-{}-{}", std::process::id(), free_port()));
        let mut server = Self {
            child: None,
            addr: ([127, 0, 0, 1], free_port()).into(),
            peer_port: free_port(),
            dir,
            token: None,
            tls,
        };
        server.resume().await;
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `https://127.0.0.1:PORT`, when started with TLS.
    pub fn tls_url(&self) -> Option<String> {
        self.tls
            .as_ref()
            .map(|(port, _, _)| format!("https://127.0.0.1:{port}"))
    }

    /// Starts the stopped member again, same ports and data, and waits until it answers.
    pub async fn resume(&mut self) {
        let mut client = self.url();
        let mut tls_args = Vec::new();
        if let (Some(url), Some((_, cert, key))) = (self.tls_url(), &self.tls) {
            client = format!("{client},{url}");
            tls_args = vec![
                "--cert-file".to_owned(),
                cert.display().to_string(),
                "--key-file".to_owned(),
                key.display().to_string(),
            ];
        }
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new("etcd")
            .args(tls_args)
            .args([
                "--name",
                "weir-test",
                "--data-dir",
                &self.dir.display().to_string(),
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
                "--initial-cluster",
                &format!("weir-test={peer}"),
                "--log-level",
                "error",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start etcd ({e}): install it (apt-get install etcd-server); ./scripts/test does")
            });
        self.child = Some(child);
        for _ in 0..400 {
            if self
                .call("/v3/kv/range", r#"{"key":"AA=="}"#)
                .await
                .is_some()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("etcd on {} did not answer within 10 s", self.addr);
    }

    /// Kills the member (its data stays for [`EtcdServer::resume`]).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Puts `key` = `value`, under `lease` when given.
    pub async fn put(&self, key: &str, value: &str, lease: Option<i64>) {
        let mut body = serde_json::json!({"key": b64(key), "value": b64(value)});
        if let Some(l) = lease {
            body["lease"] = l.to_string().into();
        }
        self.call("/v3/kv/put", &body.to_string())
            .await
            .expect("etcd put");
    }

    /// Deletes `key`.
    pub async fn delete(&self, key: &str) {
        let body = serde_json::json!({"key": b64(key)});
        self.call("/v3/kv/deleterange", &body.to_string())
            .await
            .expect("etcd delete");
    }

    /// Turns authentication on with user `root` / `password` (the root role); later calls
    /// from this helper authenticate as it.
    pub async fn enable_auth(&mut self, password: &str) {
        for (path, body) in [
            ("/v3/auth/role/add", serde_json::json!({"name": "root"})),
            (
                "/v3/auth/user/add",
                serde_json::json!({"name": "root", "password": password}),
            ),
            (
                "/v3/auth/user/grant",
                serde_json::json!({"user": "root", "role": "root"}),
            ),
            ("/v3/auth/enable", serde_json::json!({})),
        ] {
            self.call(path, &body.to_string())
                .await
                .unwrap_or_else(|| panic!("etcd {path}"));
        }
        let reply = self
            .call(
                "/v3/auth/authenticate",
                &serde_json::json!({"name": "root", "password": password}).to_string(),
            )
            .await
            .expect("etcd authenticate");
        self.token = reply["token"].as_str().map(str::to_owned);
    }

    /// Grants a lease of `ttl` seconds; returns its id.
    pub async fn grant(&self, ttl: u64) -> i64 {
        let body = serde_json::json!({"TTL": ttl.to_string()});
        let reply = self
            .call("/v3/lease/grant", &body.to_string())
            .await
            .expect("etcd lease grant");
        reply["ID"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .or_else(|| reply["ID"].as_i64())
            .expect("lease id")
    }

    /// POSTs JSON to the gateway; the reply, or `None` when etcd did not answer 200.
    pub async fn call(&self, path: &str, body: &str) -> Option<serde_json::Value> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.addr).await.ok()?;
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: {t}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        let text = String::from_utf8_lossy(&out);
        if !text.starts_with("HTTP/1.1 200") {
            return None;
        }
        let (_, body) = text.split_once("\r\n\r\n")?;
        // The gateway may answer chunked; the JSON object is what lies between the braces.
        let start = body.find('{')?;
        let end = body.rfind('}')?;
        serde_json::from_str(&body[start..=end]).ok()
    }
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
