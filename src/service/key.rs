//! How a request is keyed for the hashing policies.

/// How a request is keyed: its placement hash, or `None` for "no key" (request-spreading
/// policies ignore keys; hashing policies spread keyless requests at random).
///
/// Implemented for every `Fn(&Req) -> Option<u64>` (annotate the closure's argument type:
/// `|request: &http::Request<Body>| ...`), and by [`NoKey`]. Hash with
/// [`hash::key_hash`](crate::hash::key_hash), so that every process agrees on placement.
pub trait RequestKey<Req> {
    /// The request's placement hash, if it has a key.
    fn key(&self, request: &Req) -> Option<u64>;
}

impl<Req, F: Fn(&Req) -> Option<u64>> RequestKey<Req> for F {
    fn key(&self, request: &Req) -> Option<u64> {
        self(request)
    }
}

/// No request has a key: for request-spreading policies.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoKey;

impl<Req> RequestKey<Req> for NoKey {
    fn key(&self, _: &Req) -> Option<u64> {
        None
    }
}
