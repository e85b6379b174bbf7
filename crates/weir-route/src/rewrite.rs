//! Path rewrites of `proxy` routes: `strip_prefix`, then `regex` → `replace` (first match),
//! then `add_prefix`; the query string is kept. The result always starts with `/`.

use regex::Regex;

/// A compiled rewrite.
#[derive(Debug, Clone)]
pub struct Rewrite {
    strip_prefix: Option<String>,
    add_prefix: Option<String>,
    regex: Option<(Regex, String)>,
}

impl Rewrite {
    /// Compiles a validated rewrite (an invalid regex is refused).
    pub fn compile(cfg: &weir_config::Rewrite) -> Result<Self, regex::Error> {
        let regex = match (&cfg.regex, &cfg.replace) {
            (Some(r), Some(with)) => Some((Regex::new(r)?, with.clone())),
            _ => None,
        };
        Ok(Self {
            strip_prefix: cfg.strip_prefix.clone(),
            add_prefix: cfg
                .add_prefix
                .clone()
                .map(|p| p.trim_end_matches('/').to_owned()),
            regex,
        })
    }

    /// The rewritten path (without query).
    pub fn path(&self, path: &str) -> String {
        let mut p = match &self.strip_prefix {
            Some(prefix) => match path.strip_prefix(prefix.trim_end_matches('/')) {
                // Only at a segment boundary: `/api` strips `/api/x` and `/api`, not `/apix`.
                Some(rest) if rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/') => {
                    rest.to_owned()
                }
                _ => path.to_owned(),
            },
            None => path.to_owned(),
        };
        if let Some((re, with)) = &self.regex {
            p = re.replace(&p, with.as_str()).into_owned();
        }
        if !p.starts_with('/') {
            p.insert(0, '/');
        }
        if let Some(prefix) = &self.add_prefix {
            p = if p == "/" && !prefix.is_empty() {
                prefix.clone()
            } else {
                format!("{prefix}{p}")
            };
        }
        p
    }

    /// Applies the rewrite to a request URI, keeping scheme, authority and query.
    pub fn uri(&self, uri: &http::Uri) -> Option<http::Uri> {
        let path = self.path(uri.path());
        let pq = match uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let mut parts = uri.clone().into_parts();
        parts.path_and_query = Some(pq.parse().ok()?);
        http::Uri::from_parts(parts).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(strip: Option<&str>, add: Option<&str>, re: Option<(&str, &str)>) -> Rewrite {
        Rewrite::compile(&weir_config::Rewrite {
            strip_prefix: strip.map(Into::into),
            add_prefix: add.map(Into::into),
            regex: re.map(|r| r.0.into()),
            replace: re.map(|r| r.1.into()),
        })
        .expect("valid")
    }

    #[test]
    fn strip_add_and_replace() {
        let r = rw(Some("/api"), Some("/v2"), None);
        assert_eq!(r.path("/api/users"), "/v2/users");
        assert_eq!(r.path("/api"), "/v2");
        assert_eq!(r.path("/apix"), "/v2/apix");
        let r = rw(None, None, Some(("^/old/(.*)$", "/new/$1")));
        assert_eq!(r.path("/old/a/b"), "/new/a/b");
        assert_eq!(r.path("/other"), "/other");
        let u: http::Uri = "/api/x?q=1".parse().expect("uri");
        assert_eq!(
            rw(Some("/api/"), None, None)
                .uri(&u)
                .expect("uri")
                .to_string(),
            "/x?q=1"
        );
    }
}
