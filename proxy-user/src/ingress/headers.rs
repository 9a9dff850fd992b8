//! Header handling between client and backend: hop-by-hop headers stay
//! on their hop (RFC 9110 §7.6.1), except the `Upgrade` handshake the
//! proxy relays; `X-Forwarded-For` gets the client appended, and
//! `X-Forwarded-Proto` and `X-Forwarded-Host` say how the client came in.
use std::net::IpAddr;

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Hop-by-hop headers besides those `Connection` names.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Whether the request asks for a protocol upgrade (WebSocket).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes the hop-by-hop headers; with `upgrade`, `Connection: upgrade`
/// and `Upgrade` are kept for the next hop.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        if !(upgrade && name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    match upgrade {
        true => {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        false => {
            headers.remove(header::UPGRADE);
        }
    }
}

/// Adds the forwarding headers for a request from `client`, which came
/// in over `proto` (`http` or `https`) for `host` (as the client sent it).
pub fn add_forwarded(headers: &mut HeaderMap, client: IpAddr, proto: &'static str, host: &str) {
    let earlier: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let client = client.to_string();
    let chain = match earlier.is_empty() {
        true => client,
        false => format!("{}, {client}", earlier.join(", ")),
    };
    if let Ok(value) = HeaderValue::from_str(&chain) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    if let Ok(value) = HeaderValue::from_str(host) {
        headers.insert(X_FORWARDED_HOST, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in list {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn forwarded_for_is_appended() {
        let mut map = headers(&[("x-forwarded-for", "203.0.113.7")]);
        add_forwarded(
            &mut map,
            "172.30.0.100".parse().unwrap(),
            "https",
            "a.example.com:8443",
        );
        assert_eq!(map["x-forwarded-for"], "203.0.113.7, 172.30.0.100");
        assert_eq!(map["x-forwarded-proto"], "https");
        assert_eq!(map["x-forwarded-host"], "a.example.com:8443");

        let mut map = headers(&[("x-forwarded-proto", "https")]);
        add_forwarded(&mut map, "172.30.0.100".parse().unwrap(), "http", "a");
        assert_eq!(map["x-forwarded-for"], "172.30.0.100");
        // A client cannot pretend it came over TLS.
        assert_eq!(map["x-forwarded-proto"], "http");
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut map = headers(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut map, false);
        let names: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["accept"]);
    }

    #[test]
    fn an_upgrade_keeps_its_handshake() {
        let mut map = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade(&map));
        strip_hop_by_hop(&mut map, true);
        assert_eq!(map["connection"], "upgrade");
        assert_eq!(map["upgrade"], "websocket");
        assert!(!is_upgrade(&headers(&[("upgrade", "websocket")])));
        assert!(is_upgrade(&headers(&[
            ("connection", "keep-alive, upgrade"),
            ("upgrade", "h2c")
        ])));
    }
}
