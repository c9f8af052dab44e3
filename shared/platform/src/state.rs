//! What a function's handlers share: configuration, the store, the clock, token keys, the
//! rate limiter and the caches. Built once per process (per Lambda instance).

use crate::auth::tokens::TokenKeys;
use crate::cache::Caches;
use crate::config::Config;
use crate::ratelimit::RateLimiter;
use crate::store::Store;
use crate::time::{SharedClock, SystemClock};
use std::sync::Arc;

#[derive(Debug)]
pub struct Inner {
    pub config: Config,
    pub store: Store,
    pub clock: SharedClock,
    pub tokens: TokenKeys,
    pub limiter: RateLimiter,
    /// What this instance remembers between requests (see [`Caches`]).
    pub caches: Caches,
}

#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The log target of the line that times a function's init ([`AppState::from_env`]).
pub const INIT_LOG_TARGET: &str = "pulseboard::init";

impl AppState {
    pub fn new(config: Config, store: Store, clock: SharedClock) -> Self {
        AppState(Arc::new(Inner {
            tokens: TokenKeys::rotating(&config.jwt_secret, config.jwt_previous_secret.as_deref()),
            config,
            store,
            clock,
            limiter: RateLimiter::default(),
            caches: Caches::default(),
        }))
    }

    /// Configuration and clients from the environment: the SDK's configuration loaded once,
    /// then, when the JWT secrets are read from Secrets Manager, that read with the warm-up
    /// calls alongside, which open the connections the first request uses (so it does not
    /// pay the TLS handshakes) without costing init a round trip of their own. With the
    /// secrets in the environment there is no call to ride along, and init makes none: a
    /// sequential round trip the first request does not need would only make the cold
    /// start longer.
    ///
    /// Logs how long its two parts took (target [`INIT_LOG_TARGET`], level info): a cold
    /// start's share of each (`make bench` reads them).
    pub async fn from_env() -> Result<Self, String> {
        let started = std::time::Instant::now();
        let mut config = Config::from_env()?;
        let sdk = crate::store::sdk_config().await;
        let store = crate::store::connect_with(&sdk, &config.table_name, &config.bucket_name);
        let configured = started.elapsed();
        let reads_secrets = config.jwt_secret_arn.is_some();
        let warm_up = async {
            if reads_secrets {
                store.warm_up().await;
            }
        };
        let (secrets, ()) = tokio::join!(config.load_secrets(&sdk), warm_up);
        secrets?;
        let state = AppState::new(config, store, Arc::new(SystemClock));
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        tracing::info!(
            target: INIT_LOG_TARGET,
            sdk_config_ms = ms(configured),
            warm_up_ms = ms(started.elapsed() - configured),
            "initialised: the SDK's configuration and clients, then the secrets and the warm-up calls"
        );
        Ok(state)
    }
}
