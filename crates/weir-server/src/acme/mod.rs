//! Certificates that manage themselves (`tls.acme` on a listener): Weir is its own RFC 8555
//! client (through `instant-acme`, on aws-lc-rs like the rest of its TLS).
//!
//! ```toml
//! [[listeners]]
//! name = "https"
//! bind = ":443"
//! tls = { acme = { domains = ["example.com", "www.example.com"], contact = ["mailto:ops@example.com"] } }
//! ```
//!
//! At start a listener serves what its state directory holds, or a temporary self-signed
//! certificate when it holds nothing yet (Weir never refuses to start for want of one), and
//! orders what is due: a first certificate at once, a renewal at two thirds of the lifetime —
//! or earlier, at a random point of the window the CA's renewal information (RFC 9773, ARI)
//! suggests when its directory offers it (checked again when the CA's `Retry-After` says; the
//! renewal order then names the certificate it `replaces`). A failed order is retried with
//! backoff and jitter (5 s doubling to an hour). HTTP-01 is answered on plain listeners before routing, only for tokens Weir has outstanding;
//! TLS-ALPN-01 in the handshake (`acme-tls/1`, RFC 8737). An issued certificate is swapped in
//! for new handshakes; open connections keep theirs.

pub(crate) mod fleet;
mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, ExternalAccountKey,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::sign::CertifiedKey;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use weir_config::AcmeChallenge;

use store::StateDir;

/// The ALPN protocol of TLS-ALPN-01 validation handshakes.
pub(crate) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The least time between two renewals the CA's renewal information brings forward.
const ARI_MIN_INTERVAL: Duration = Duration::from_secs(3600);

/// The path prefix of HTTP-01 requests.
const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// The answer to an HTTP-01 validation request, when `path` asks for a token this instance —
/// or, with `fleet`, any instance of the fleet — has outstanding (anything else goes on to the
/// routes).
pub(crate) async fn http01_answer(
    path: &str,
    fleet: Option<&weir_policy::RedisStore>,
) -> Option<http::Response<weir_core::ResponseBody>> {
    let token = path.strip_prefix(HTTP01_PREFIX)?;
    let key_auth = match challenges().http01(token) {
        Some(k) => k,
        None => fleet::http01(fleet?, token).await?,
    };
    let mut resp = http::Response::new(weir_core::ResponseBody::full(key_auth));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    Some(resp)
}

/// Every managed certificate's samples.
pub(crate) fn render(certs: &[Arc<ManagedCert>], e: &mut weir_core::prometheus::Exposition) {
    use weir_core::prometheus::Kind;
    let statuses: Vec<CertStatus> = certs.iter().map(|c| c.status()).collect();
    let names: Vec<[(&str, &str); 1]> = statuses
        .iter()
        .map(|s| [("name", s.name.as_str())])
        .collect();
    e.family(
        "weir_tls_certificate_expiry_timestamp_seconds",
        Kind::Gauge,
        "When the certificate each ACME-managed name serves expires (Unix time); a temporary self-signed one counts.",
        names
            .iter()
            .zip(&statuses)
            .filter_map(|(l, s)| Some((&l[..], s.not_after? as f64))),
    );
    e.family(
        "weir_tls_certificate_self_signed",
        Kind::Gauge,
        "1 while a name is served a temporary self-signed certificate (the CA has not issued one yet).",
        names
            .iter()
            .zip(&statuses)
            .map(|(l, s)| (&l[..], weir_core::prometheus::flag(s.source == "self_signed"))),
    );
    let results: Vec<([(&str, &str); 2], u64)> = statuses
        .iter()
        .flat_map(|s| {
            [
                ([("name", s.name.as_str()), ("result", "ok")], s.orders_ok),
                (
                    [("name", s.name.as_str()), ("result", "error")],
                    s.orders_failed,
                ),
            ]
        })
        .collect();
    e.family(
        "weir_acme_orders_total",
        Kind::Counter,
        "ACME orders by result (a failed one is retried with backoff; the current certificate keeps serving).",
        results.iter().map(|(l, n)| (&l[..], *n as f64)),
    );
    e.family(
        "weir_acme_next_attempt_timestamp_seconds",
        Kind::Gauge,
        "When each name's next order is due (Unix time).",
        names
            .iter()
            .zip(&statuses)
            .filter_map(|(l, s)| Some((&l[..], s.next_attempt? as f64))),
    );
    e.family(
        "weir_acme_renewal_window_start_timestamp_seconds",
        Kind::Gauge,
        "Start of the renewal window the CA's renewal information (ARI, RFC 9773) suggests for each name's certificate (Unix time); absent without ARI.",
        names.iter().zip(&statuses).filter_map(|(l, s)| {
            Some((&l[..], s.renewal_window.as_ref()?.start as f64))
        }),
    );
    e.family(
        "weir_acme_renewal_window_end_timestamp_seconds",
        Kind::Gauge,
        "End of that window (Unix time).",
        names
            .iter()
            .zip(&statuses)
            .filter_map(|(l, s)| Some((&l[..], s.renewal_window.as_ref()?.end as f64))),
    );
}

