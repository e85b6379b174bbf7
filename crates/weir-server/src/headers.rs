//! Header rules of a proxy: hop-by-hop removal (RFC 9110 §7.6.1), `X-Forwarded-*` and
//! `Forwarded` (RFC 7239) with trusted-proxy handling, `Via`, and `Host`.

use std::net::IpAddr;

use http::header::{
    CONNECTION, CONTENT_TYPE, FORWARDED, HOST, REFERER, TE, TRANSFER_ENCODING, UPGRADE, USER_AGENT,
    VIA,
};
use http::{HeaderMap, HeaderName, HeaderValue, Version};
use weir_core::added::AddedFields;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// W3C Trace Context headers.
pub(crate) static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub(crate) static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Room a request's header map is made with for fields the proxy may put in it (`host`,
/// `connection` and `upgrade`, `traceparent`, a client-certificate subject; and the response's
/// `via` and request id when the map is used again for the response), so that adding them does
/// not grow it. The forwarding fields go beside it ([`AddedFields`]).
pub(crate) const ADDED_BY_PROXY: usize = 8;

/// The request fields every request's context reads, found in one pass over the map (five
/// lookups by name cost a hash and a probe each; most requests carry a handful of fields).
/// Each is the first field of its name, as `HeaderMap::get` gives.
#[derive(Default)]
pub(crate) struct ContextFields<'a> {
    pub(crate) request_id: Option<&'a HeaderValue>,
    pub(crate) traceparent: Option<&'a HeaderValue>,
    pub(crate) content_type: Option<&'a HeaderValue>,
    pub(crate) user_agent: Option<&'a HeaderValue>,
    pub(crate) referer: Option<&'a HeaderValue>,
}

impl<'a> ContextFields<'a> {
    pub(crate) fn of(headers: &'a HeaderMap) -> Self {
        let mut f = Self::default();
        for (name, value) in headers {
            let slot = if *name == USER_AGENT {
                &mut f.user_agent
            } else if *name == CONTENT_TYPE {
                &mut f.content_type
            } else if *name == REFERER {
                &mut f.referer
            } else if *name == X_REQUEST_ID {
                &mut f.request_id
            } else if *name == TRACEPARENT {
                &mut f.traceparent
            } else {
                continue;
            };
            slot.get_or_insert(value);
        }
        f
    }
}

/// Removes hop-by-hop headers: `Connection` and every header it names, `Keep-Alive`,
/// `Transfer-Encoding`, `Upgrade`, `Proxy-*`, and `TE` except a plain `trailers`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names decides what to do: most messages carry no hop-by-hop header
    // but `Connection: keep-alive`, and each removal by name costs a hash and a probe.
    let (mut connection, mut te, mut fixed) = (false, false, false);
    for name in headers.keys() {
        if *name == CONNECTION {
            connection = true;
        } else if *name == TE {
            te = true;
        } else if *name == TRANSFER_ENCODING
            || *name == UPGRADE
            || *name == KEEP_ALIVE
            || name.as_str().starts_with("proxy-")
        {
            fixed = true;
        }
    }
    // `Connection: keep-alive` alone (most upstream responses) names no field to remove.
    let names_fields = connection
        && headers.get_all(&CONNECTION).iter().any(|v| {
            !v.as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"keep-alive")
        });
    if names_fields {
        // `keep-alive` is in the fixed set below (and `fixed` is set when it is present).
        let listed: Vec<HeaderName> = headers
            .get_all(&CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.eq_ignore_ascii_case("keep-alive"))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in listed {
            headers.remove(&name);
        }
    }
    if connection {
        headers.remove(&CONNECTION);
    }
    if fixed {
        headers.remove(&KEEP_ALIVE);
        headers.remove(&TRANSFER_ENCODING);
        headers.remove(&UPGRADE);
        let proxy: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().starts_with("proxy-"))
            .cloned()
            .collect();
        for name in proxy {
            headers.remove(&name);
        }
    }
    if te && headers.contains_key(&TE) {
        let trailers = headers
            .get_all(&TE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
        headers.remove(&TE);
        if trailers {
            headers.insert(&TE, HeaderValue::from_static("trailers"));
        }
    }
}

