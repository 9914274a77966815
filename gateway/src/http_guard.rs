//! What a browser may reach on the HTTP port.
//!
//! The gateway often runs on a laptop in dev mode, where any request is
//! served. A web page the user visits must not be able to use it: by DNS
//! rebinding (a name the attacker controls resolving to 127.0.0.1, so the
//! page is "same origin" with the gateway, but its `Host` is the
//! attacker's name) or by a cross-site request (the page's `Origin` is
//! foreign). So every request names an allowed `Host`, and a request with
//! an `Origin` (browsers send it; other clients usually do not) names an
//! allowed one. JSON bodies must say they are JSON: a `text/plain` POST is
//! what a page can send without a CORS preflight.

use std::net::IpAddr;

use axum::http::{header, HeaderMap};
use tarn_common::{ErrorCode, TarnError};

/// Allowed `Host` and `Origin` values.
#[derive(Debug, Clone, Default)]
pub struct HttpGuard {
    any_host: bool,
    any_origin: bool,
    /// Host names (lower case, IPv6 in brackets) allowed with any port.
    hosts: Vec<String>,
    /// `host:port` pairs allowed with that port only.
    host_ports: Vec<String>,
    /// Whole origins (`scheme://host[:port]`, lower case).
    origins: Vec<String>,
    /// Origin host names allowed with any scheme and port.
    origin_hosts: Vec<String>,
}

/// `name`, `name:port`, `[v6]`, `[v6]:port` → (name, port), lower case.
fn split_host(authority: &str) -> Option<(String, Option<u16>)> {
    let a = authority.trim().to_ascii_lowercase();
    if a.is_empty() || a.contains(['/', '@', ' ', '\\']) {
        return None;
    }
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse().ok()?),
        };
        (format!("[{v6}]"), port)
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.parse().ok()?)),
            None => (a, None),
        }
    };
    let host = host.trim_end_matches('.').to_string();
    (!host.is_empty()).then_some((host, port))
}

/// Whether a host name is a loopback address or `localhost`.
fn is_loopback(host: &str) -> bool {
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host part of a bind address, unless it binds every interface.
fn bind_host(addr: &str) -> Option<String> {
    let (host, _) = split_host(addr)?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() => None,
        _ => Some(host),
    }
}

impl HttpGuard {
    /// Loopback names and `own` (the gateway's bind addresses) with any
    /// port, plus `hosts` and `origins` as configured (`*`: any).
    pub fn new(own: &[String], hosts: &[String], origins: &[String]) -> Self {
        let mut g = Self::default();
        for h in own.iter().filter_map(|a| bind_host(a)) {
            g.hosts.push(h);
        }
        for h in hosts.iter().map(|h| h.trim()).filter(|h| !h.is_empty()) {
            if h == "*" {
                g.any_host = true;
            } else if let Some((name, port)) = split_host(h) {
                match port {
                    Some(p) => g.host_ports.push(format!("{name}:{p}")),
                    None => g.hosts.push(name),
                }
            }
        }
        for o in origins.iter().map(|o| o.trim()).filter(|o| !o.is_empty()) {
            let o = o.to_ascii_lowercase();
            if o == "*" {
                g.any_origin = true;
            } else if o.contains("://") {
                g.origins.push(o.trim_end_matches('/').to_string());
            } else if let Some((name, _)) = split_host(&o) {
                g.origin_hosts.push(name);
            }
        }
        g
    }

    fn host_allowed(&self, host: &str, port: Option<u16>) -> bool {
        self.any_host
            || is_loopback(host)
            || self.hosts.iter().any(|h| h == host)
            || port.is_some_and(|p| self.host_ports.contains(&format!("{host}:{p}")))
    }

    /// Refuses a request whose `Host` or `Origin` is not allowed.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), TarnError> {
        let host_header = headers
            .get(header::HOST)
            .map(|v| v.to_str().unwrap_or("\u{fffd}"));
        if let Some(raw) = host_header {
            let ok = split_host(raw).is_some_and(|(h, p)| self.host_allowed(&h, p));
            if !ok {
                return Err(refusal(format!(
                    "this gateway does not answer to the host name {raw:?}"
                ))
                .with_fix(
                    "reach the gateway by localhost, 127.0.0.1 or its own address; an operator can allow more names with http_allowed_hosts",
                ));
            }
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or("\u{fffd}");
        if self.origin_allowed(origin, host_header) {
            return Ok(());
        }
        Err(refusal(format!(
            "requests from web pages at {origin:?} are not allowed"
        ))
        .with_fix("open the notebook from an allowed origin; an operator can allow it with http_allowed_origins"))
    }

