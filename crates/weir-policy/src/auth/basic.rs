//! HTTP basic authentication (RFC 7617) against argon2 or bcrypt hashes. Verifying a hash is
//! deliberately slow, so it runs on the blocking pool (never on a worker thread), and a
//! successful check is remembered for a few minutes by the SHA-256 of the credentials (the
//! password itself is never kept), so a client sending the same header on every request pays
//! once. Unknown user names cost the same hash check as wrong passwords.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use http::request::Parts;
use http::HeaderName;
use sha2::{Digest, Sha256};
use weir_core::{ErrorKind, ProxyError, RequestCtx};

use crate::Early;

const REMEMBER: Duration = Duration::from_secs(300);
const REMEMBER_MAX: usize = 10_000;

/// A compiled `basic_auth` policy.
#[derive(Debug)]
pub struct BasicPolicy {
    users: BTreeMap<String, String>,
    challenge: String,
    consumer_header: Option<HeaderName>,
    verified: Arc<Mutex<HashMap<[u8; 32], Instant>>>,
}

impl BasicPolicy {
    pub(crate) fn compile(cfg: &weir_config::BasicAuth) -> Self {
        Self {
            users: cfg
                .users
                .iter()
                .map(|(u, h)| (u.clone(), h.expose().to_owned()))
                .collect(),
            challenge: format!("Basic realm=\"{}\", charset=\"UTF-8\"", cfg.realm),
            consumer_header: cfg
                .consumer_header
                .as_deref()
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
            verified: Arc::default(),
        }
    }

    pub(crate) async fn check(&self, ctx: &mut RequestCtx, parts: &mut Parts) -> Result<(), Early> {
        if let Some(h) = &self.consumer_header {
            parts.headers.remove(h);
        }
        let deny = || Early::Error(super::unauthorized(self.challenge.clone()));
        let (user, password) = parse(parts).ok_or_else(deny)?;
        // An unknown user is checked against a configured hash anyway (and refused whatever
        // the outcome), so the time to answer does not tell which user names exist.
        let (hash, known) = match self.users.get(&user) {
            Some(h) => (h, true),
            None => (self.users.values().next().ok_or_else(deny)?, false),
        };
        let fingerprint: [u8; 32] = Sha256::digest(format!("{user}:{password}:{hash}")).into();
        let now = Instant::now();
        let remembered = known && {
            let map = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            map.get(&fingerprint)
                .is_some_and(|t| now.duration_since(*t) < REMEMBER)
        };
        if !remembered {
            let hash = hash.clone();
            let ok = tokio::task::spawn_blocking(move || verify(&password, &hash))
                .await
                .map_err(|e| Early::Error(ProxyError::new(ErrorKind::Internal).with_source(e)))?;
            if !ok || !known {
                return Err(deny());
            }
            let mut map = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() >= REMEMBER_MAX {
                map.retain(|_, t| now.duration_since(*t) < REMEMBER);
                if map.len() >= REMEMBER_MAX {
                    map.clear();
                }
            }
            map.insert(fingerprint, now);
        }
        super::set_identity_header(parts, self.consumer_header.as_ref(), &user);
        ctx.consumer = Some(Arc::from(user.as_str()));
        Ok(())
    }

    pub(crate) fn describe(&self) -> String {
        format!("basic_auth: {} user(s)", self.users.len())
    }
}

/// `Authorization: Basic base64(user:password)`.
fn parse(parts: &Parts) -> Option<(String, String)> {
    let v = parts
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, b64) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") || b64.len() > 4096 {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Checks a password against an argon2 (`$argon2…`) or bcrypt (`$2…`) hash.
pub fn verify(password: &str, hash: &str) -> bool {
    if hash.starts_with("$argon2") {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    } else {
        bcrypt::verify(password, hash).unwrap_or(false)
    }
}

impl crate::kind::Compiles for weir_config::BasicAuth {
    type Kind = BasicPolicy;
}

impl crate::kind::PolicyKind for BasicPolicy {
    type Config = weir_config::BasicAuth;
    fn build(
        _: &str,
        cfg: &weir_config::BasicAuth,
        _: &weir_config::Config,
        _: &std::sync::Arc<crate::Shared>,
    ) -> Result<Self, crate::CompileError> {
        Ok(Self::compile(cfg))
    }

    async fn on_request(&self, r: crate::kind::Request<'_>) -> Result<(), crate::Early> {
        self.check(r.ctx, r.parts).await
    }

    fn summary(&self) -> String {
        self.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_and_bcrypt_hashes_verify() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"0123456789abcdef").expect("salt");
        let argon = argon2::Argon2::default()
            .hash_password(b"pw-1", &salt)
            .expect("hash")
            .to_string();
        assert!(verify("pw-1", &argon));
        assert!(!verify("pw-2", &argon));
        let bc = bcrypt::hash("pw-1", 4).expect("bcrypt");
        assert!(verify("pw-1", &bc));
        assert!(!verify("pw-2", &bc));
        assert!(!verify("pw-1", "$2b$garbage"));
    }
}
