//! What guards the admin listener: the bearer token (kept and compared as a digest, in constant
//! time) and the listener's own connection cap and head timeout. A leaf: the runtime compiles
//! these from the config.

/// What bounds the admin listener: it has a connection cap and a request-head timeout of its
/// own, like traffic listeners, so a slow or flooding client cannot take the operator's
/// way in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdminLimits {
    pub(crate) max_connections: usize,
    pub(crate) header_read_timeout: std::time::Duration,
}

/// The digest the admin token is kept and compared as.
pub(crate) fn token_digest(token: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token).into()
}

/// Equal digests, in time independent of where they differ.
pub(super) fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