    fn origin_allowed(&self, origin: &str, host_header: Option<&str>) -> bool {
        if self.any_origin {
            return true;
        }
        let origin = origin.trim().to_ascii_lowercase();
        let origin = origin.trim_end_matches('/');
        if self.origins.iter().any(|o| o == origin) {
            return true;
        }
        // `null` (sandboxed frames, files) and anything not scheme://authority.
        let Some((scheme, authority)) = origin.split_once("://") else {
            return false;
        };
        if !matches!(scheme, "http" | "https") {
            return false;
        }
        let Some((host, _)) = split_host(authority) else {
            return false;
        };
        // A page served by this very host (already checked above) is
        // same-origin; loopback and the gateway's own names are ours.
        host_header.is_some_and(|h| h.trim().eq_ignore_ascii_case(authority))
            || is_loopback(&host)
            || self.hosts.contains(&host)
            || self.origin_hosts.contains(&host)
    }
}

fn refusal(message: String) -> TarnError {
    TarnError::new(ErrorCode::OriginNotAllowed, message)
}

/// Refuses a non-empty body that does not say it is JSON (TARN-2211).
pub fn require_json(headers: &HeaderMap, body: &[u8]) -> Result<(), TarnError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    let sent = if ct.is_empty() {
        "no Content-Type".to_string()
    } else {
        format!("Content-Type {ct:?}")
    };
    Err(TarnError::new(
        ErrorCode::UnsupportedMediaType,
        format!("the body must be JSON sent as application/json; this request has {sent}"),
    )
    .with_fix("send the header `Content-Type: application/json` with the JSON body"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn code(g: &HttpGuard, pairs: &[(&'static str, &str)]) -> Option<u32> {
        g.check(&headers(pairs)).err().map(|e| e.code.number())
    }

    #[test]
    fn loopback_and_own_names_pass_and_foreign_ones_get_2210() {
        let g = HttpGuard::new(&["10.0.0.5:8060".into()], &[], &[]);
        for ok in [
            "localhost:8060",
            "127.0.0.1:1",
            "[::1]:8060",
            "localhost",
            "10.0.0.5:8060",
            "127.0.0.2",
        ] {
            assert_eq!(code(&g, &[("host", ok)]), None, "{ok}");
        }
        for bad in [
            "evil.example:8060",
            "evil.example",
            "localhost.evil.example",
            "10.0.0.6:8060",
            "",
            "a b",
        ] {
            assert_eq!(code(&g, &[("host", bad)]), Some(2210), "{bad}");
        }
        assert_eq!(
            code(
                &g,
                &[
                    ("host", "localhost:8060"),
                    ("origin", "http://evil.example")
                ]
            ),
            Some(2210)
        );
        assert_eq!(
            code(&g, &[("host", "localhost:8060"), ("origin", "null")]),
            Some(2210)
        );
        assert_eq!(
            code(
                &g,
                &[
                    ("host", "localhost:8060"),
                    ("origin", "http://localhost:8888")
                ]
            ),
            None
        );
        assert_eq!(
            code(
                &g,
                &[
                    ("host", "10.0.0.5:8060"),
                    ("origin", "http://10.0.0.5:8060")
                ]
            ),
            None
        );
        // No Origin: a non-browser client.
        assert_eq!(code(&g, &[("host", "127.0.0.1:8060")]), None);
    }

    #[test]
    fn configured_names_and_the_wildcard() {
        let g = HttpGuard::new(
            &["0.0.0.0:8060".into()],
            &["tarn.corp.example".into(), "gw.example:9000".into()],
            &[
                "https://notebooks.corp.example".into(),
                "lab.example".into(),
            ],
        );
        assert_eq!(code(&g, &[("host", "tarn.corp.example:8060")]), None);
        assert_eq!(code(&g, &[("host", "gw.example:9000")]), None);
        assert_eq!(code(&g, &[("host", "gw.example:9001")]), Some(2210));
        assert_eq!(code(&g, &[("host", "0.0.0.0:8060")]), Some(2210));
        let h = "tarn.corp.example";
        assert_eq!(
            code(
                &g,
                &[("host", h), ("origin", "https://notebooks.corp.example")]
            ),
            None
        );
        assert_eq!(
            code(
                &g,
                &[("host", h), ("origin", "http://notebooks.corp.example")]
            ),
            Some(2210)
        );
        assert_eq!(
            code(&g, &[("host", h), ("origin", "http://lab.example:1234")]),
            None
        );
        assert_eq!(
            code(&g, &[("host", h), ("origin", "https://tarn.corp.example")]),
            None
        );
        let any = HttpGuard::new(&[], &["*".into()], &["*".into()]);
        assert_eq!(
            code(
                &any,
                &[("host", "evil.example"), ("origin", "http://evil.example")]
            ),
            None
        );
    }

    #[test]
    fn json_bodies_must_say_so() {
        let ok = headers(&[("content-type", "application/json; charset=utf-8")]);
        assert!(require_json(&ok, b"{}").is_ok());
        assert!(require_json(&HeaderMap::new(), b"").is_ok());
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ] {
            let e = require_json(&headers(&[("content-type", ct)]), b"{}").unwrap_err();
            assert_eq!(e.code.number(), 2211);
        }
        assert_eq!(
            require_json(&HeaderMap::new(), b"{}")
                .unwrap_err()
                .code
                .number(),
            2211
        );
    }
}