/// Challenges this process has outstanding: HTTP-01 key authorizations by token, TLS-ALPN-01
/// certificates by domain. One per process: every listener answers for every order.
#[derive(Default)]
pub(crate) struct Challenges {
    http: Mutex<HashMap<String, String>>,
    tls_alpn: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

/// The process's outstanding challenges.
pub(crate) fn challenges() -> &'static Challenges {
    static CHALLENGES: std::sync::OnceLock<Challenges> = std::sync::OnceLock::new();
    CHALLENGES.get_or_init(Challenges::default)
}

impl Challenges {
    /// The key authorization for an HTTP-01 token, when Weir has it outstanding.
    pub(crate) fn http01(&self, token: &str) -> Option<String> {
        self.http
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
    }

    /// The RFC 8737 certificate for a TLS-ALPN-01 handshake for `domain`.
    pub(crate) fn tls_alpn01(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        self.tls_alpn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(domain)
            .cloned()
    }
}

/// What a managed certificate is doing, for `/status`, metrics and the dashboard.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct CertStatus {
    /// The certificate's name (its first domain).
    pub(crate) name: String,
    pub(crate) domains: Vec<String>,
    /// `acme` (issued by the CA) or `self_signed` (a stand-in until the CA issues one).
    pub(crate) source: &'static str,
    /// When the certificate served now expires (Unix seconds).
    pub(crate) not_after: Option<u64>,
    /// When the next order is due (Unix seconds).
    pub(crate) next_attempt: Option<u64>,
    pub(crate) last_attempt: Option<u64>,
    pub(crate) last_success: Option<u64>,
    pub(crate) last_error: Option<String>,
    /// Why the next attempt is due when it is: `first certificate`, `two thirds of lifetime`,
    /// `renewal information` (the CA's ARI window) or `retry` (after a failure).
    pub(crate) next_attempt_reason: &'static str,
    /// What the CA's renewal information last said of the certificate served now (with ARI).
    pub(crate) renewal_window: Option<RenewalWindow>,
    pub(crate) orders_ok: u64,
    pub(crate) orders_failed: u64,
    /// Certificates another instance of the fleet ordered, taken from Redis.
    pub(crate) adopted: u64,
    /// Shared with a fleet through Redis.
    pub(crate) fleet: bool,
}

/// The renewal window a CA suggested for one certificate (RFC 9773), Unix seconds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RenewalWindow {
    pub(crate) start: u64,
    pub(crate) end: u64,
    /// The CA's page explaining the window (e.g. why it is early: a revocation).
    pub(crate) explanation_url: Option<String>,
    /// When Weir asked, and when it asks again (the CA's `Retry-After`, 1 minute to 1 day).
    pub(crate) checked: u64,
    pub(crate) next_check: u64,
}

/// How a due certificate was obtained.
enum Obtained {
    /// This instance ordered it.
    Ordered(u64),
    /// Another instance of the fleet did.
    Adopted(u64),
}

/// One listener's ACME-managed certificate.
pub(crate) struct ManagedCert {
    cfg: weir_config::Acme,
    state: StateDir,
    /// With `fleet_key` and `[redis]`: the fleet this certificate is shared with.
    fleet: Option<fleet::Fleet>,
    /// What new handshakes get.
    current: ArcSwap<CertifiedKey>,
    pub(crate) status: Mutex<CertStatus>,
}

