//! Matching one request against one route's conditions.

use http::{HeaderMap, HeaderName, Method};
use regex::Regex;

/// The parts of a request the router looks at. `host` is lowercase without port; `path` is
/// already normalized.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Method.
    pub method: &'a Method,
    /// Lowercase host without port.
    pub host: Option<&'a str>,
    /// Normalized path.
    pub path: &'a str,
    /// Raw query string, without `?`.
    pub query: Option<&'a str>,
    /// Request headers.
    pub headers: &'a HeaderMap,
}

#[derive(Debug)]
enum HostPattern {
    Exact(String),
    /// `*.example.com` stored as `.example.com`.
    Suffix(String),
}

#[derive(Debug)]
enum PathPattern {
    Any,
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

#[derive(Debug)]
enum ValueTest {
    Present,
    Equals(String),
    Matches(Regex),
}

impl ValueTest {
    fn test(&self, value: &str) -> bool {
        match self {
            ValueTest::Present => true,
            ValueTest::Equals(v) => v == value,
            ValueTest::Matches(re) => re.is_match(value),
        }
    }
}

/// A route's compiled conditions.
#[derive(Debug)]
pub struct Matcher {
    priority: i32,
    hosts: Vec<HostPattern>,
    path: PathPattern,
    methods: Vec<Method>,
    headers: Vec<(HeaderName, ValueTest)>,
    query: Vec<(String, ValueTest)>,
}

/// Sort key: larger is tried first.
pub type Precedence = (i32, u8, usize, u8, usize, usize);

impl Matcher {
    /// Compiles config conditions.
    pub fn compile(m: &weir_config::RouteMatch, priority: i32) -> Result<Self, regex::Error> {
        let hosts = m
            .hosts
            .iter()
            .map(|h| {
                let h = h.to_ascii_lowercase();
                match h.strip_prefix('*') {
                    Some(suffix) => HostPattern::Suffix(suffix.to_owned()),
                    None => HostPattern::Exact(h),
                }
            })
            .collect();
        let path = if let Some(p) = &m.path {
            PathPattern::Exact(p.clone())
        } else if let Some(p) = &m.path_prefix {
            PathPattern::Prefix(p.clone())
        } else if let Some(re) = &m.path_regex {
            PathPattern::Regex(Regex::new(re)?)
        } else {
            PathPattern::Any
        };
        let value_test = |p: &weir_config::Predicate| -> Result<ValueTest, regex::Error> {
            Ok(match (&p.value, &p.regex) {
                (Some(v), _) => ValueTest::Equals(v.clone()),
                (None, Some(re)) => ValueTest::Matches(Regex::new(re)?),
                (None, None) => ValueTest::Present,
            })
        };
        let mut headers = Vec::new();
        for p in &m.headers {
            // Validation already refused bad names; skip defensively rather than panic.
            if let Ok(name) = HeaderName::from_bytes(p.name.as_bytes()) {
                headers.push((name, value_test(p)?));
            }
        }
        let mut query = Vec::new();
        for p in &m.query {
            query.push((p.name.clone(), value_test(p)?));
        }
        let methods = m
            .methods
            .iter()
            .filter_map(|s| Method::from_bytes(s.to_ascii_uppercase().as_bytes()).ok())
            .collect();
        Ok(Self {
            priority,
            hosts,
            path,
            methods,
            headers,
            query,
        })
    }

    /// How specific this route is; see the crate docs for the rule.
    pub fn precedence(&self) -> Precedence {
        let (host_rank, host_len) = if self
            .hosts
            .iter()
            .any(|h| matches!(h, HostPattern::Exact(_)))
        {
            (2, 0)
        } else if self.hosts.is_empty() {
            (0, 0)
        } else {
            let longest = self
                .hosts
                .iter()
                .map(|h| match h {
                    HostPattern::Suffix(s) | HostPattern::Exact(s) => s.len(),
                })
                .max()
                .unwrap_or(0);
            (1, longest)
        };
        let (path_rank, path_len) = match &self.path {
            PathPattern::Exact(p) => (3, p.len()),
            PathPattern::Prefix(p) => (2, p.len()),
            PathPattern::Regex(_) => (1, 0),
            PathPattern::Any => (0, 0),
        };
        let conditions =
            usize::from(!self.methods.is_empty()) + self.headers.len() + self.query.len();
        (
            self.priority,
            host_rank,
            host_len,
            path_rank,
            path_len,
            conditions,
        )
    }

    /// True when the request meets every condition.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        self.first_failure(req).is_none()
    }

