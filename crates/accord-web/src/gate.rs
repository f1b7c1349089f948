//! Who may use the page, and from where.
//!
//! The page can change every agreement this organisation holds, so it
//! must be reachable only by the person who started `accord serve`:
//!
//! - **A secret token** in the URL that `serve` prints. Other local users
//!   and other web sites cannot guess it. Visiting `/?token=…` once trades
//!   it for a session cookie and redirects to `/`, so the token leaves the
//!   address bar (and browser history) at once.
//! - **A session cookie** (`HttpOnly`, `SameSite=Strict`) on every other
//!   request: scripts cannot read it, and other sites' pages cannot make
//!   the browser send it.
//! - **`Host`** must name this machine's loopback address and our port: a
//!   DNS-rebinding page (whose name now points at 127.0.0.1) sends its own
//!   name and is refused before anything else happens.
//! - **`Origin`**, when present, must be this page; requests that change
//!   something must carry it. A cross-site form post or fetch is refused
//!   even if a cookie were somehow attached.
//!
//! The token is never logged; refusals say what to do without echoing it.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, Ordering};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::Web;
use crate::error::WebError;

/// The secret, the sessions it opened, and the port the page is served on.
pub(crate) struct Gate {
    token: String,
    sessions: Mutex<HashSet<String>>,
    /// 0 until the listener is bound: every request is refused until then.
    port: AtomicU16,
}

/// Why a request was refused (each says what the person can do about it).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    NotListening,
    BadHost,
    ForeignOrigin,
    MissingOrigin,
    BadToken,
    NoSession,
}

impl Refusal {
    fn message(&self) -> &'static str {
        match self {
            Refusal::NotListening => "Accord is still starting; reload in a moment.",
            Refusal::BadHost => {
                "Refused: this page is only served as http://127.0.0.1:PORT, http://localhost:PORT or http://[::1]:PORT (the Host header named another site, as in a DNS-rebinding attack)."
            }
            Refusal::ForeignOrigin => {
                "Refused: the request came from another web site (its Origin is not this page)."
            }
            Refusal::MissingOrigin => {
                "Refused: a request that changes something must come from this page (it carried no Origin header)."
            }
            Refusal::BadToken => {
                "Refused: this link's token is not valid. Open the link that `accord serve` printed when it last started."
            }
            Refusal::NoSession => {
                "Refused: no session. Open the link that `accord serve` printed (it carries a secret token); it signs this browser in."
            }
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = match self {
            Refusal::NotListening => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::FORBIDDEN,
        };
        let mut response = (status, self.message()).into_response();
        add_security_headers(response.headers_mut());
        response
    }
}

impl Gate {
    pub(crate) fn new() -> Result<Self, WebError> {
        Ok(Self {
            token: random_hex::<32>()?,
            sessions: Mutex::new(HashSet::new()),
            port: AtomicU16::new(0),
        })
    }

    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    pub(crate) fn set_port(&self, port: u16) {
        self.port.store(port, Ordering::SeqCst);
    }

    pub(crate) fn port(&self) -> u16 {
        self.port.load(Ordering::SeqCst)
    }

    /// Per port, because browsers share cookies between ports of one host:
    /// two nodes on one machine must not sign each other's pages in.
    fn cookie_name(&self) -> String {
        format!("accord_session_{}", self.port())
    }

