//! [`SharedCache`]: the settings of the shared tier, given to
//! [`IntrospectorBuilder::shared_cache`](crate::introspection::IntrospectorBuilder::shared_cache).

use std::fmt;
use std::time::Duration;

use super::memory::MemoryStore;
use crate::error::ConfigError;
use crate::macros::setters;

/// Default bound on one Redis command, connection included.
pub const DEFAULT_SHARED_COMMAND_TIMEOUT: Duration = Duration::from_millis(100);
/// Default consecutive Redis failures that open the circuit breaker.
pub const DEFAULT_SHARED_BREAKER_THRESHOLD: u32 = 3;
/// Default time the breaker stays open before one probe is let through.
pub const DEFAULT_SHARED_BREAKER_OPEN_FOR: Duration = Duration::from_secs(5);
/// Default prefix of every Redis name the tier uses.
pub const DEFAULT_SHARED_KEY_PREFIX: &str = "tower-introspection:";

/// The settings of a second cache tier in Redis (or Valkey), shared by a
/// fleet of replicas (feature `redis`). See the README's "Running a fleet".
///
/// ```
/// use std::time::Duration;
/// use tower_introspection::fleet::SharedCache;
///
/// let shared = SharedCache::builder("redis://127.0.0.1:6379/", "a fleet secret of at least 32 bytes!")
///     .command_timeout(Duration::from_millis(50))
///     .build()?;
/// assert!(format!("{shared:?}").contains("redacted"));
/// assert!(SharedCache::builder("redis://h/", "too short").build().is_err());
/// assert!(SharedCache::builder("rediss://h/", [7u8; 32]).build().is_err(), "no TLS yet");
/// # Ok::<(), tower_introspection::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct SharedCache {
    pub(crate) backend: Backend,
    pub(crate) secrets: Vec<Vec<u8>>,
    pub(crate) key_prefix: String,
    pub(crate) command_timeout: Duration,
    pub(crate) lock_wait: Option<Duration>,
    pub(crate) breaker_threshold: u32,
    pub(crate) breaker_open_for: Duration,
}

/// Configures a [`SharedCache`]; see [`SharedCache::builder`].
#[must_use]
pub struct SharedCacheBuilder {
    config: SharedCache,
}

impl SharedCache {
    /// The tier at `url` (`redis://[user:password@]host:port/db`), keyed and
    /// sealed under `secret` (at least 32 bytes; every replica of the fleet
    /// must have the same). TLS to Redis (`rediss://`) is not supported yet:
    /// `build()` refuses it rather than connect in clear text.
    pub fn builder(url: impl Into<String>, secret: impl AsRef<[u8]>) -> SharedCacheBuilder {
        SharedCacheBuilder {
            config: SharedCache {
                backend: Backend::Redis(url.into()),
                secrets: vec![secret.as_ref().to_vec()],
                key_prefix: DEFAULT_SHARED_KEY_PREFIX.to_owned(),
                command_timeout: DEFAULT_SHARED_COMMAND_TIMEOUT,
                lock_wait: None,
                breaker_threshold: DEFAULT_SHARED_BREAKER_THRESHOLD,
                breaker_open_for: DEFAULT_SHARED_BREAKER_OPEN_FOR,
            },
        }
    }

    /// Starts configuring a shared tier held in `store`, in this process's
    /// memory, instead of Redis: for tests, where verifiers given the same
    /// store behave as replicas sharing one Redis. Every other setting
    /// means what it means with Redis.
    pub fn in_memory(store: &MemoryStore, secret: impl AsRef<[u8]>) -> SharedCacheBuilder {
        let mut builder = Self::builder(String::new(), secret);
        builder.config.backend = Backend::Memory(store.clone());
        builder
    }
}