/// Whether `ip` is one of the trusted proxies.
pub(crate) fn is_trusted(ip: IpAddr, trusted: &[ipnet::IpNet]) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|net| net.contains(&ip))
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address: the peer itself, or, when the peer is a trusted proxy, the rightmost
/// `X-Forwarded-For` entry that is not a trusted proxy.
pub(crate) fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: &[ipnet::IpNet]) -> IpAddr {
    if !is_trusted(peer, trusted) {
        return canonical(peer);
    }
    let hops: Vec<IpAddr> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .collect();
    let mut client = canonical(peer);
    for ip in hops.iter().rev() {
        client = canonical(*ip);
        if !is_trusted(client, trusted) {
            break;
        }
    }
    client
}

/// Which of the fields the proxy sets on a request going upstream it already carries, found in
/// one pass over its names (a lookup by name costs a hash and a probe, and most requests carry
/// none of them). Not read with [`ContextFields`]: that pass is over the request as received,
/// and the request phase's header edits come between it and this one.
#[derive(Default, Clone, Copy)]
pub(crate) struct ProxyFieldsPresent {
    xff: bool,
    forwarded: bool,
    proto: bool,
    host: bool,
    via: bool,
    request_id: bool,
}

impl ProxyFieldsPresent {
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let mut p = Self::default();
        for name in headers.keys() {
            let flag = if *name == X_FORWARDED_FOR {
                &mut p.xff
            } else if *name == FORWARDED {
                &mut p.forwarded
            } else if *name == X_FORWARDED_PROTO {
                &mut p.proto
            } else if *name == X_FORWARDED_HOST {
                &mut p.host
            } else if *name == VIA {
                &mut p.via
            } else if *name == X_REQUEST_ID {
                &mut p.request_id
            } else {
                continue;
            };
            *flag = true;
        }
        p
    }
}

/// `FORWARDED` and `VIA` as statics: [`AddedFields`] holds `'static` names.
static FORWARDED_NAME: HeaderName = FORWARDED;
static VIA_NAME: HeaderName = VIA;

/// Adds `name: value` to the fields sent after the request's own, the request's field of that
/// name (if `present`) removed first; `None`: the field is only removed.
fn add(
    headers: &mut HeaderMap,
    added: &mut AddedFields,
    present: bool,
    name: &'static HeaderName,
    value: Option<HeaderValue>,
) {
    if present {
        headers.remove(name);
    }
    if let Some(v) = value {
        if let Err((name, v)) = added.push(name, v) {
            headers.insert(name, v);
        }
    }
}

/// Sets `X-Forwarded-For/-Proto/-Host`, `Forwarded` and `Via` on a request going upstream:
/// the request's own fields of those names are removed from `headers` and the values to send
/// go into `added` (sent after the request's fields; see [`AddedFields`]). Incoming values are
/// kept (and appended to) only when the peer is a trusted proxy. `memo`: the connection's last
/// values (see [`ForwardingMemo`]).
#[allow(clippy::too_many_arguments)] // the request, where its additions go, and its connection
pub(crate) fn add_forwarding(
    headers: &mut HeaderMap,
    present: ProxyFieldsPresent,
    added: &mut AddedFields,
    peer: IpAddr,
    trusted: &[ipnet::IpNet],
    host: Option<&HeaderValue>,
    version: Version,
    tls: bool,
    memo: &ForwardingMemo,
) {
    let peer = canonical(peer);
    let keep = is_trusted(peer, trusted);
    let remembered = if keep { None } else { memo.get(peer, host) };
    let (xff, forwarded) = match remembered {
        Some(values) => values,
        None => {
            let (xff, forwarded) = forwarding_values(headers, peer, keep, host, tls);
            let (xff, forwarded) = (text_value(xff), text_value(forwarded));
            if !keep {
                if let (Some(x), Some(f)) = (&xff, &forwarded) {
                    memo.put(peer, host, x, f);
                }
            }
            (xff, forwarded)
        }
    };
    add(headers, added, present.xff, &X_FORWARDED_FOR, xff);
    add(
        headers,
        added,
        present.forwarded,
        &FORWARDED_NAME,
        forwarded,
    );
    if !(keep && present.proto) {
        const HTTP: HeaderValue = HeaderValue::from_static("http");
        const HTTPS: HeaderValue = HeaderValue::from_static("https");
        let proto = if tls { HTTPS } else { HTTP };
        add(
            headers,
            added,
            present.proto,
            &X_FORWARDED_PROTO,
            Some(proto),
        );
    }
    if !(keep && present.host) {
        add(
            headers,
            added,
            present.host,
            &X_FORWARDED_HOST,
            host.cloned(),
        );
    }
    let via = via_value(present.via.then(|| headers.get(&VIA)).flatten(), version);
    add(headers, added, present.via, &VIA_NAME, via);
}

