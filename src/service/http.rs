//! [`HttpSteer`]: steering for `http` requests and responses (the `http` cargo feature).

use std::sync::Arc;

use http::header::{HeaderName, COOKIE};

use super::{Attempts, MarkServed, Served, Steer};

/// Where an [`HttpSteer`] finds a request's sticky backend.
#[derive(Debug, Clone)]
enum Sticky {
    None,
    Header(HeaderName),
    Cookie(Arc<str>),
}

/// The [`Steer`] of `http` requests and responses (the `http` cargo feature):
///
/// * the [`Attempts`] record is read from the request's extensions (insert one, as
///   `request.extensions_mut().insert(Attempts::new())`, before a retry layer clones the
///   request, and copy the extensions into each clone);
/// * the sticky backend, if configured, is the value of a header
///   ([`sticky_header`](HttpSteer::sticky_header)) or of a cookie
///   ([`sticky_cookie`](HttpSteer::sticky_cookie)); a value that is not visible ASCII, or
///   names no backend that can serve, is not honoured;
/// * every `Ok` response gets a [`Served`] extension with the id of its backend.
///
/// ```
/// use lbkit::service::{Attempts, HttpSteer, MarkServed, Served, Steer};
///
/// let steer = HttpSteer::new().sticky_cookie("backend");
/// let mut request = http::Request::get("/cart")
///     .header("cookie", "theme=dark; backend=10.0.0.2:80")
///     .body(())
///     .unwrap();
/// request.extensions_mut().insert(Attempts::new());
/// assert_eq!(steer.sticky(&request), Some("10.0.0.2:80"));
/// assert!(steer.attempts(&request).is_some());
///
/// let mut response = http::Response::new(());
/// steer.mark(&mut response, &"10.0.0.2:80".into());
/// assert_eq!(response.extensions().get::<Served>().unwrap().id(), "10.0.0.2:80");
/// ```
#[derive(Debug, Clone)]
pub struct HttpSteer {
    sticky: Sticky,
}

impl HttpSteer {
    /// Attempts from the request's extensions, [`Served`] on responses, no sticky session.
    pub fn new() -> Self {
        HttpSteer {
            sticky: Sticky::None,
        }
    }

    /// The sticky backend's id is the value of the header `name` (its first occurrence).
    #[must_use]
    pub fn sticky_header(mut self, name: HeaderName) -> Self {
        self.sticky = Sticky::Header(name);
        self
    }

    /// The sticky backend's id is the value of the cookie `name` (its first occurrence in
    /// the request's `Cookie` headers; double quotes around the value are removed).
    #[must_use]
    pub fn sticky_cookie(mut self, name: impl Into<Arc<str>>) -> Self {
        self.sticky = Sticky::Cookie(name.into());
        self
    }
}

impl Default for HttpSteer {
    fn default() -> Self {
        Self::new()
    }
}

impl<B> Steer<http::Request<B>> for HttpSteer {
    fn attempts<'r>(&self, request: &'r http::Request<B>) -> Option<&'r Attempts> {
        request.extensions().get::<Attempts>()
    }

    fn sticky<'r>(&self, request: &'r http::Request<B>) -> Option<&'r str> {
        match &self.sticky {
            Sticky::None => None,
            Sticky::Header(name) => request.headers().get(name)?.to_str().ok(),
            Sticky::Cookie(name) => request
                .headers()
                .get_all(COOKIE)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .find_map(|cookies| cookie(cookies, name)),
        }
    }
}

impl<B> MarkServed<http::Response<B>> for HttpSteer {
    fn mark(&self, response: &mut http::Response<B>, backend: &Arc<str>) {
        response
            .extensions_mut()
            .insert(Served::new(Arc::clone(backend)));
    }
}

/// The value of the cookie `name` in one `Cookie` header (`a=1; b=2`), unquoted.
fn cookie<'h>(cookies: &'h str, name: &str) -> Option<&'h str> {
    cookies.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        if key.trim() != name {
            return None;
        }
        let value = value.trim();
        let unquoted = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        Some(unquoted)
    })
}

#[cfg(test)]
mod tests {
    use super::cookie;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let header = "theme=dark; backend=b1;backend2=x; q=\"quoted\"; empty=";
        assert_eq!(cookie(header, "backend"), Some("b1"));
        assert_eq!(cookie(header, "backend2"), Some("x"));
        assert_eq!(cookie(header, "q"), Some("quoted"));
        assert_eq!(cookie(header, "empty"), Some(""));
        assert_eq!(cookie(header, "back"), None);
        assert_eq!(cookie(header, "dark"), None);
        assert_eq!(cookie("novalue; backend=ok", "backend"), Some("ok"));
    }
}