    /// `Host` must be one of this machine's loopback names with our port.
    pub(crate) fn check_host(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let port = self.port();
        if port == 0 {
            return Err(Refusal::NotListening);
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .ok_or(Refusal::BadHost)?;
        if is_loopback_host(host, port) {
            Ok(())
        } else {
            Err(Refusal::BadHost)
        }
    }

    /// `Origin`, when present, must be this page; requests that change
    /// something must carry it.
    pub(crate) fn check_origin(&self, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
        let safe = matches!(*method, Method::GET | Method::HEAD);
        match headers.get(header::ORIGIN).map(|o| o.to_str()) {
            None if safe => Ok(()),
            None => Err(Refusal::MissingOrigin),
            Some(Ok(origin)) => match origin.strip_prefix("http://") {
                Some(host) if is_loopback_host(host, self.port()) => Ok(()),
                _ => Err(Refusal::ForeignOrigin),
            },
            Some(Err(_)) => Err(Refusal::ForeignOrigin),
        }
    }

    /// Trades a valid token for a new session; returns the session id.
    pub(crate) fn open_session(&self, token: &str) -> Result<String, Refusal> {
        if !constant_time_eq(token.as_bytes(), self.token.as_bytes()) {
            return Err(Refusal::BadToken);
        }
        let id = random_hex::<32>().map_err(|_| Refusal::BadToken)?;
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.insert(id.clone());
        }
        Ok(id)
    }

    /// Whether the request carries a cookie for a session we opened.
    pub(crate) fn has_session(&self, headers: &HeaderMap) -> bool {
        let name = self.cookie_name();
        let Ok(sessions) = self.sessions.lock() else {
            return false;
        };
        cookies(headers)
            .filter(|(n, _)| *n == name)
            .any(|(_, value)| {
                sessions
                    .iter()
                    .any(|s| constant_time_eq(s.as_bytes(), value.as_bytes()))
            })
    }

    /// The `Set-Cookie` value for a new session: unreadable by scripts,
    /// never sent with requests that other sites start.
    pub(crate) fn session_cookie(&self, id: &str) -> String {
        format!(
            "{}={id}; Path=/; HttpOnly; SameSite=Strict",
            self.cookie_name()
        )
    }
}

/// `127.0.0.1:PORT`, `localhost:PORT` or `[::1]:PORT`.
fn is_loopback_host(host: &str, port: u16) -> bool {
    let Some((name, host_port)) = host.rsplit_once(':') else {
        return false;
    };
    host_port == port.to_string()
        && (name == "127.0.0.1" || name.eq_ignore_ascii_case("localhost") || name == "[::1]")
}

fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
}

/// Compares without stopping at the first difference, so the time taken
/// says nothing about how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_hex<const N: usize>() -> Result<String, WebError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|e| WebError::Internal(format!("no randomness from the system: {e}")))?;
    Ok(data_encoding::HEXLOWER.encode(&bytes))
}

/// The `token` query parameter, if the URL has one.
fn token_param(uri: &axum::http::Uri) -> Option<&str> {
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
}

/// The middleware in front of every route of the page: Host and Origin
/// first, then either the token exchange or the session cookie.
pub(crate) async fn guard(State(web): State<Web>, request: Request, next: Next) -> Response {
    let gate = web.gate();
    if let Err(refusal) = gate
        .check_host(request.headers())
        .and_then(|()| gate.check_origin(request.method(), request.headers()))
    {
        return refusal.into_response();
    }
    if let Some(token) = token_param(request.uri()) {
        return exchange_token(gate, token);
    }
    if !gate.has_session(request.headers()) {
        return Refusal::NoSession.into_response();
    }
    let mut response = next.run(request).await;
    add_security_headers(response.headers_mut());
    response
}