/// Sets the request id to send upstream (replacing the request's own `X-Request-Id`) in `added`.
pub(crate) fn add_request_id(
    headers: &mut HeaderMap,
    present: ProxyFieldsPresent,
    added: &mut AddedFields,
    id: &HeaderValue,
) {
    add(
        headers,
        added,
        present.request_id,
        &X_REQUEST_ID,
        Some(request_id_value(id)),
    );
}

/// The `X-Forwarded-For` and `Forwarded` values for `peer` (after the incoming ones when `keep`).
fn forwarding_values(
    headers: &HeaderMap,
    peer: IpAddr,
    keep: bool,
    host: Option<&HeaderValue>,
    tls: bool,
) -> (String, String) {
    let proto = if tls { "https" } else { "http" };
    // Looked up only for a trusted peer (the lookup costs a hash and a probe).
    let previous = |name: &HeaderName| {
        keep.then(|| headers.get(name))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.trim().is_empty())
    };
    // Each value is written once into a string of about its size (no intermediate strings).
    let prev = previous(&X_FORWARDED_FOR);
    let mut xff = String::with_capacity(prev.map_or(0, |p| p.len() + 2) + 39);
    if let Some(prev) = prev {
        xff.push_str(prev);
        xff.push_str(", ");
    }
    let peer_at = xff.len();
    weir_core::text::push_ip(&mut xff, peer);
    let peer_text = &xff[peer_at..];

    let host_text = host.and_then(|h| h.to_str().ok());
    let prev = previous(&FORWARDED);
    let mut forwarded = String::with_capacity(
        prev.map_or(0, |p| p.len() + 2)
            + 32
            + peer_text.len()
            + host_text.map_or(0, |h| 8 + h.len()),
    );
    if let Some(prev) = prev {
        forwarded.push_str(prev);
        forwarded.push_str(", ");
    }
    forwarded.push_str("for=");
    match peer {
        IpAddr::V4(_) => forwarded.push_str(peer_text),
        IpAddr::V6(_) => {
            forwarded.push_str("\"[");
            forwarded.push_str(peer_text);
            forwarded.push_str("]\"");
        }
    }
    forwarded.push_str(";proto=");
    forwarded.push_str(proto);
    if let Some(h) = host_text {
        forwarded.push_str(";host=");
        if h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
        {
            forwarded.push_str(h);
        } else {
            // A quoted-string (RFC 7239 §4): `host:port` and anything else not a token.
            forwarded.push('"');
            for c in h.chars() {
                if c == '\\' || c == '"' {
                    forwarded.push('\\');
                }
                forwarded.push(c);
            }
            forwarded.push('"');
        }
    }
    (xff, forwarded)
}

/// The forwarding fields a connection last sent for a peer whose own fields are not kept. A
/// keep-alive connection's requests come from one peer and mostly name one Host, so they reuse
/// the values instead of formatting the address and checking the bytes again (two strings, two
/// allocations and a few hundred instructions a request). Never waits: a connection whose
/// memo is in use (HTTP/2 streams at the same instant) builds its values afresh.
#[derive(Default)]
pub(crate) struct ForwardingMemo(std::sync::Mutex<Option<Memo>>);