impl std::fmt::Debug for ManagedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedCert")
            .field("domains", &self.cfg.domains)
            .finish_non_exhaustive()
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why an order failed, in words for `/status`.
type OrderError = String;

impl ManagedCert {
    /// The stored certificate when there is one for these domains, else a self-signed stand-in.
    pub(crate) fn load(
        cfg: &weir_config::Acme,
        redis: Option<&weir_config::Redis>,
        provider: &rustls::crypto::CryptoProvider,
    ) -> Result<Self, String> {
        let fleet = match (&cfg.fleet_key, redis) {
            (Some(key), Some(r)) => Some(fleet::Fleet::new(
                weir_policy::RedisStore::shared(r),
                key.expose(),
            )?),
            _ => None,
        };
        let state = StateDir::new(&cfg.state_dir);
        let name = cfg.domains.first().cloned().unwrap_or_default();
        let (cert_path, key_path) = state.cert_paths(&name);
        let mut status = CertStatus {
            name: name.clone(),
            domains: cfg.domains.clone(),
            fleet: fleet.is_some(),
            ..CertStatus::default()
        };
        let stored = load_pair(&cert_path, &key_path, provider)
            .ok()
            .filter(|(_, names, _)| {
                cfg.domains
                    .iter()
                    .all(|d| names.contains(&d.to_ascii_lowercase()))
            });
        let key = match stored {
            Some((key, _, not_after)) => {
                status.source = "acme";
                status.not_after = Some(not_after);
                key
            }
            None => {
                status.source = "self_signed";
                let key = self_signed(&cfg.domains, provider)?;
                status.not_after = key.cert.first().and_then(|c| validity(c)).map(|v| v.1);
                tracing::warn!(certificate = %name, "no certificate from the CA yet: serving a temporary self-signed one until it is issued");
                key
            }
        };
        Ok(Self {
            cfg: cfg.clone(),
            state,
            fleet,
            current: ArcSwap::new(key),
            status: Mutex::new(status),
        })
    }

    /// The names this certificate serves (lowercase).
    pub(crate) fn domains(&self) -> &[String] {
        &self.cfg.domains
    }

    /// The certificate new handshakes get.
    pub(crate) fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    pub(crate) fn status(&self) -> CertStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// When the next order is due: now without a CA certificate, else at two thirds of its
    /// lifetime.
    fn due(&self) -> (SystemTime, &'static str) {
        if self.status.lock().unwrap_or_else(|p| p.into_inner()).source != "acme" {
            return (SystemTime::now(), "first certificate");
        }
        let leaf = self.current();
        let Some((not_before, not_after)) = leaf.cert.first().and_then(|c| validity(c)) else {
            return (SystemTime::now(), "first certificate");
        };
        let life = not_after.saturating_sub(not_before);
        (
            SystemTime::UNIX_EPOCH + Duration::from_secs(not_before + life * 2 / 3),
            "two thirds of lifetime",
        )
    }

    /// Shows when the next attempt is due and why.
    fn set_next(&self, due: SystemTime, reason: &'static str) {
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        st.next_attempt = Some(unix(due));
        st.next_attempt_reason = reason;
    }

