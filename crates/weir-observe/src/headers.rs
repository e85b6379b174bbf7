//! The headers `[access_log] headers = { request = [...], response = [...] }` lists, copied
//! into the request's context: the request's as the client sent them (before any policy edits
//! them), the response's as Weir sent it. A value is capped at [`MAX_VALUE`] bytes (marked with
//! `…`), bytes outside visible ASCII become `?`, and a header that carries a credential —
//! `authorization`, `proxy-authorization`, `cookie`, `set-cookie`, and any header a JWT or
//! API-key policy reads its token from — is written `REDACTED`, so listing one never leaks it.

use http::{HeaderMap, HeaderName};
use weir_core::LoggedHeaderValues;

/// Longest value kept, in bytes; longer ones are cut and end in `…`.
pub const MAX_VALUE: usize = 256;

/// What to copy and what to hide.
#[derive(Debug, Clone, Default)]
pub struct HeaderCapture {
    request: Vec<HeaderName>,
    response: Vec<HeaderName>,
    secret: Vec<HeaderName>,
}

impl HeaderCapture {
    /// The capture for `config`, or `None` when it lists no header; `credentials` are the
    /// header names policies read credentials from.
    pub fn new<'a>(
        config: &weir_config::LoggedHeaders,
        credentials: impl IntoIterator<Item = &'a str>,
    ) -> Option<Self> {
        if config.is_empty() {
            return None;
        }
        let names = |list: &[String]| -> Vec<HeaderName> {
            list.iter()
                .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                .collect()
        };
        let mut secret: Vec<HeaderName> = [
            http::header::AUTHORIZATION,
            http::header::PROXY_AUTHORIZATION,
            http::header::COOKIE,
            http::header::SET_COOKIE,
        ]
        .into();
        secret.extend(
            credentials
                .into_iter()
                .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok()),
        );
        Some(Self {
            request: names(&config.request),
            response: names(&config.response),
            secret,
        })
    }

    /// The listed request headers of `headers` (`None` when only response headers are listed:
    /// nothing is allocated until the response).
    pub fn request(&self, headers: &HeaderMap) -> Option<Box<LoggedHeaderValues>> {
        if self.request.is_empty() {
            return None;
        }
        Some(Box::new(LoggedHeaderValues {
            request: self.copy(&self.request, headers),
            response: Vec::new(),
        }))
    }

    /// Adds the listed response headers of `headers` to `values`.
    pub fn response(&self, headers: &HeaderMap, values: &mut Option<Box<LoggedHeaderValues>>) {
        if self.response.is_empty() {
            return;
        }
        values.get_or_insert_with(Box::default).response = self.copy(&self.response, headers);
    }

    fn copy(&self, names: &[HeaderName], headers: &HeaderMap) -> Vec<(HeaderName, String)> {
        let mut out = Vec::new();
        for name in names {
            let mut values = headers.get_all(name).iter().peekable();
            if values.peek().is_none() {
                continue;
            }
            let value = if self.secret.contains(name) {
                weir_core::redact::REDACTED.to_owned()
            } else {
                // Several fields of one name are one list, as HTTP joins them.
                let mut joined = String::new();
                for (i, v) in values.enumerate() {
                    if i > 0 {
                        joined.push_str(", ");
                    }
                    push_capped(&mut joined, v.as_bytes());
                    if joined.len() >= MAX_VALUE {
                        break;
                    }
                }
                joined
            };
            out.push((name.clone(), value));
        }
        out
    }
}

/// Appends `bytes` as text, visible ASCII only, up to [`MAX_VALUE`] bytes in all.
fn push_capped(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if out.len() >= MAX_VALUE {
            out.push('…');
            return;
        }
        out.push(if (0x20..0x7f).contains(&b) {
            char::from(b)
        } else {
            '?'
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_caps_and_redacts() {
        let config = weir_config::LoggedHeaders {
            request: vec![
                "x-tenant".into(),
                "authorization".into(),
                "x-api-key".into(),
                "x-absent".into(),
                "x-long".into(),
                "accept".into(),
            ],
            response: vec!["content-type".into()],
        };
        let capture = HeaderCapture::new(&config, ["x-api-key"]).expect("capture");
        let mut h = HeaderMap::new();
        h.insert("x-tenant", "acme".parse().expect("v"));
        h.insert("authorization", "Bearer s3cr3t".parse().expect("v"));
        h.insert("x-api-key", "k3y".parse().expect("v"));
        h.insert("x-long", "a".repeat(1000).parse().expect("v"));
        h.append("accept", "text/html".parse().expect("v"));
        h.append("accept", "*/*".parse().expect("v"));
        let got = capture.request(&h).expect("request headers listed").request;
        let got: Vec<(&str, &str)> = got.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(got[0], ("x-tenant", "acme"));
        assert_eq!(got[1], ("authorization", "REDACTED"));
        assert_eq!(got[2], ("x-api-key", "REDACTED"));
        assert_eq!(got[3].0, "x-long");
        assert_eq!(got[3].1.len(), MAX_VALUE + '…'.len_utf8());
        assert_eq!(got[4], ("accept", "text/html, */*"));
        assert_eq!(got.len(), 5, "an absent header is left out");
        assert!(HeaderCapture::new(&weir_config::LoggedHeaders::default(), []).is_none());
    }
}