struct Memo {
    peer: IpAddr,
    /// A copy of the Host it was made for (the request's value would keep the client's read
    /// buffer alive as long as the connection).
    host: Option<HeaderValue>,
    xff: HeaderValue,
    forwarded: HeaderValue,
}

type Forwarding = (Option<HeaderValue>, Option<HeaderValue>);

impl ForwardingMemo {
    fn get(&self, peer: IpAddr, host: Option<&HeaderValue>) -> Option<Forwarding> {
        let memo = self.0.try_lock().ok()?;
        let m = memo.as_ref()?;
        (m.peer == peer && m.host.as_ref() == host)
            .then(|| (Some(m.xff.clone()), Some(m.forwarded.clone())))
    }

    fn put(&self, peer: IpAddr, host: Option<&HeaderValue>, xff: &HeaderValue, fwd: &HeaderValue) {
        if let Ok(mut memo) = self.0.try_lock() {
            *memo = Some(Memo {
                peer,
                host: host.and_then(|h| HeaderValue::from_bytes(h.as_bytes()).ok()),
                xff: xff.clone(),
                forwarded: fwd.clone(),
            });
        }
    }
}

/// The `Upgrade` a request asks for: HTTP/1.1, `Connection: upgrade` and an `Upgrade` value.
/// (`h2c` never gets here: the pipeline refuses it.)
pub(crate) fn upgrade_token(headers: &HeaderMap, version: Version) -> Option<HeaderValue> {
    if version != Version::HTTP_11 {
        return None;
    }
    let asks = headers
        .get_all(&CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !asks {
        return None;
    }
    headers.get(&UPGRADE).cloned()
}

/// Appends this hop to `Via` (`1.1 weir`, `2 weir`).
pub(crate) fn add_via(headers: &mut HeaderMap, version: Version) {
    let value = via_value(headers.get(&VIA), version);
    set(headers, &VIA, value);
}

/// `Via` with this hop after `prev` (`None`: `prev` and this hop do not make a valid value).
fn via_value(prev: Option<&HeaderValue>, version: Version) -> Option<HeaderValue> {
    // Constants: `from_static` outside a const context checks its bytes on every call.
    const VIA_10: HeaderValue = HeaderValue::from_static("1.0 weir");
    const VIA_11: HeaderValue = HeaderValue::from_static("1.1 weir");
    const VIA_2: HeaderValue = HeaderValue::from_static("2 weir");
    let value = match version {
        Version::HTTP_10 => VIA_10,
        Version::HTTP_2 => VIA_2,
        _ => VIA_11,
    };
    match prev.and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => {
            let hop = value.to_str().unwrap_or_default();
            text_value(format!("{prev}, {hop}"))
        }
        _ => Some(value),
    }
}

/// Ensures a `Host` header: the upstream's override, else the client's (h2 carries it in
/// `:authority`, which becomes `Host` for an HTTP/1.1 upstream).
pub(crate) fn set_host(
    headers: &mut HeaderMap,
    authority: Option<&str>,
    override_host: Option<&HeaderValue>,
) {
    if let Some(h) = override_host {
        headers.insert(HOST, h.clone());
    } else if !headers.contains_key(HOST) {
        if let Some(v) = authority.and_then(|a| HeaderValue::from_str(a).ok()) {
            headers.insert(HOST, v);
        }
    }
}

/// The request id as a header value to send: marked never-indexed for HPACK. Every request's
/// id is new, so an encoder that indexes it (an intermediary re-encoding the response) only
/// churns its dynamic table, evicting the fields that do repeat. (Weir's own HTTP/2 encoder
/// indexes nothing, `third_party/h2/WEIR.md`. Only the copy sent is marked: a sensitive
/// value prints as "Sensitive" in debug output, and the context's copy goes into logs.)
pub(crate) fn request_id_value(id: &HeaderValue) -> HeaderValue {
    let mut v = id.clone();
    v.set_sensitive(true);
    v
}

/// A header value of `text`, its buffer moved in (not copied); `None` if it is not a valid
/// value.
fn text_value(text: String) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text)).ok()
}

