//! The router: a listener's routes compiled once into a list ordered by precedence, so a
//! request is matched by trying routes in that order and taking the first that fits.
//!
//! Precedence, highest first (documented in `docs/config.md`):
//! 1. `priority` (higher first);
//! 2. host: an exact host, then wildcards (longer suffix first), then routes with no host;
//! 3. path: exact `path`, then `path_prefix` (longer first), then `path_regex`, then none;
//! 4. more method/header/query conditions first;
//! 5. order in the file.
//!
//! ```
//! # use weir_route::{Router, RequestView};
//! let config = weir_config::parse(r#"
//! [[listeners]]
//! name = "main"
//! bind = "127.0.0.1:8080"
//! [[routes]]
//! name = "all"
//! respond = { body = "fallback" }
//! [[routes]]
//! name = "api"
//! match = { path_prefix = "/api/" }
//! respond = { body = "api" }
//! "#, "t.toml").unwrap();
//! let router = Router::compile(&config.routes, "main", |_| None).unwrap();
//! let req = RequestView { method: &http::Method::GET, host: None, path: "/api/x", query: None, headers: &http::HeaderMap::new() };
//! assert_eq!(&*router.find(&req).unwrap().name, "api");
//! ```

mod action;
mod host;
mod matcher;
mod path;
mod rewrite;

use std::sync::Arc;

pub use action::{Action, RedirectSpec, RespondSpec, StaticSpec};
pub use host::normalize_host;
pub use matcher::{Failure, Matcher, RequestView};
pub use path::normalize_path;
pub use rewrite::Rewrite;

/// A route ready to serve.
#[derive(Debug)]
pub struct CompiledRoute {
    /// Route name (from config, or `route-N`).
    pub name: Arc<str>,
    /// Position in the config file.
    pub index: usize,
    /// What the request must look like.
    pub matcher: Matcher,
    /// What to do with it.
    pub action: Action,
}

/// Why routes could not be compiled (config validation normally catches all of these first).
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// A regex failed to compile.
    #[error("routes[{route}]: invalid regex: {source}")]
    Regex {
        /// Route position.
        route: usize,
        /// The regex error.
        source: regex::Error,
    },
    /// A route names an upstream that does not exist.
    #[error("routes[{route}]: unknown upstream `{upstream}`")]
    UnknownUpstream {
        /// Route position.
        route: usize,
        /// The upstream name.
        upstream: String,
    },
    /// A value could not be turned into HTTP (status, header).
    #[error("routes[{route}]: {message}")]
    Invalid {
        /// Route position.
        route: usize,
        /// What is wrong.
        message: String,
    },
}

/// The routes of one listener, in precedence order.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<CompiledRoute>,
}

impl Router {
    /// Compiles the routes that serve `listener`. `upstream_index` turns an upstream name into
    /// the runtime's index for it.
    pub fn compile(
        routes: &[weir_config::Route],
        listener: &str,
        upstream_index: impl Fn(&str) -> Option<usize>,
    ) -> Result<Self, RouteError> {
        let mut compiled = Vec::new();
        for (index, route) in routes.iter().enumerate() {
            let serves = route
                .listeners
                .as_ref()
                .is_none_or(|ls| ls.iter().any(|l| l == listener));
            if !serves {
                continue;
            }
            let name: Arc<str> = route
                .name
                .clone()
                .unwrap_or_else(|| format!("route-{index}"))
                .into();
            let matcher = Matcher::compile(&route.matches, route.priority).map_err(|source| {
                RouteError::Regex {
                    route: index,
                    source,
                }
            })?;
            let action = Action::compile(route, index, &upstream_index)?;
            compiled.push(CompiledRoute {
                name,
                index,
                matcher,
                action,
            });
        }
        compiled.sort_by(|a, b| {
            b.matcher
                .precedence()
                .cmp(&a.matcher.precedence())
                .then(a.index.cmp(&b.index))
        });
        Ok(Self { routes: compiled })
    }

    /// The first route, in precedence order, that matches the request.
    pub fn find(&self, req: &RequestView<'_>) -> Option<&CompiledRoute> {
        self.routes.iter().find(|r| r.matcher.matches(req))
    }

    /// Routes in precedence order.
    pub fn routes(&self) -> &[CompiledRoute] {
        &self.routes
    }
}
