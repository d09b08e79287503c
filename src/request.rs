//! What a caller tells the balancer about one request.

use crate::hash::key_hash;

/// The request being routed: optionally, the key that decides its placement.
///
/// Request-spreading policies (round robin, least connections, P2C, ...) ignore the key.
/// Hashing policies map it to a backend, so that the same key goes to the same backend while
/// the set allows; a request without a key is spread at random by them.
///
/// The key is either bytes, hashed with the crate's pinned placement hash
/// ([`hash::key_hash`](crate::hash::key_hash)), or a 64-bit hash the caller computed itself.
///
/// ```
/// use lbkit::Request;
/// let by_bytes = Request::with_key("user-42");
/// let by_hash = Request::with_hash(0xfeed);
/// assert_eq!(by_bytes.key_hash(), Some(lbkit::hash::key_hash(b"user-42")));
/// assert_eq!(by_hash.key_hash(), Some(0xfeed));
/// assert_eq!(Request::new().key_hash(), None);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    key: Key<'a>,
}

#[derive(Debug, Clone, Copy, Default)]
enum Key<'a> {
    #[default]
    None,
    Bytes(&'a [u8]),
    Hash(u64),
}

impl<'a> Request<'a> {
    /// A request with no key.
    pub fn new() -> Self {
        Request { key: Key::None }
    }

    /// A request keyed by bytes (a user id, a session, a URL, a cache key).
    pub fn with_key<K: AsRef<[u8]> + ?Sized>(key: &'a K) -> Self {
        Request {
            key: Key::Bytes(key.as_ref()),
        }
    }

    /// A request keyed by a 64-bit hash the caller already computed.
    ///
    /// Use this when the key is not bytes at hand, or to share one hash between several
    /// balancers. The hash is used as it is: give a well-mixed value.
    pub fn with_hash(hash: u64) -> Self {
        Request {
            key: Key::Hash(hash),
        }
    }

    /// The key's bytes, if the request was keyed by bytes.
    pub fn key(&self) -> Option<&'a [u8]> {
        match self.key {
            Key::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The 64-bit placement hash of the key: the caller's hash, or the pinned hash of the
    /// key's bytes. `None` for a request without a key.
    pub fn key_hash(&self) -> Option<u64> {
        match self.key {
            Key::None => None,
            Key::Bytes(b) => Some(key_hash(b)),
            Key::Hash(h) => Some(h),
        }
    }
}