fn set(headers: &mut HeaderMap, name: &HeaderName, value: Option<HeaderValue>) {
    match value {
        Some(v) => {
            headers.insert(name, v);
        }
        None => {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<ipnet::IpNet> {
        s.iter().filter_map(|n| n.parse().ok()).collect()
    }

    #[test]
    fn the_forwarding_memo_serves_only_its_own_peer_and_host() {
        let memo = ForwardingMemo::default();
        let forward = |peer: &str, host: &str, trusted: &[ipnet::IpNet]| {
            let mut h = HeaderMap::new();
            h.insert(&X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
            let host = HeaderValue::from_str(host).expect("host");
            let peer = peer.parse().expect("peer");
            let mut added = AddedFields::new();
            let present = ProxyFieldsPresent::of(&h);
            add_forwarding(
                &mut h,
                present,
                &mut added,
                peer,
                trusted,
                Some(&host),
                Version::HTTP_11,
                false,
                &memo,
            );
            // The client's own field is gone from the map whatever the peer.
            assert!(h.get(&X_FORWARDED_FOR).is_none());
            let text = |n: &HeaderName| {
                added
                    .get(n.as_str())
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            (text(&X_FORWARDED_FOR), text(&FORWARDED))
        };
        let pair = |x: &str, f: &str| (Some(x.to_owned()), Some(f.to_owned()));
        for _ in 0..2 {
            assert_eq!(
                forward("10.0.0.1", "a.test", &[]),
                pair("10.0.0.1", "for=10.0.0.1;proto=http;host=a.test")
            );
        }
        assert_eq!(
            forward("10.0.0.1", "b.test:8080", &[]),
            pair("10.0.0.1", "for=10.0.0.1;proto=http;host=\"b.test:8080\"")
        );
        assert_eq!(
            forward("::ffff:10.0.0.2", "b.test:8080", &[]),
            pair("10.0.0.2", "for=10.0.0.2;proto=http;host=\"b.test:8080\"")
        );
        // A trusted peer's own fields are kept, never remembered nor served from the memo.
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            forward("10.0.0.2", "b.test:8080", &trusted),
            pair(
                "6.6.6.6, 10.0.0.2",
                "for=10.0.0.2;proto=http;host=\"b.test:8080\""
            )
        );
        assert_eq!(
            forward("10.0.0.2", "b.test:8080", &[]),
            pair("10.0.0.2", "for=10.0.0.2;proto=http;host=\"b.test:8080\"")
        );
    }

    #[test]
    fn context_fields_are_the_first_of_each_name() {
        let mut h = HeaderMap::new();
        h.append("user-agent", HeaderValue::from_static("a"));
        h.append("user-agent", HeaderValue::from_static("b"));
        h.insert("x-request-id", HeaderValue::from_static("id-1"));
        h.insert("content-type", HeaderValue::from_static("application/grpc"));
        h.insert("x-other", HeaderValue::from_static("x"));
        let f = ContextFields::of(&h);
        assert_eq!(f.user_agent, h.get("user-agent"));
        assert_eq!(f.request_id, h.get("x-request-id"));
        assert_eq!(f.content_type, h.get("content-type"));
        assert_eq!(f.traceparent, None);
        assert_eq!(f.referer, None);
    }

    #[test]
    fn connection_keep_alive_alone_removes_only_itself() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Keep-Alive"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["x-keep"]);
    }

    #[test]
    fn strips_connection_listed_and_fixed_hop_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("gzip, trailers"));
        h.insert("proxy-authorization", HeaderValue::from_static("x"));
        h.insert("upgrade", HeaderValue::from_static("h2c"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, vec!["te", "x-keep"]);
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn client_ip_walks_trusted_hops() {
        let trusted = nets(&["10.0.0.0/8"]);
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.2.3.4, 10.0.0.7"),
        );
        let peer: IpAddr = "10.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert_eq!(client_ip(&h, peer, &trusted).to_string(), "1.2.3.4");
        let untrusted: IpAddr = "8.8.8.8".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert_eq!(client_ip(&h, untrusted, &trusted).to_string(), "8.8.8.8");
    }
}