    /// The RFC 9773 identifier of the CA certificate served now (none for a stand-in).
    fn served_id(&self) -> Option<instant_acme::CertificateIdentifier<'static>> {
        if self.status().source != "acme" {
            return None;
        }
        let leaf = self.current().cert.first()?.clone();
        instant_acme::CertificateIdentifier::try_from(&leaf)
            .ok()
            .map(instant_acme::CertificateIdentifier::into_owned)
    }

    /// What the CA's renewal information says of the certificate served now, when its
    /// directory offers ARI: the window, a uniformly random point in it (so a fleet, or the
    /// CA's many clients, do not all renew at the same instant) and when to ask again.
    /// `None` when the CA has no ARI or cannot be asked now (the lifetime rule then holds).
    async fn renewal_info(&self) -> Option<(RenewalWindow, SystemTime)> {
        let id = self.served_id()?;
        let account = self.account().await.ok()?;
        let (info, retry_after) = match account.renewal_info(&id).await {
            Ok(r) => r,
            Err(instant_acme::Error::Unsupported(_)) => return None,
            Err(e) => {
                tracing::debug!(certificate = %self.status().name, error = %e, "ACME renewal information unavailable");
                return None;
            }
        };
        let (start, end) = (
            u64::try_from(info.suggested_window.start.unix_timestamp()).unwrap_or(0),
            u64::try_from(info.suggested_window.end.unix_timestamp()).unwrap_or(0),
        );
        let now = SystemTime::now();
        let recheck = retry_after.clamp(Duration::from_secs(60), Duration::from_secs(86_400));
        let window = RenewalWindow {
            start,
            end,
            explanation_url: info.explanation_url,
            checked: unix(now),
            next_check: unix(now + recheck),
        };
        let span = end.saturating_sub(start);
        let pick = start + (span as f64 * fastrand::f64()) as u64;
        Some((window, SystemTime::UNIX_EPOCH + Duration::from_secs(pick)))
    }

    /// Orders and renews until `stop`: sleeps until due, orders, swaps the certificate in;
    /// after a failure waits 5 s, doubling to an hour, with ±20 % jitter.
    pub(crate) async fn run(
        self: Arc<Self>,
        provider: Arc<rustls::crypto::CryptoProvider>,
        stop: CancellationToken,
    ) {
        let mut failures = 0u32;
        // An ARI-driven renewal replaces the certificate it was asked about; a CA that keeps
        // saying "renew now" of the new one too is followed at most once an hour.
        let mut last_ari_order: Option<tokio::time::Instant> = None;
        loop {
            let (mut due, mut reason) = if failures == 0 {
                self.due()
            } else {
                let base =
                    Duration::from_secs(5).saturating_mul(1 << failures.min(10).saturating_sub(1));
                let base = base.min(Duration::from_secs(3600));
                let jitter = base.mul_f64(0.8 + 0.4 * fastrand::f64());
                (SystemTime::now() + jitter, "retry")
            };
            self.set_next(due, reason);
            let mut recheck = None;
            if failures == 0 {
                let mut window = None;
                if let Some((w, pick)) = tokio::select! {
                    () = stop.cancelled() => return,
                    r = self.renewal_info() => r,
                } {
                    let pick = match last_ari_order {
                        Some(t) if t.elapsed() < ARI_MIN_INTERVAL => {
                            pick.max(SystemTime::now() + (ARI_MIN_INTERVAL - t.elapsed()))
                        }
                        _ => pick,
                    };
                    if pick < due {
                        (due, reason) = (pick, "renewal information");
                    }
                    recheck = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(w.next_check));
                    window = Some(w);
                }
                self.status
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .renewal_window = window;
                self.set_next(due, reason);
            }
            // Woken early to ask the CA's renewal information again: the window may have moved.
            let wake = recheck.map_or(due, |r| r.min(due));
            let wait = wake.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            if wake < due {
                continue;
            }
            let by_ari = reason == "renewal information";
            let now = unix(SystemTime::now());
            self.status
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .last_attempt = Some(now);
            let outcome = tokio::select! {
                () = stop.cancelled() => return,
                r = self.obtain(&provider) => r,
            };
            let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
            match outcome {
                Ok(got) => {
                    failures = 0;
                    if by_ari {
                        last_ari_order = Some(tokio::time::Instant::now());
                    }
                    let not_after = match got {
                        Obtained::Ordered(n) => {
                            st.orders_ok += 1;
                            tracing::info!(certificate = %st.name, not_after = n, "certificate issued by the CA and in service");
                            n
                        }
                        Obtained::Adopted(n) => {
                            st.adopted += 1;
                            tracing::info!(certificate = %st.name, not_after = n, "certificate from the fleet in service");
                            n
                        }
                    };
                    st.source = "acme";
                    // The window was the replaced certificate's.
                    st.renewal_window = None;
                    st.not_after = Some(not_after);
                    st.last_success = Some(now);
                    st.last_error = None;
                }
                Err(e) => {
                    failures += 1;
                    st.orders_failed += 1;
                    tracing::warn!(certificate = %st.name, error = %e, "certificate order failed; the current certificate keeps serving");
                    st.last_error = Some(e);
                }
            }
        }
    }

    /// A due certificate: alone, an order; in a fleet, the fleet's certificate when it is newer
    /// and not yet due, else the order this instance leads (holding the lock) or follows.
    async fn obtain(
        &self,
        provider: &rustls::crypto::CryptoProvider,
    ) -> Result<Obtained, OrderError> {
        let Some(fleet) = &self.fleet else {
            return self.order(provider).await.map(Obtained::Ordered);
        };
        let name = self.cfg.domains.first().cloned().unwrap_or_default();
        if let Some(n) = self.adopt(fleet, &name, provider).await? {
            return Ok(Obtained::Adopted(n));
        }
        if fleet.lock(&name).await? {
            let ordered = self.order(provider).await;
            fleet.unlock(&name).await;
            return ordered.map(Obtained::Ordered);
        }
        // Another instance orders: answer its TLS-ALPN-01 validations here too, and take its
        // certificate when it lands.
        let mut published = Published::default();
        let deadline = tokio::time::Instant::now() + fleet::LOCK_TTL;
        loop {
            if self.cfg.challenge == AcmeChallenge::TlsAlpn01 {
                for d in &self.cfg.domains {
                    if let Some(pem) = fleet.alpn(d).await? {
                        published.tls_alpn(d.clone(), certified_from_pem(&pem, provider)?);
                    }
                }
            }
            if let Some(n) = self.adopt(fleet, &name, provider).await? {
                return Ok(Obtained::Adopted(n));
            }
            if !fleet.locked(&name).await? || tokio::time::Instant::now() > deadline {
                return Err("the fleet's order ended without a certificate".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Takes the fleet's certificate for `name` when it is not yet due for renewal and expires
    /// later than the one served now; keeps a copy in the state directory.
    async fn adopt(
        &self,
        fleet: &fleet::Fleet,
        name: &str,
        provider: &rustls::crypto::CryptoProvider,
    ) -> Result<Option<u64>, OrderError> {
        let Some((chain, key)) = fleet.certificate(name).await? else {
            return Ok(None);
        };
        let certified = certified_from_pem(&format!("{chain}\n{key}"), provider)?;
        let Some((not_before, not_after)) = certified.cert.first().and_then(|c| validity(c)) else {
            return Ok(None);
        };
        let due = not_before + (not_after.saturating_sub(not_before)) * 2 / 3;
        let status = self.status();
        let ours = status.not_after.filter(|_| status.source == "acme");
        if due <= unix(SystemTime::now()) || ours.is_some_and(|o| o >= not_after) {
            return Ok(None);
        }
        let (cert_path, key_path) = self.state.cert_paths(name);
        let _ = self.state.write(&key_path, key.as_bytes());
        let _ = self.state.write(&cert_path, chain.as_bytes());
        self.current.store(certified);
        Ok(Some(not_after))
    }

    async fn account(&self) -> Result<Account, OrderError> {
        let builder = || match &self.cfg.directory_ca {
            Some(ca) => Account::builder_with_root(ca),
            None => Account::builder(),
        };
        let path = self.state.account_path(&self.cfg.directory);
        let digest = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        // The fleet's account first, so a fleet is one account.
        if let Some(fleet) = &self.fleet {
            if let Some(bytes) = fleet.account(&digest).await? {
                if let Ok(creds) = serde_json::from_slice::<AccountCredentials>(&bytes) {
                    return builder()
                        .map_err(|e| format!("ACME client: {e}"))?
                        .from_credentials(creds)
                        .await
                        .map_err(|e| format!("the fleet's account: {e}"));
                }
            }
        }
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Ok(creds) = serde_json::from_str::<AccountCredentials>(&text) {
                return builder()
                    .map_err(|e| format!("ACME client: {e}"))?
                    .from_credentials(creds)
                    .await
                    .map_err(|e| format!("account from {}: {e}", path.display()));
            }
        }
        let contact: Vec<&str> = self.cfg.contact.iter().map(String::as_str).collect();
        let eab = match &self.cfg.eab {
            Some(e) => {
                use base64::Engine;
                let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(e.hmac.expose().trim_end_matches('='))
                    .map_err(|_| "eab.hmac is not base64url".to_owned())?;
                Some(ExternalAccountKey::new(e.kid.clone(), &key))
            }
            None => None,
        };
        let (account, creds) = builder()
            .map_err(|e| format!("ACME client: {e}"))?
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.cfg.directory.clone(),
                eab.as_ref(),
            )
            .await
            .map_err(|e| format!("creating the account at {}: {e}", self.cfg.directory))?;
        let text = serde_json::to_vec(&creds).map_err(|e| e.to_string())?;
        self.state
            .write(&path, &text)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        if let Some(fleet) = &self.fleet {
            fleet.publish_account(&digest, &text).await?;
        }
        tracing::info!(directory = %self.cfg.directory, "ACME account created");
        Ok(account)
    }

    /// One order: authorizations answered by the configured challenge, the order finalized
    /// with a fresh key, the chain fetched, stored and swapped in. Returns its expiry.
    async fn order(&self, provider: &rustls::crypto::CryptoProvider) -> Result<u64, OrderError> {
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = self
            .cfg
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        // A renewal names the certificate it replaces (RFC 9773 §5), so a CA with ARI can
        // exempt it from rate limits; a CA without ARI — or one refusing the name, say because
        // it was replaced already — gets a plain order.
        let replaces = self.served_id();
        let replaces_named = replaces.is_some();
        let first = match replaces {
            Some(id) => {
                account
                    .new_order(&NewOrder::new(&identifiers).replaces(id))
                    .await
            }
            None => account.new_order(&NewOrder::new(&identifiers)).await,
        };
        let mut order = match first {
            Ok(o) => o,
            Err(e) if replaces_named => {
                tracing::debug!(error = %e, "renewal order naming the replaced certificate refused; ordering without");
                account
                    .new_order(&NewOrder::new(&identifiers))
                    .await
                    .map_err(|e| format!("new order: {e}"))?
            }
            Err(e) => return Err(format!("new order: {e}")),
        };
        let mut published = Published::default();
        let kind = match self.cfg.challenge {
            AcmeChallenge::Http01 => ChallengeType::Http01,
            AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        };
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| format!("authorization: {e}"))?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(format!("authorization is {other:?}")),
            }
            let domain = authz.identifier().to_string();
            let mut challenge = authz.challenge(kind.clone()).ok_or_else(|| {
                format!(
                    "the CA offers no {} challenge for {domain}",
                    self.cfg.challenge.as_str()
                )
            })?;
            let key_auth = challenge.key_authorization();
            match self.cfg.challenge {
                AcmeChallenge::Http01 => {
                    if let Some(f) = &self.fleet {
                        f.publish_http01(&challenge.token, key_auth.as_str())
                            .await?;
                        published.fleet_tokens.push(challenge.token.clone());
                    }
                    published.http(challenge.token.clone(), key_auth.as_str().to_owned());
                }
                AcmeChallenge::TlsAlpn01 => {
                    let (cert, pem) = alpn_cert(&domain, key_auth.digest().as_ref(), provider)?;
                    if let Some(f) = &self.fleet {
                        f.publish_alpn(&domain, &pem).await?;
                        published.fleet_domains.push(domain.clone());
                    }
                    published.tls_alpn(domain.clone(), cert);
                }
            }
            challenge
                .set_ready()
                .await
                .map_err(|e| format!("challenge for {domain}: {e}"))?;
        }
        let retry = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .timeout(Duration::from_secs(60));
        let status = order
            .poll_ready(&retry)
            .await
            .map_err(|e| format!("waiting for validation: {e}"))?;
        if status != OrderStatus::Ready {
            return Err(format!("the order is {status:?} after validation"));
        }
        let key_pem = order
            .finalize()
            .await
            .map_err(|e| format!("finalize: {e}"))?;
        let chain_pem = order
            .poll_certificate(&retry)
            .await
            .map_err(|e| format!("certificate: {e}"))?;
        if let Some(f) = &self.fleet {
            f.withdraw(&published.fleet_tokens, &published.fleet_domains)
                .await;
        }
        drop(published);
        let name = self.cfg.domains.first().cloned().unwrap_or_default();
        let (cert_path, key_path) = self.state.cert_paths(&name);
        // Key first: a chain on disk always has its key beside it.
        self.state
            .write(&key_path, key_pem.as_bytes())
            .map_err(|e| format!("writing {}: {e}", key_path.display()))?;
        self.state
            .write(&cert_path, chain_pem.as_bytes())
            .map_err(|e| format!("writing {}: {e}", cert_path.display()))?;
        let (key, _, not_after) = load_pair(&cert_path, &key_path, provider)?;
        self.current.store(key);
        if let Some(f) = &self.fleet {
            f.publish_certificate(&name, &chain_pem, &key_pem).await?;
        }
        Ok(not_after)
    }
}

