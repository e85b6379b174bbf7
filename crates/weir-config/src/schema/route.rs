//! `[[routes]]`: matches, actions (proxy, respond, redirect, static) and route options
//! (compression, rewrite).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::defaults;
use crate::units::ByteSize;

/// One route: a match and exactly one action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Name shown in logs; default `route-N` (N its position, from 0).
    #[serde(default)]
    pub name: Option<String>,
    /// Listeners this route serves; default: every listener.
    #[serde(default)]
    pub listeners: Option<Vec<String>>,
    /// Breaks precedence ties: a higher priority is tried first (default 0).
    #[serde(default)]
    pub priority: i32,
    /// Policies (by name, from `[[policies]]`) applied in this order before the action.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// Largest request body on this route (overrides `server.max_request_body_size`; `0` =
    /// no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_body_size: Option<ByteSize>,
    /// Rewrites the path before a `proxy` action forwards the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Rewrite>,
    /// Compress responses on the fly (gzip, brotli, zstd) by the client's `Accept-Encoding`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<Compress>,
    /// The `[[caches]]` entry that stores this route's responses (`proxy` routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    /// What a request must look like; an empty match takes everything.
    #[serde(default, rename = "match")]
    pub matches: RouteMatch,
    /// Forward to an upstream.
    #[serde(default)]
    pub proxy: Option<ProxyAction>,
    /// Answer with a fixed response.
    #[serde(default)]
    pub respond: Option<RespondAction>,
    /// Answer with a redirect.
    #[serde(default)]
    pub redirect: Option<RedirectAction>,
    /// Serve files from a directory.
    #[serde(default, rename = "static")]
    pub static_files: Option<StaticAction>,
    /// Copy a share of this route's requests to another upstream (`proxy` routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<super::Mirror>,
}

/// On-the-fly response compression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compress {
    /// Codings offered, in Weir's order of preference when the client likes several equally:
    /// `zstd`, `br`, `gzip`.
    #[serde(default = "defaults::compress_algorithms")]
    pub algorithms: Vec<String>,
    /// Responses declaring a smaller `Content-Length` are sent as they are.
    #[serde(default = "defaults::compress_min_size")]
    pub min_size: ByteSize,
    /// Media types compressed: exact (`application/json`) or a whole type (`text/*`).
    #[serde(default = "defaults::compress_types")]
    pub content_types: Vec<String>,
    /// `fastest`, `default` or `best`.
    #[serde(default)]
    pub level: CompressLevel,
}

/// How hard to compress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompressLevel {
    /// Least CPU.
    Fastest,
    /// Fast enough for on-the-fly use: gzip 6, brotli 4, zstd 3.
    #[default]
    Default,
    /// Smallest output, most CPU.
    Best,
}

/// A path rewrite: `strip_prefix`, then `regex` → `replace`, then `add_prefix`. The query
/// string is kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    /// Removed from the start of the path (a path equal to it becomes `/`).
    #[serde(default)]
    pub strip_prefix: Option<String>,
    /// Put before the path.
    #[serde(default)]
    pub add_prefix: Option<String>,
    /// A regular expression; the first match is replaced by `replace` (`$1`, `${name}`
    /// refer to groups).
    #[serde(default)]
    pub regex: Option<String>,
    /// The replacement of `regex`.
    #[serde(default)]
    pub replace: Option<String>,
}

/// Conditions a request must meet, all of them, for the route to match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    /// Host names, exact (`example.com`) or wildcard (`*.example.com`); any one may match.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Exact path.
    #[serde(default)]
    pub path: Option<String>,
    /// Path prefix.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Path regular expression (Rust `regex` syntax, unanchored unless you anchor it).
    #[serde(default)]
    pub path_regex: Option<String>,
    /// Methods; any one may match.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Header conditions; all must hold.
    #[serde(default)]
    pub headers: Vec<Predicate>,
    /// Query-parameter conditions; all must hold.
    #[serde(default)]
    pub query: Vec<Predicate>,
}

/// A condition on a named header or query parameter: equal to `value`, matching `regex`,
/// or (with neither) simply present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Predicate {
    /// Header or parameter name (header names are case-insensitive).
    pub name: String,
    /// Exact value.
    #[serde(default)]
    pub value: Option<String>,
    /// Regular expression the value must match.
    #[serde(default)]
    pub regex: Option<String>,
}

/// `proxy` action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyAction {
    /// Name of the upstream (or `split` between several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Several upstreams (versions) sharing the route by weight, instead of `upstream`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<super::SplitTarget>,
    /// `split` only: what keeps a client on the version it first got — `"cookie:NAME"`
    /// (Weir sets it when absent), `"header:NAME"`, `"query:NAME"` or `"client_ip"`. Absent:
    /// each request is drawn by weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<super::HashKey>,
    /// `split` only: a header or cookie (`"header:x-version"`, `"cookie:version"`) whose value,
    /// when it names one of the split's upstreams, sends the request there before the split
    /// applies (blue/green previews, testers).
    #[serde(default, rename = "override", skip_serializing_if = "Option::is_none")]
    pub pin: Option<super::OverrideFrom>,
    /// `split` only: a progressive canary plan that drives the split's weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<super::Canary>,
    /// Allow retries of non-idempotent requests (POST, PATCH …) on this route, when the body
    /// is small enough to replay (`retry.max_body`). Off by default: a retried POST may act
    /// twice.
    #[serde(default)]
    pub retry_non_idempotent: bool,
}

impl ProxyAction {
    /// Every upstream the route sends requests to: `upstream`, or each of the split's.
    pub fn upstreams(&self) -> impl Iterator<Item = &str> {
        self.upstream
            .as_deref()
            .into_iter()
            .chain(self.split.iter().map(|t| t.upstream.as_str()))
    }
}

/// `respond` action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RespondAction {
    /// Status code.
    #[serde(default = "defaults::respond_status")]
    pub status: u16,
    /// Response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Response body.
    #[serde(default)]
    pub body: String,
}

/// `redirect` action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectAction {
    /// 301, 302, 303, 307 or 308.
    #[serde(default = "defaults::redirect_status")]
    pub status: u16,
    /// Target; `{host}`, `{path}` and `{request_uri}` are replaced from the request.
    pub location: String,
}

/// `static` action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticAction {
    /// Directory served; relative paths are relative to the working directory.
    pub root: PathBuf,
    /// File served for a directory.
    #[serde(default = "defaults::index")]
    pub index: String,
    /// Removed from the request path before it is looked up under `root`.
    #[serde(default)]
    pub strip_prefix: Option<String>,
    /// Served (200) for paths that match no file: a single-page app's `index.html`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// Serve `FILE.br`, `FILE.zst` or `FILE.gz` beside `FILE` when the client accepts the coding.
    #[serde(default = "defaults::yes")]
    pub precompressed: bool,
    /// Symbolic links: `inside_root` (the default: followed while they stay under `root`),
    /// `never` (a path through any link is 404) or `always` (followed anywhere).
    #[serde(default)]
    pub symlinks: Symlinks,
}

/// How a `static` route treats symbolic links.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Symlinks {
    /// Followed while the target stays under the root.
    #[default]
    InsideRoot,
    /// Never followed.
    Never,
    /// Followed anywhere (the operator vouches for every link).
    Always,
}
