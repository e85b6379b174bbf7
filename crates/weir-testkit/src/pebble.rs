//! A real ACME server for tests: Debian's `pebble` (Let's Encrypt's RFC 8555 test server),
//! started on free loopback ports with its own HTTPS certificate from a test CA, validating
//! against the ports Weir listens on, and resolving names through a test DNS server. A missing
//! `pebble` is a loud failure, never a skip (the test command installs it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::redis::free_port;

/// A running pebble.
pub struct Pebble {
    child: Child,
    /// The ACME API (`/dir` is the directory).
    pub addr: SocketAddr,
    /// The management API (`/roots/0` is the root that signs what pebble issues).
    pub management: SocketAddr,
    dir: PathBuf,
    config: PathBuf,
    dns: SocketAddr,
}

/// How pebble validates: the ports Weir answers HTTP-01 and TLS-ALPN-01 on, the DNS server
/// that resolves the names, and how long what it issues is valid (seconds; pebble's default
/// of about five years when `None`).
pub struct PebbleOptions {
    pub http_port: u16,
    pub tls_port: u16,
    pub dns: SocketAddr,
    pub validity_secs: Option<u64>,
}

impl Pebble {
    /// Starts pebble and waits until its directory answers.
    pub async fn start(opts: PebbleOptions) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "weir-pebble-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("pebble dir");
        // Pebble's own HTTPS certificate, from a CA the tests (and Weir's directory_ca) trust.
        let ca_key = rcgen::KeyPair::generate().expect("ca key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "pebble test CA");
        let ca = ca_params.self_signed(&ca_key).expect("ca cert");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
        let leaf = params.signed_by(&key, &issuer).expect("leaf");
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write ca");
        std::fs::write(dir.join("cert.pem"), leaf.pem()).expect("write cert");
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write key");
        let (api, mgmt) = (free_port(), free_port());
        let mut cfg = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{api}"),
                "managementListenAddress": format!("127.0.0.1:{mgmt}"),
                "certificate": dir.join("cert.pem"),
                "privateKey": dir.join("key.pem"),
                "httpPort": opts.http_port,
                "tlsPort": opts.tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }
        });
        if let Some(v) = opts.validity_secs {
            cfg["pebble"]["certificateValidityPeriod"] = v.into();
        }
        let config = dir.join("pebble.json");
        std::fs::write(&config, cfg.to_string()).expect("write config");
        let mut pebble = Self {
            child: spawn(&config, opts.dns),
            addr: ([127, 0, 0, 1], api).into(),
            management: ([127, 0, 0, 1], mgmt).into(),
            dir,
            config,
            dns: opts.dns,
        };
        pebble.wait_ready().await;
        pebble
    }

    async fn wait_ready(&mut self) {
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok()
                && tokio::net::TcpStream::connect(self.management)
                    .await
                    .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("pebble on {} did not start within 10 s", self.addr);
    }

    /// The ACME directory URL.
    pub fn directory(&self) -> String {
        format!("https://{}/dir", self.addr)
    }

    /// The CA that signs pebble's own HTTPS certificate (for `directory_ca`).
    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Pebble's own HTTPS certificate and key (for a front that stands in its place).
    pub fn https_identity(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("cert.pem"), self.dir.join("key.pem"))
    }

    /// Stops pebble (its ports then refuse connections; everything it issued is forgotten).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same ports (a new CA: pebble keeps nothing between runs).
    pub async fn restart(&mut self) {
        self.stop();
        self.child = spawn(&self.config, self.dns);
        self.wait_ready().await;
    }
}

fn spawn(config: &std::path::Path, dns: SocketAddr) -> Child {
    Command::new("pebble")
        .arg("-config")
        .arg(config)
        .arg("-dnsserver")
        .arg(dns.to_string())
        // Validation at once (no random sleeps) and no deliberately refused nonces: the tests
        // are about Weir, not pebble's chaos.
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .env("PEBBLE_AUTHZREUSE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start pebble ({e}): install it (apt-get install pebble); ./scripts/test does")
        })
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
