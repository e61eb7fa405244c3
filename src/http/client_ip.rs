//! Which address a request comes from, and which key its per-address limits count under.
//!
//! [`client_ip`] believes a forwarding header only when the socket peer is a trusted proxy,
//! and then walks the header from the right: each trusted proxy appended the address it
//! received the request from, so the right-most entry that is not a trusted proxy is the
//! client; entries to its left were written by the client and are ignored. The deployment
//! chooses one header ([`ForwardedHeader`]): `X-Forwarded-For` or RFC 7239 `Forwarded`. Never
//! both, because a proxy passes the header it does not write through from the client
//! unchanged, so reading it would let any client choose its address.
//!
//! Entries may carry ports (`1.2.3.4:5678`, `[2001:db8::1]:443`); a proxy that writes them
//! must not make every client look like the proxy itself. An entry that cannot be read stops
//! the walk, and the last address read is the answer. IPv4-mapped IPv6 addresses
//! (`::ffff:192.0.2.1`, which dual-stack sockets report) are treated as the IPv4 address.
//!
//! `authd_strategy_api::rate_key` groups addresses for rate limits and lockouts: one IPv6 client usually holds a
//! whole /64, so it counts as one.
//!
//! This module must not know about the daemon's config or server types: it takes a
//! [`hyper::HeaderMap`], the peer's [`IpAddr`] and the trusted networks.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use hyper::HeaderMap;
use ipnet::IpNet;

/// The header that the trusted proxies write the client's address into.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (spelled `"x-forwarded-for"` in TOML).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:443"` (spelled `"forwarded"`).
    Forwarded,
}

impl ForwardedHeader {
    /// The header's name, lower-case.
    pub fn header_name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }
}

/// The client's address: `peer` unless it is in `trusted`; then the right-most address in
/// `header` that is not in `trusted`, or the last one read before the walk stopped (at the
/// left end, or at an entry that cannot be read, such as `unknown` or an obfuscated `_name`).
pub fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
    header: ForwardedHeader,
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(&client) {
        return client;
    }
    for value in headers.get_all(header.header_name()).iter().rev() {
        let Ok(value) = value.to_str() else {
            return client;
        };
        let hops: Vec<Option<IpAddr>> = match header {
            ForwardedHeader::XForwardedFor => value.split(',').map(x_forwarded_for_node).collect(),
            ForwardedHeader::Forwarded => split_unquoted(value, ',')
                .into_iter()
                .map(forwarded_element)
                .collect(),
        };
        for hop in hops.into_iter().rev() {
            let Some(ip) = hop else {
                return client;
            };
            client = ip.to_canonical();
            if !is_trusted(&client) {
                return client;
            }
        }
    }
    client
}

