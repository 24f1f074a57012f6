//! The cache every verifier keeps in front of its source: its bounds and
//! lifetimes (the defaults of the builders' cache settings), and the
//! counters [`Introspector::stats`](crate::Introspector::stats) and its
//! peers return.

pub use crate::engine::{
    DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_TTL, DEFAULT_NEGATIVE_ENTRIES,
    DEFAULT_NEGATIVE_MAX_BYTES, DEFAULT_NEGATIVE_TTL, MAX_CACHE_TTL,
};
pub use crate::stats::{CacheStats, IntrospectionStats, SharedCacheStats};