/// Challenges published for one order, withdrawn when it ends (done or failed).
#[derive(Default)]
struct Published {
    tokens: Vec<String>,
    domains: Vec<String>,
    /// What was also published to the fleet (withdrawn by the order when it ends).
    fleet_tokens: Vec<String>,
    fleet_domains: Vec<String>,
}

impl Published {
    fn http(&mut self, token: String, key_auth: String) {
        challenges()
            .http
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.clone(), key_auth);
        self.tokens.push(token);
    }

    fn tls_alpn(&mut self, domain: String, cert: Arc<CertifiedKey>) {
        challenges()
            .tls_alpn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(domain.clone(), cert);
        self.domains.push(domain);
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        let c = challenges();
        let mut http = c.http.lock().unwrap_or_else(|p| p.into_inner());
        for t in &self.tokens {
            http.remove(t);
        }
        drop(http);
        let mut alpn = c.tls_alpn.lock().unwrap_or_else(|p| p.into_inner());
        for d in &self.domains {
            alpn.remove(d);
        }
    }
}

/// The chain and key at these paths, their DNS names and the leaf's expiry.
fn load_pair(
    cert: &std::path::Path,
    key: &std::path::Path,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<(Arc<CertifiedKey>, Vec<String>, u64), String> {
    let (certified, names) = crate::edge::certs::load_certified(cert, key, provider)?;
    let leaf = certified.cert.first().ok_or("empty chain")?;
    let (_, not_after) = validity(leaf).ok_or("unreadable certificate")?;
    Ok((certified, names, not_after))
}

/// A certificate's validity window, Unix seconds.
fn validity(der: &[u8]) -> Option<(u64, u64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let v = cert.validity();
    Some((
        u64::try_from(v.not_before.timestamp()).ok()?,
        u64::try_from(v.not_after.timestamp()).ok()?,
    ))
}

fn certified(
    cert: rcgen::Certificate,
    key: &rcgen::KeyPair,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<CertifiedKey>, String> {
    let key_der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    )))
}