/// A valid token sets the cookie and redirects to `/`, dropping the token
/// from the address bar.
fn exchange_token(gate: &Gate, token: &str) -> Response {
    match gate.open_session(token) {
        Ok(id) => {
            let mut response = (StatusCode::SEE_OTHER, "Signed in.").into_response();
            let headers = response.headers_mut();
            headers.insert(header::LOCATION, HeaderValue::from_static("/"));
            if let Ok(cookie) = HeaderValue::from_str(&gate.session_cookie(&id)) {
                headers.insert(header::SET_COOKIE, cookie);
            }
            add_security_headers(headers);
            response
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// Headers that keep the page out of frames, caches and referrers. A
/// route with its own `Content-Security-Policy` (the printable export)
/// keeps it.
fn add_security_headers(headers: &mut HeaderMap) {
    let set = |headers: &mut HeaderMap, name, value| {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    // `same-origin`, not `no-referrer`: under `no-referrer` browsers send
    // `Origin: null` on the page's own POSTs, which the gate must refuse.
    // Other sites still get no referrer.
    set(headers, header::REFERRER_POLICY, "same-origin");
    set(headers, header::CACHE_CONTROL, "no-store");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(port: u16) -> Gate {
        let gate = Gate::new().unwrap();
        gate.set_port(port);
        gate
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn only_loopback_hosts_with_our_port_pass() {
        let gate = gate(7420);
        for ok in [
            "127.0.0.1:7420",
            "localhost:7420",
            "LOCALHOST:7420",
            "[::1]:7420",
        ] {
            assert_eq!(
                gate.check_host(&headers(&[(header::HOST, ok)])),
                Ok(()),
                "{ok}"
            );
        }
        for bad in [
            "evil.example:7420",
            "127.0.0.1:7421",
            "127.0.0.1",
            "127.0.0.1.evil.example:7420",
            "localhost.:7420",
            "",
        ] {
            assert_eq!(
                gate.check_host(&headers(&[(header::HOST, bad)])),
                Err(Refusal::BadHost),
                "{bad}"
            );
        }
        assert_eq!(gate.check_host(&HeaderMap::new()), Err(Refusal::BadHost));
    }

    #[test]
    fn nothing_passes_before_the_port_is_known() {
        let gate = Gate::new().unwrap();
        let h = headers(&[(header::HOST, "127.0.0.1:0")]);
        assert_eq!(gate.check_host(&h), Err(Refusal::NotListening));
    }

    #[test]
    fn changes_need_our_origin_and_reads_refuse_a_foreign_one() {
        let gate = gate(7420);
        let ours = headers(&[(header::ORIGIN, "http://127.0.0.1:7420")]);
        let foreign = headers(&[(header::ORIGIN, "http://evil.example")]);
        let https = headers(&[(header::ORIGIN, "https://127.0.0.1:7420")]);
        let null = headers(&[(header::ORIGIN, "null")]);
        let none = HeaderMap::new();
        assert_eq!(gate.check_origin(&Method::POST, &ours), Ok(()));
        assert_eq!(gate.check_origin(&Method::GET, &none), Ok(()));
        assert_eq!(
            gate.check_origin(&Method::POST, &none),
            Err(Refusal::MissingOrigin)
        );
        assert_eq!(
            gate.check_origin(&Method::DELETE, &none),
            Err(Refusal::MissingOrigin)
        );
        for bad in [&foreign, &https, &null] {
            assert_eq!(
                gate.check_origin(&Method::GET, bad),
                Err(Refusal::ForeignOrigin)
            );
            assert_eq!(
                gate.check_origin(&Method::POST, bad),
                Err(Refusal::ForeignOrigin)
            );
        }
    }

    #[test]
    fn a_token_opens_a_session_that_its_cookie_then_proves() {
        let gate = gate(7420);
        assert_eq!(gate.token().len(), 64);
        assert_eq!(gate.open_session("nope"), Err(Refusal::BadToken));
        let id = gate.open_session(gate.token()).unwrap();
        let cookie = gate.session_cookie(&id);
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        let pair = cookie.split(';').next().unwrap();
        assert!(gate.has_session(&headers(&[(header::COOKIE, &format!("a=b; {pair}"))])));
        let forged = format!("accord_session_7420={}", "0".repeat(64));
        assert!(!gate.has_session(&headers(&[(header::COOKIE, &forged)])));
        // The same cookie for another port's node is not ours.
        let other_port = pair.replace("7420", "7421");
        assert!(!gate.has_session(&headers(&[(header::COOKIE, &other_port)])));
    }

    #[test]
    fn the_token_is_read_from_the_query() {
        let uri: axum::http::Uri = "/?x=1&token=abc".parse().unwrap();
        assert_eq!(token_param(&uri), Some("abc"));
        let uri: axum::http::Uri = "/api/state".parse().unwrap();
        assert_eq!(token_param(&uri), None);
    }
}
