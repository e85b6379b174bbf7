//! The Redis store of `[redis]`: one multiplexed connection (redis-rs `ConnectionManager`,
//! reconnecting by itself) shared by every policy with `store = "redis"`, and the bound on
//! how long any operation may take before the policy's `on_store_error` decides instead.

use std::sync::OnceLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis answered with an error, or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer within `[redis].timeout`.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// A Redis server shared by policies.
pub struct RedisStore {
    client: Option<redis::Client>,
    url_error: Option<String>,
    conn: OnceLock<Result<ConnectionManager, String>>,
    timeout: Duration,
    prefix: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("timeout", &self.timeout)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store for `cfg`; nothing connects until the first operation.
    pub fn new(cfg: &weir_config::Redis) -> Self {
        let (client, url_error) = match redis::Client::open(cfg.url.expose()) {
            Ok(c) => (Some(c), None),
            Err(e) => (None, Some(e.to_string())),
        };
        Self {
            client,
            url_error,
            conn: OnceLock::new(),
            timeout: cfg.timeout.get(),
            prefix: cfg.key_prefix.clone(),
        }
    }

    /// The process's store for `cfg`: one connection for every part of Weir configured with the
    /// same `[redis]` (policies, purges, canaries, ACME), made when none is alive.
    pub fn shared(cfg: &weir_config::Redis) -> std::sync::Arc<Self> {
        use std::sync::{Arc, Mutex, Weak};
        type Registry = Mutex<Vec<(weir_config::Redis, Weak<RedisStore>)>>;
        static STORES: OnceLock<Registry> = OnceLock::new();
        let mut stores = STORES
            .get_or_init(Registry::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        stores.retain(|(_, w)| w.strong_count() > 0);
        if let Some(alive) = stores
            .iter()
            .find(|(c, _)| c == cfg)
            .and_then(|(_, w)| w.upgrade())
        {
            return alive;
        }
        let store = Arc::new(Self::new(cfg));
        stores.push((cfg.clone(), Arc::downgrade(&store)));
        store
    }

    /// The prefix of every key.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let made = self.conn.get_or_init(|| {
            let client = self.client.clone().ok_or_else(|| {
                self.url_error
                    .clone()
                    .unwrap_or_else(|| "invalid redis url".to_owned())
            })?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.timeout))
                .set_response_timeout(Some(self.timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500));
            ConnectionManager::new_lazy_with_config(client, config).map_err(|e| e.to_string())
        });
        made.clone().map_err(|e| {
            StoreError::Redis(redis::RedisError::from((
                redis::ErrorKind::Client,
                "cannot create connection",
                e,
            )))
        })
    }

    /// Runs a script with `keys` and `args`, bounded by the timeout: one round trip
    /// (`EVALSHA`; the script is loaded on first use).
    pub async fn script<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[&[u8]],
        args: &[&[u8]],
    ) -> Result<T, StoreError> {
        let mut conn = self.connection()?;
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(*k);
        }
        for a in args {
            inv.arg(*a);
        }
        match tokio::time::timeout(self.timeout, inv.invoke_async(&mut conn)).await {
            Ok(r) => r.map_err(StoreError::from),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        }
    }

    /// Runs one command, bounded by the timeout.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.connection()?;
        match tokio::time::timeout(self.timeout, cmd.query_async(&mut conn)).await {
            Ok(r) => r.map_err(StoreError::from),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        }
    }

    /// Runs a pipeline (one round trip), bounded by the timeout.
    pub async fn query_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        let mut conn = self.connection()?;
        match tokio::time::timeout(self.timeout, pipe.query_async(&mut conn)).await {
            Ok(r) => r.map_err(StoreError::from),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        }
    }

    /// A connection of its own, for a command that blocks (`XREAD BLOCK`) and would hold up
    /// every other command on the shared one; `response` bounds each reply.
    pub async fn dedicated(
        &self,
        response: Duration,
    ) -> Result<redis::aio::MultiplexedConnection, StoreError> {
        let client = self.client.clone().ok_or_else(|| {
            StoreError::Redis(redis::RedisError::from((
                redis::ErrorKind::Client,
                "invalid redis url",
                self.url_error.clone().unwrap_or_default(),
            )))
        })?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(response));
        Ok(client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }
}