impl SharedCacheBuilder {
    /// Also read entries written under a previous secret (a rotation): new
    /// entries are written under the first secret only. Repeatable. Follow
    /// the README's "Rotating the fleet secret": a replica with the old
    /// secret alone and one with the new secret alone must never run
    /// together (their invalidations reach each other only as a bounded
    /// drop of everything).
    pub fn previous_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.config.secrets.push(secret.as_ref().to_vec());
        self
    }

    setters! {
        /// The prefix of every Redis name (default `tower-introspection:`), to
        /// share one Redis between unrelated fleets.
        pub fn key_prefix(prefix: impl Into<String>) => config.key_prefix = prefix.into();

        /// Bound on one Redis command, connection included (default 100 ms, at
        /// most 10 s). A slower Redis counts as failed: the request goes on
        /// without it.
        pub fn command_timeout(timeout: Duration) => config.command_timeout = timeout;

        /// How long a replica waits for another replica's introspection of the
        /// same token before calling the authorization server itself (default:
        /// the introspector's [`timeout`](crate::introspection::IntrospectorBuilder::timeout)).
        /// A request that waits in vain then makes its own call, so its worst
        /// case is `lock_wait` plus one introspection: about twice `timeout`
        /// by default.
        pub fn lock_wait(wait: Duration) => config.lock_wait = Some(wait);
    }

    /// Open the circuit breaker after `failures` consecutive Redis failures,
    /// and leave Redis alone for `open_for` before one probe (default 3 and
    /// 5 s).
    pub fn circuit_breaker(mut self, failures: u32, open_for: Duration) -> Self {
        self.config.breaker_threshold = failures;
        self.config.breaker_open_for = open_for;
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<SharedCache, ConfigError> {
        let config = self.config;
        if config
            .secrets
            .iter()
            .any(|secret| secret.len() < super::keys::MIN_SECRET_BYTES)
        {
            return Err(ConfigError::InvalidSetting(
                "the shared cache secret must be at least 32 bytes",
            ));
        }
        if let Backend::Redis(url) = &config.backend {
            check_url(url)?;
        }
        let max = Duration::from_secs(10);
        if config.command_timeout.is_zero() || config.command_timeout > max {
            return Err(ConfigError::OutOfRange {
                setting: "command_timeout",
                range: "more than zero and at most 10 s",
            });
        }
        if config
            .lock_wait
            .is_some_and(|wait| wait > Duration::from_secs(3600))
        {
            return Err(ConfigError::OutOfRange {
                setting: "lock_wait",
                range: "at most one hour",
            });
        }
        if config.breaker_threshold == 0 || config.breaker_open_for > Duration::from_secs(3600) {
            return Err(ConfigError::OutOfRange {
                setting: "circuit_breaker",
                range: "at least one failure, and open at most one hour",
            });
        }
        Ok(config)
    }
}

/// A Redis URL this crate can use.
fn check_url(raw: &str) -> Result<(), ConfigError> {
    let url = url::Url::parse(raw).map_err(|_| ConfigError::InvalidUrl {
        what: "shared cache (Redis)",
        reason: "not a URL".into(),
    })?;
    match url.scheme() {
            "redis" | "valkey" => {}
            "rediss" | "valkeys" => {
                return Err(ConfigError::InvalidUrl {
                    what: "shared cache (Redis)",
                    reason: "TLS to Redis (rediss://) is not supported yet; reach Redis over a private network or a TLS tunnel".into(),
                })
            }
            _ => {
                return Err(ConfigError::InvalidUrl {
                    what: "shared cache (Redis)",
                    reason: "the scheme must be redis".into(),
                })
            }
        }
    Ok(())
}

/// Where the shared values live.
#[derive(Clone)]
pub(crate) enum Backend {
    /// A Redis (or Valkey) server at this URL.
    Redis(String),
    /// This process's memory (tests).
    Memory(MemoryStore),
}

impl fmt::Debug for SharedCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedCache")
            .field(
                "url",
                &match &self.backend {
                    Backend::Redis(url) => crate::resource::redact_url(url),
                    Backend::Memory(_) => "memory".to_owned(),
                },
            )
            .field("secrets", &format_args!("[{} redacted]", self.secrets.len()))
            .field("key_prefix", &self.key_prefix)
            .field("command_timeout", &self.command_timeout)
            .field("lock_wait", &self.lock_wait)
            .field("breaker_threshold", &self.breaker_threshold)
            .field("breaker_open_for", &self.breaker_open_for)
            .finish()
    }
}

impl fmt::Debug for SharedCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedCacheBuilder").field(&self.config).finish()
    }
}