    /// The first condition the request does not meet, if any (no allocation: the hot path
    /// uses it through [`Matcher::matches`]).
    pub fn first_failure(&self, req: &RequestView<'_>) -> Option<Failure> {
        if !self.hosts.is_empty() {
            let Some(host) = req.host else {
                return Some(Failure::Host);
            };
            let ok = self.hosts.iter().any(|h| match h {
                HostPattern::Exact(e) => e == host,
                // `.example.com` matches `a.example.com` but not `example.com` itself.
                HostPattern::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
            });
            if !ok {
                return Some(Failure::Host);
            }
        }
        let path_ok = match &self.path {
            PathPattern::Any => true,
            PathPattern::Exact(p) => req.path == p,
            PathPattern::Prefix(p) => req.path.starts_with(p.as_str()),
            PathPattern::Regex(re) => re.is_match(req.path),
        };
        if !path_ok {
            return Some(Failure::Path);
        }
        if !self.methods.is_empty() && !self.methods.contains(req.method) {
            return Some(Failure::Method);
        }
        for (i, (name, test)) in self.headers.iter().enumerate() {
            let any = req
                .headers
                .get_all(name)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| test.test(v)));
            if !any {
                return Some(Failure::Header(i));
            }
        }
        for (i, (name, test)) in self.query.iter().enumerate() {
            let any = query_values(req.query, name).any(|v| test.test(&v));
            if !any {
                return Some(Failure::Query(i));
            }
        }
        None
    }

    /// The route's hosts as written in the config (`*.example.com` for suffixes).
    fn host_list(&self) -> Vec<String> {
        self.hosts
            .iter()
            .map(|h| match h {
                HostPattern::Exact(e) => e.clone(),
                HostPattern::Suffix(s) => format!("*{s}"),
            })
            .collect()
    }

    /// The conditions in words, e.g. `host api.example.com, path prefix "/v1/", method GET`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if !self.hosts.is_empty() {
            parts.push(format!("host {}", self.host_list().join(" | ")));
        }
        match &self.path {
            PathPattern::Any => {}
            PathPattern::Exact(p) => parts.push(format!("path {p:?}")),
            PathPattern::Prefix(p) => parts.push(format!("path prefix {p:?}")),
            PathPattern::Regex(re) => parts.push(format!("path ~ /{}/", re.as_str())),
        }
        if !self.methods.is_empty() {
            let m: Vec<&str> = self.methods.iter().map(Method::as_str).collect();
            parts.push(format!("method {}", m.join(" | ")));
        }
        for (n, _) in &self.headers {
            parts.push(format!("header {n}"));
        }
        for (n, _) in &self.query {
            parts.push(format!("query {n}"));
        }
        if self.priority != 0 {
            parts.push(format!("priority {}", self.priority));
        }
        if parts.is_empty() {
            "everything".to_owned()
        } else {
            parts.join(", ")
        }
    }

    /// Says in words why `failure` happened, naming what the route wanted.
    pub fn describe(&self, failure: Failure) -> String {
        let test = |t: &ValueTest| match t {
            ValueTest::Present => "present".to_owned(),
            ValueTest::Equals(v) => format!("= {v:?}"),
            ValueTest::Matches(re) => format!("~ /{}/", re.as_str()),
        };
        match failure {
            Failure::Host => format!("host is not one of {}", self.host_list().join(", ")),
            Failure::Path => match &self.path {
                PathPattern::Exact(p) => format!("path is not {p:?}"),
                PathPattern::Prefix(p) => format!("path does not start with {p:?}"),
                PathPattern::Regex(re) => format!("path does not match /{}/", re.as_str()),
                PathPattern::Any => "path".to_owned(),
            },
            Failure::Method => {
                let m: Vec<&str> = self.methods.iter().map(Method::as_str).collect();
                format!("method is not one of {}", m.join(", "))
            }
            Failure::Header(i) => self.headers.get(i).map_or_else(String::new, |(n, t)| {
                format!("header {n} is not {}", test(t))
            }),
            Failure::Query(i) => self.query.get(i).map_or_else(String::new, |(n, t)| {
                format!("query parameter {n} is not {}", test(t))
            }),
        }
    }
}

/// Which condition of a route a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// None of the route's hosts.
    Host,
    /// The path condition.
    Path,
    /// None of the route's methods.
    Method,
    /// The header condition at this position.
    Header(usize),
    /// The query condition at this position.
    Query(usize),
}

/// Decoded values of query parameter `name` (`+` is a space, as in HTML forms).
fn query_values<'a>(query: Option<&'a str>, name: &'a str) -> impl Iterator<Item = String> + 'a {
    query.unwrap_or("").split('&').filter_map(move |pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k) == name).then(|| decode(v))
    })
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}
