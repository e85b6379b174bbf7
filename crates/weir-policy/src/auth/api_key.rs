//! API keys of `[[consumers]]`: read from a header or query parameter, hashed (SHA-256) and
//! looked up among the consumers' key digests, so the config and memory never need the keys
//! themselves. The consumer's name becomes the request's identity; the key is removed from
//! the request before it goes upstream unless told otherwise.

use std::collections::HashMap;
use std::sync::Arc;

use http::request::Parts;
use http::HeaderName;
use sha2::{Digest, Sha256};
use weir_config::TokenSource;
use weir_core::RequestCtx;

use crate::{CompileError, Early};

/// A compiled `api_key` policy.
#[derive(Debug)]
pub struct ApiKeyPolicy {
    keys: HashMap<[u8; 32], Arc<str>>,
    key_from: Vec<TokenSource>,
    consumer_header: Option<HeaderName>,
    hide: bool,
}

/// The digest of a key as written in the config (`sha256:HEX` or the key itself).
pub fn digest_of(written: &str) -> Option<[u8; 32]> {
    if let Some(hex) = written.strip_prefix("sha256:") {
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        return Some(out);
    }
    Some(Sha256::digest(written.as_bytes()).into())
}

impl ApiKeyPolicy {
    pub(crate) fn compile(
        name: &str,
        cfg: &weir_config::ApiKey,
        config: &weir_config::Config,
    ) -> Result<Self, CompileError> {
        let mut keys = HashMap::new();
        for c in &config.consumers {
            let consumer: Arc<str> = Arc::from(c.name.as_str());
            let mut written: Vec<String> =
                c.api_keys.iter().map(|k| k.expose().to_owned()).collect();
            if let Some(file) = &c.api_keys_file {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    CompileError::new(
                        name,
                        format!("consumer `{}`: cannot read {}: {e}", c.name, file.display()),
                    )
                })?;
                written.extend(
                    text.lines()
                        .map(|l| l.split('#').next().unwrap_or("").trim())
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned),
                );
            }
            for k in written {
                weir_config::validate_policy::check_api_key(&k)
                    .map_err(|m| CompileError::new(name, format!("consumer `{}`: {m}", c.name)))?;
                let d = digest_of(&k).ok_or_else(|| CompileError::new(name, "bad key digest"))?;
                if let Some(other) = keys.insert(d, consumer.clone()) {
                    if other != consumer {
                        return Err(CompileError::new(
                            name,
                            format!("consumers `{other}` and `{}` share an API key", c.name),
                        ));
                    }
                }
            }
        }
        Ok(Self {
            keys,
            key_from: cfg.key_from.clone(),
            consumer_header: cfg
                .consumer_header
                .as_deref()
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
            hide: cfg.hide_credentials,
        })
    }

    pub(crate) fn check(&self, ctx: &mut RequestCtx, parts: &mut Parts) -> Result<(), Early> {
        if let Some(h) = &self.consumer_header {
            parts.headers.remove(h);
        }
        let challenge = || "ApiKey realm=\"weir\"".to_owned();
        let Some(key) = super::credential(parts, &self.key_from, false) else {
            return Err(super::unauthorized(challenge()).into());
        };
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let Some(consumer) = self.keys.get(&digest) else {
            return Err(super::unauthorized(challenge()).into());
        };
        if self.hide {
            for source in &self.key_from {
                super::remove_credential(parts, source);
            }
        }
        super::set_identity_header(parts, self.consumer_header.as_ref(), consumer);
        ctx.consumer = Some(consumer.clone());
        Ok(())
    }

    pub(crate) fn describe(&self) -> String {
        let from: Vec<String> = self.key_from.iter().map(ToString::to_string).collect();
        format!(
            "api_key: {} key(s) from {}",
            self.keys.len(),
            from.join(", ")
        )
    }
}

impl crate::kind::Compiles for weir_config::ApiKey {
    type Kind = ApiKeyPolicy;
}

impl crate::kind::PolicyKind for ApiKeyPolicy {
    type Config = weir_config::ApiKey;
    fn build(
        name: &str,
        cfg: &weir_config::ApiKey,
        config: &weir_config::Config,
        _: &std::sync::Arc<crate::Shared>,
    ) -> Result<Self, crate::CompileError> {
        Self::compile(name, cfg, config)
    }

    async fn on_request(&self, r: crate::kind::Request<'_>) -> Result<(), crate::Early> {
        self.check(r.ctx, r.parts)
    }

    fn summary(&self) -> String {
        self.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_from_both_forms_agree() {
        let plain = digest_of("my-very-secret-key-1").expect("digest");
        let hex: String = plain.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(digest_of(&format!("sha256:{hex}")), Some(plain));
        assert_eq!(digest_of("sha256:zz"), None);
    }
}
