//! A fleet is one ACME client (`acme.fleet_key` with `[redis]`): Redis holds one lock per
//! certificate order, the HTTP-01 key authorizations and TLS-ALPN-01 certificates of the order
//! in flight (so whichever instance the CA's validation reaches can answer it), and the issued
//! certificates and the account, encrypted with AES-256-GCM under a key derived from
//! `fleet_key` (each value bound to its Redis key), so every instance serves them without
//! ordering its own.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::Engine;
use sha2::Digest;
use weir_policy::RedisStore;

/// How long an order may hold its lock before another instance may take over.
pub(crate) const LOCK_TTL: Duration = Duration::from_secs(300);
/// How long a published challenge lives.
const CHALLENGE_TTL_SECS: u64 = 600;

/// One certificate's view of the fleet's Redis.
pub(crate) struct Fleet {
    store: Arc<RedisStore>,
    key: LessSafeKey,
    /// This instance, as the lock's holder.
    pub(crate) instance: String,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

type Res<T> = Result<T, String>;

fn redis_err(e: impl std::fmt::Display) -> String {
    format!("redis: {e}")
}

impl Fleet {
    pub(crate) fn new(store: Arc<RedisStore>, secret: &str) -> Res<Self> {
        let digest = sha2::Sha256::digest(secret.as_bytes());
        let key = UnboundKey::new(&AES_256_GCM, digest.as_slice())
            .map(LessSafeKey::new)
            .map_err(|_| "fleet_key: no AES-256-GCM key from it".to_owned())?;
        Ok(Self {
            store,
            key,
            instance: format!("{:016x}", fastrand::u64(..)),
        })
    }

    fn k(&self, what: &str) -> String {
        format!("{}acme:{what}", self.store.prefix())
    }

    fn seal(&self, redis_key: &str, plain: &[u8]) -> Res<String> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| "no randomness".to_owned())?;
        let mut data = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(redis_key.as_bytes()),
                &mut data,
            )
            .map_err(|_| "sealing failed".to_owned())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    fn open(&self, redis_key: &str, text: &str) -> Res<Vec<u8>> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| format!("{redis_key}: not sealed by Weir"))?;
        if raw.len() < NONCE_LEN {
            return Err(format!("{redis_key}: too short"));
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| "bad nonce".to_owned())?;
        let mut data = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(redis_key.as_bytes()), &mut data)
            .map_err(|_| format!("{redis_key}: does not open with this fleet_key"))?;
        Ok(plain.to_vec())
    }

    async fn get(&self, key: &str) -> Res<Option<String>> {
        self.store
            .query(redis::cmd("GET").arg(key))
            .await
            .map_err(redis_err)
    }

    async fn get_sealed(&self, key: &str) -> Res<Option<Vec<u8>>> {
        match self.get(key).await? {
            Some(text) => self.open(key, &text).map(Some),
            None => Ok(None),
        }
    }

    async fn set_sealed(&self, key: &str, plain: &[u8], ttl: Option<u64>) -> Res<()> {
        let sealed = self.seal(key, plain)?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(sealed);
        if let Some(t) = ttl {
            cmd.arg("EX").arg(t);
        }
        self.store.query::<()>(&cmd).await.map_err(redis_err)
    }

    /// Takes the order lock of certificate `name` (true when this instance holds it now).
    pub(crate) async fn lock(&self, name: &str) -> Res<bool> {
        let set: Option<String> = self
            .store
            .query(
                redis::cmd("SET")
                    .arg(self.k(&format!("lock:{name}")))
                    .arg(&self.instance)
                    .arg("NX")
                    .arg("PX")
                    .arg(LOCK_TTL.as_millis() as u64),
            )
            .await
            .map_err(redis_err)?;
        Ok(set.is_some())
    }

    /// Whether someone holds the lock of `name`.
    pub(crate) async fn locked(&self, name: &str) -> Res<bool> {
        Ok(self.get(&self.k(&format!("lock:{name}"))).await?.is_some())
    }

    /// Releases the lock of `name` if this instance holds it.
    pub(crate) async fn unlock(&self, name: &str) {
        static UNLOCK: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
            )
        });
        let key = self.k(&format!("lock:{name}"));
        let _ = self
            .store
            .script::<i64>(&UNLOCK, &[key.as_bytes()], &[self.instance.as_bytes()])
            .await;
    }

    /// Publishes an HTTP-01 key authorization for the fleet.
    pub(crate) async fn publish_http01(&self, token: &str, key_auth: &str) -> Res<()> {
        self.store
            .query::<()>(
                redis::cmd("SET")
                    .arg(self.k(&format!("http01:{token}")))
                    .arg(key_auth)
                    .arg("EX")
                    .arg(CHALLENGE_TTL_SECS),
            )
            .await
            .map_err(redis_err)
    }

    /// Publishes a TLS-ALPN-01 certificate (chain and key, PEM) for `domain`.
    pub(crate) async fn publish_alpn(&self, domain: &str, pem: &str) -> Res<()> {
        self.set_sealed(
            &self.k(&format!("alpn:{domain}")),
            pem.as_bytes(),
            Some(CHALLENGE_TTL_SECS),
        )
        .await
    }

    /// The TLS-ALPN-01 certificate published for `domain`, if any.
    pub(crate) async fn alpn(&self, domain: &str) -> Res<Option<String>> {
        Ok(self
            .get_sealed(&self.k(&format!("alpn:{domain}")))
            .await?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Withdraws an order's challenges.
    pub(crate) async fn withdraw(&self, tokens: &[String], domains: &[String]) {
        let mut cmd = redis::cmd("DEL");
        for t in tokens {
            cmd.arg(self.k(&format!("http01:{t}")));
        }
        for d in domains {
            cmd.arg(self.k(&format!("alpn:{d}")));
        }
        if !(tokens.is_empty() && domains.is_empty()) {
            let _ = self.store.query::<i64>(&cmd).await;
        }
    }

    /// The certificate the fleet holds for `name`: (chain PEM, key PEM).
    pub(crate) async fn certificate(&self, name: &str) -> Res<Option<(String, String)>> {
        let Some(plain) = self.get_sealed(&self.k(&format!("cert:{name}"))).await? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&plain).into_owned();
        let (chain, key) = text
            .split_once('\0')
            .ok_or_else(|| "the fleet's certificate is malformed".to_owned())?;
        Ok(Some((chain.to_owned(), key.to_owned())))
    }

    /// Shares an issued certificate with the fleet.
    pub(crate) async fn publish_certificate(&self, name: &str, chain: &str, key: &str) -> Res<()> {
        let plain = format!("{chain}\0{key}");
        self.set_sealed(&self.k(&format!("cert:{name}")), plain.as_bytes(), None)
            .await
    }

    /// The account credentials the fleet shares for a directory (by its digest).
    pub(crate) async fn account(&self, directory_digest: &str) -> Res<Option<Vec<u8>>> {
        self.get_sealed(&self.k(&format!("account:{directory_digest}")))
            .await
    }

    pub(crate) async fn publish_account(&self, directory_digest: &str, creds: &[u8]) -> Res<()> {
        self.set_sealed(&self.k(&format!("account:{directory_digest}")), creds, None)
            .await
    }
}

/// The HTTP-01 key authorization the fleet has for `token` (any instance's order).
pub(crate) async fn http01(store: &RedisStore, token: &str) -> Option<String> {
    if token.is_empty()
        || token.len() > 128
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    store
        .query(redis::cmd("GET").arg(format!("{}acme:http01:{token}", store.prefix())))
        .await
        .ok()
        .flatten()
}