/// One `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]`
/// or `[2001:db8::1]:443`, with white space around it.
fn x_forwarded_for_node(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(socket) = entry.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    let inner = entry.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// The address in the `for` parameter of one `Forwarded` element, or `None` when there is
/// none, it occurs twice, or it is `unknown` or obfuscated.
fn forwarded_element(element: &str) -> Option<IpAddr> {
    let mut node = None;
    for pair in split_unquoted(element, ';') {
        if pair.trim().is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("for") {
            if node.is_some() {
                return None;
            }
            node = Some(unquote(value.trim())?);
        }
    }
    forwarded_node(&node?)
}

/// An RFC 7239 node: `192.0.2.1`, `192.0.2.1:8080`, `[2001:db8::1]`, `[2001:db8::1]:_port`.
/// `unknown` and obfuscated `_names` give `None`. A bare IPv6 address is accepted too.
fn forwarded_node(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let ip = inner.parse::<Ipv6Addr>().ok()?;
        return match after {
            "" => Some(IpAddr::V6(ip)),
            _ => after
                .strip_prefix(':')
                .filter(|port| node_port(port))
                .map(|_| IpAddr::V6(ip)),
        };
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    let (host, port) = node.split_once(':')?;
    if !node_port(port) {
        return None;
    }
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A node port: up to five digits, or an obfuscated `_name`.
fn node_port(port: &str) -> bool {
    let digits = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    let obfuscated = port.len() > 1
        && port.starts_with('_')
        && port[1..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    digits || obfuscated
}

/// A token as it is, or the content of a quoted string with its `\` escapes undone. `None`
/// for an unterminated quoted string or text after the closing quote.
fn unquote(value: &str) -> Option<String> {
    let Some(body) = value.strip_prefix('"') else {
        return Some(value.to_string());
    };
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return chars.as_str().is_empty().then_some(out),
            c => out.push(c),
        }
    }
    None
}

/// Splits at `separator` where it is not inside a quoted string.
fn split_unquoted(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;
    use ForwardedHeader::{Forwarded, XForwardedFor};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn headers(name: &'static str, lines: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for line in lines {
            map.append(name, HeaderValue::from_str(line).unwrap());
        }
        map
    }

    fn xff(lines: &[&str]) -> HeaderMap {
        headers("x-forwarded-for", lines)
    }

    fn fwd(lines: &[&str]) -> HeaderMap {
        headers("forwarded", lines)
    }

    const PROXY: &str = "10.0.0.2";

    fn via_proxy(map: &HeaderMap, header: ForwardedHeader) -> IpAddr {
        client_ip(ip(PROXY), map, &nets(&["10.0.0.0/8", "fd00::/8"]), header)
    }

    #[test]
    fn a_spoofed_header_from_an_untrusted_peer_is_ignored() {
        let trusted = nets(&["10.0.0.0/8"]);
        let peer = ip("203.0.113.9");
        assert_eq!(
            client_ip(peer, &xff(&["1.2.3.4"]), &trusted, XForwardedFor),
            peer
        );
        assert_eq!(
            client_ip(peer, &fwd(&["for=1.2.3.4"]), &trusted, Forwarded),
            peer
        );
        assert_eq!(
            client_ip(peer, &xff(&["1.2.3.4"]), &[], XForwardedFor),
            peer
        );
    }

    #[test]
    fn a_trusted_peer_without_a_header_is_the_client() {
        assert_eq!(via_proxy(&HeaderMap::new(), XForwardedFor), ip(PROXY));
        assert_eq!(via_proxy(&HeaderMap::new(), Forwarded), ip(PROXY));
    }

    #[test]
    fn x_forwarded_for_entries_in_every_spelling() {
        for (entry, expected) in [
            ("1.2.3.4", "1.2.3.4"),
            ("1.2.3.4:5678", "1.2.3.4"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("2001:db8::1", "2001:db8::1"),
            ("  1.2.3.4  ", "1.2.3.4"),
            ("\t[2001:db8::1]:443 ", "2001:db8::1"),
        ] {
            assert_eq!(
                via_proxy(&xff(&[entry]), XForwardedFor),
                ip(expected),
                "{entry:?}"
            );
        }
    }

    #[test]
    fn a_proxy_writing_ports_does_not_make_every_client_the_proxy() {
        // The hole the red team found: `ip:port` failed to parse, the walk stopped, and every
        // client was counted as the proxy (one attacker's failures locked everyone out).
        let a = via_proxy(&xff(&["198.51.100.7:51234"]), XForwardedFor);
        let b = via_proxy(&xff(&["198.51.100.8:40000"]), XForwardedFor);
        assert_eq!(a, ip("198.51.100.7"));
        assert_eq!(b, ip("198.51.100.8"));
        assert_ne!(a, ip(PROXY));
    }

    #[test]
    fn the_right_most_untrusted_entry_wins() {
        let chain = xff(&["6.6.6.6, 198.51.100.7:1234, 10.0.0.5:80"]);
        assert_eq!(via_proxy(&chain, XForwardedFor), ip("198.51.100.7"));
        // Several header lines: later lines were appended by later proxies.
        let lines = xff(&["6.6.6.6", "198.51.100.7", "10.0.0.5, 10.0.0.6"]);
        assert_eq!(via_proxy(&lines, XForwardedFor), ip("198.51.100.7"));
        // Only trusted proxies in the chain: the left-most of them.
        let all_trusted = xff(&["10.0.0.7, 10.0.0.5"]);
        assert_eq!(via_proxy(&all_trusted, XForwardedFor), ip("10.0.0.7"));
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_good_address() {
        assert_eq!(via_proxy(&xff(&["not-an-ip"]), XForwardedFor), ip(PROXY));
        assert_eq!(
            via_proxy(&xff(&["1.2.3.4, not-an-ip, 10.0.0.5"]), XForwardedFor),
            ip("10.0.0.5")
        );
        assert_eq!(via_proxy(&xff(&["1.2.3.4, "]), XForwardedFor), ip(PROXY));
        assert_eq!(
            via_proxy(&xff(&["1.2.3.4:99999"]), XForwardedFor),
            ip(PROXY)
        );
        assert_eq!(via_proxy(&xff(&["[1.2.3.4]"]), XForwardedFor), ip(PROXY));
        let mut opaque = HeaderMap::new();
        opaque.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"1.2.3.4\xff").unwrap(),
        );
        assert_eq!(via_proxy(&opaque, XForwardedFor), ip(PROXY));
    }

    #[test]
    fn forwarded_nodes_in_every_spelling() {
        for (value, expected) in [
            ("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
            ("for=\"192.0.2.60:8080\"", "192.0.2.60"),
            ("For=\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17"),
            ("for=\"[2001:db8:cafe::17]\"", "2001:db8:cafe::17"),
            ("for=\"[2001:db8:cafe::17]:_port1\"", "2001:db8:cafe::17"),
            ("for=\"192.0.2.60:_gazonk\"", "192.0.2.60"),
            ("proto=https; for = 192.0.2.60 ;by=_proxy", "192.0.2.60"),
            ("for=\"\\1\\9\\2.0.2.60\"", "192.0.2.60"),
            ("for=\"2001:db8::9\"", "2001:db8::9"),
            ("for=192.0.2.60;", "192.0.2.60"),
        ] {
            assert_eq!(
                via_proxy(&fwd(&[value]), Forwarded),
                ip(expected),
                "{value:?}"
            );
        }
    }

    #[test]
    fn forwarded_chains_walk_from_the_right() {
        let chain = fwd(&["for=6.6.6.6, for=198.51.100.7;proto=https, for=\"10.0.0.5:80\""]);
        assert_eq!(via_proxy(&chain, Forwarded), ip("198.51.100.7"));
        let lines = fwd(&[
            "for=6.6.6.6",
            "for=\"[2001:db8::7]:1\"",
            "for=\"[fd00::5]\"",
        ]);
        assert_eq!(via_proxy(&lines, Forwarded), ip("2001:db8::7"));
        // A comma inside a quoted string does not split the element.
        let quoted = fwd(&["for=\"6.6.6.6, for=7.7.7.7\", for=198.51.100.7"]);
        assert_eq!(via_proxy(&quoted, Forwarded), ip("198.51.100.7"));
    }

    #[test]
    fn unknown_and_obfuscated_forwarded_nodes_stop_the_walk() {
        for value in [
            "for=1.2.3.4, for=unknown",
            "for=1.2.3.4, for=UNKNOWN",
            "for=1.2.3.4, for=_hidden",
            "for=1.2.3.4, for=\"_SEVKISEK\"",
            "for=1.2.3.4, proto=https",
            "for=1.2.3.4, for=5.6.7.8;for=9.9.9.9",
            "for=1.2.3.4, for=\"5.6.7.8",
            "for=1.2.3.4, for=\"5.6.7.8\"x",
            "for=1.2.3.4, for=[2001:db8::1",
            "for=1.2.3.4, garbage",
        ] {
            assert_eq!(via_proxy(&fwd(&[value]), Forwarded), ip(PROXY), "{value:?}");
        }
        assert_eq!(
            via_proxy(&fwd(&["for=1.2.3.4, for=unknown, for=10.0.0.9"]), Forwarded),
            ip("10.0.0.9")
        );
    }

    #[test]
    fn only_the_chosen_header_is_read() {
        // The proxy writes one header; the other one came from the client unchanged.
        let mut both = xff(&["6.6.6.6"]);
        both.append("forwarded", HeaderValue::from_static("for=198.51.100.7"));
        assert_eq!(via_proxy(&both, Forwarded), ip("198.51.100.7"));
        assert_eq!(via_proxy(&both, XForwardedFor), ip("6.6.6.6"));
        assert_eq!(via_proxy(&xff(&["6.6.6.6"]), Forwarded), ip(PROXY));
        assert_eq!(via_proxy(&fwd(&["for=6.6.6.6"]), XForwardedFor), ip(PROXY));
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        let trusted = nets(&["10.0.0.0/8"]);
        // A dual-stack socket reports an IPv4 proxy as ::ffff:10.0.0.2.
        let mapped_proxy = ip("::ffff:10.0.0.2");
        assert_eq!(
            client_ip(
                mapped_proxy,
                &xff(&["198.51.100.7"]),
                &trusted,
                XForwardedFor
            ),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(
                ip("::ffff:203.0.113.9"),
                &HeaderMap::new(),
                &trusted,
                XForwardedFor
            ),
            ip("203.0.113.9")
        );
        assert_eq!(
            via_proxy(&xff(&["::ffff:198.51.100.7"]), XForwardedFor),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn the_header_is_chosen_by_its_toml_spelling() {
        #[derive(serde::Deserialize)]
        struct Server {
            forwarded_header: ForwardedHeader,
        }
        let parse = |text: &str| toml::from_str::<Server>(text).map(|s| s.forwarded_header);
        assert_eq!(
            parse("forwarded_header = \"forwarded\"").unwrap(),
            Forwarded
        );
        assert_eq!(
            parse("forwarded_header = \"x-forwarded-for\"").unwrap(),
            XForwardedFor
        );
        assert!(parse("forwarded_header = \"both\"").is_err());
        assert_eq!(ForwardedHeader::default(), XForwardedFor);
    }
}
