//! Credentials in request targets: the query parameters that carry a secret (the ones a
//! policy reads with `query:NAME`, and OAuth's `access_token`, RFC 6750 §2.3) are replaced by
//! `REDACTED` in the copy of the target that the access log, spans, `weir explain` and error
//! reports see. The request that travels keeps its target; policies remove what they consumed.

use http::Uri;

/// What a redacted value reads as.
pub const REDACTED: &str = "REDACTED";

/// Query parameters whose values are secrets.
#[derive(Debug, Clone, Default)]
pub struct QueryRedaction {
    names: Vec<String>,
}

impl QueryRedaction {
    /// Redacts `names` (exact parameter names, as policies match them) and `access_token`.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut all: Vec<String> = names.into_iter().map(str::to_owned).collect();
        all.push("access_token".to_owned());
        all.sort();
        all.dedup();
        Self { names: all }
    }

    /// `uri` with every secret parameter's value redacted, or `None` when it has none.
    pub fn apply(&self, uri: &Uri) -> Option<Uri> {
        let query = uri.query()?;
        let redacted = self.query(query)?;
        let mut parts = http::uri::Parts::from(uri.clone());
        let pq = format!("{}?{redacted}", uri.path());
        parts.path_and_query = Some(pq.parse().ok()?);
        Uri::from_parts(parts).ok()
    }

    /// `query` with every secret parameter's value redacted, or `None` when it has none.
    pub fn query(&self, query: &str) -> Option<String> {
        let secret = |pair: &str| {
            let name = pair.split_once('=').map_or(pair, |(k, _)| k);
            self.names.iter().any(|n| n == name || decoded_eq(name, n))
        };
        if !query.split('&').any(secret) {
            return None;
        }
        let out: Vec<String> = query
            .split('&')
            .map(|pair| {
                if secret(pair) {
                    let name = pair.split_once('=').map_or(pair, |(k, _)| k);
                    format!("{name}={REDACTED}")
                } else {
                    pair.to_owned()
                }
            })
            .collect();
        Some(out.join("&"))
    }
}

/// `raw` percent-decodes to `name` (so `ap%69_key` is redacted like `api_key`).
fn decoded_eq(raw: &str, name: &str) -> bool {
    if !raw.contains('%') {
        return false;
    }
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%')
            .then(|| b.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out == name.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_parameters_are_redacted_and_others_kept() {
        let r = QueryRedaction::new(["api_key", "token"]);
        let q = |s: &str| r.query(s);
        assert_eq!(q("a=1&b=2"), None);
        assert_eq!(
            q("a=1&api_key=s3cret&b=2").as_deref(),
            Some("a=1&api_key=REDACTED&b=2")
        );
        assert_eq!(q("token").as_deref(), Some("token=REDACTED"));
        assert_eq!(
            q("access_token=x&token=y").as_deref(),
            Some("access_token=REDACTED&token=REDACTED")
        );
        assert_eq!(q("ap%69_key=s").as_deref(), Some("ap%69_key=REDACTED"));
        assert_eq!(q("api_keyx=1"), None);
        let uri: Uri = "/p?api_key=s3cret&x=1".parse().expect("uri");
        assert_eq!(
            r.apply(&uri).expect("redacted").to_string(),
            "/p?api_key=REDACTED&x=1"
        );
        assert!(r.apply(&"/p".parse().expect("uri")).is_none());
    }
}