/// A stand-in certificate for `domains`, valid for a week, until the CA issues one.
fn self_signed(
    domains: &[String],
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<CertifiedKey>, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(domains.to_vec()).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Weir temporary certificate");
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(60)).into();
    params.not_after = (now + Duration::from_secs(7 * 86400)).into();
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    certified(cert, &key, provider)
}

/// The RFC 8737 validation certificate: `domain` as its only name and the key
/// authorization's SHA-256 digest in a critical `acmeIdentifier` extension; also as PEM
/// (certificate then key), for the fleet.
fn alpn_cert(
    domain: &str,
    digest: &[u8],
    provider: &rustls::crypto::CryptoProvider,
) -> Result<(Arc<CertifiedKey>, String), String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec![domain.to_owned()]).map_err(|e| e.to_string())?;
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest));
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let pem = format!("{}{}", cert.pem(), key.serialize_pem());
    Ok((certified(cert, &key, provider)?, pem))
}

/// A chain and its key from one PEM text (certificates, then the key).
fn certified_from_pem(
    pem: &str,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<CertifiedKey>, String> {
    use rustls_pki_types::pem::PemObject;
    let chain = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the fleet's certificate: {e}"))?;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| format!("the fleet's key: {e}"))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| e.to_string())?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| e.to_string())?;
    Ok(Arc::new(certified))
}
