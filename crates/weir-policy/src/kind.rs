//! What a policy kind is ([`PolicyKind`]), and the enum of compiled kinds, generated from
//! `weir-config`'s one table of kinds ([`weir_config::policy_kinds`]): adding a kind is a
//! line in that table, its schema type and checks, and a module here that implements
//! [`PolicyKind`] and [`Compiles`]. Nothing else matches on kinds.

use std::sync::Arc;

use http::request::Parts;
use weir_core::{RequestBody, RequestCtx};

use crate::{CompileError, Early, Events, Hooks, Policy, Shared};

/// What a kind's request phase may read and change.
pub(crate) struct Request<'a> {
    pub(crate) ctx: &'a mut RequestCtx,
    pub(crate) parts: &'a mut Parts,
    pub(crate) body: &'a mut RequestBody,
    /// What the response phase owes the kind.
    pub(crate) hooks: &'a mut Hooks,
    /// The kind's own event counters (declared in [`PolicyKind::EVENTS`]).
    pub(crate) events: &'a Events,
}

/// One kind of policy, compiled from its schema type.
pub(crate) trait PolicyKind: Sized {
    /// Its schema type (a `[[policies]]` key's value).
    type Config;
    /// Events it counts beside allowed/denied (`weir_policy_events_total`).
    const EVENTS: &'static [&'static str] = &[];
    /// Compiles a validated `cfg` for the policy named `name`.
    fn build(
        name: &str,
        cfg: &Self::Config,
        config: &weir_config::Config,
        shared: &Arc<Shared>,
    ) -> Result<Self, CompileError>;
    /// Starts background work once the runtime is live (a JWKS fetch); most kinds have none.
    fn start(&self, _policy: Arc<Policy>) {}
    /// The request phase: `Ok` lets the request go on, `Err` answers it now.
    async fn on_request(&self, r: Request<'_>) -> Result<(), Early>;
    /// What it does, for `weir explain` and the admin API.
    fn summary(&self) -> String;
}

/// The compiled kind of a schema type.
pub(crate) trait Compiles {
    /// The compiled kind.
    type Kind: PolicyKind<Config = Self>;
}

macro_rules! kind_enum {
    ($($key:ident: $ty:ident => $doc:literal,)*) => {
        /// A compiled policy's kind: one variant per line of the kinds table.
        #[allow(non_camel_case_types)]
        #[derive(Debug)]
        pub(crate) enum Kind {
            $($key(Box<<weir_config::$ty as Compiles>::Kind>),)*
        }

        impl Kind {
            /// Compiles the one kind `cfg` sets, with the names of its events.
            pub(crate) fn compile(
                cfg: &weir_config::Policy,
                config: &weir_config::Config,
                shared: &Arc<Shared>,
            ) -> Result<(Self, &'static [&'static str]), CompileError> {
                $(
                    if let Some(c) = &cfg.$key {
                        type K = <weir_config::$ty as Compiles>::Kind;
                        let kind = K::build(&cfg.name, c, config, shared)?;
                        return Ok((Self::$key(Box::new(kind)), K::EVENTS));
                    }
                )*
                Err(CompileError::new(&cfg.name, "sets no kind"))
            }

            pub(crate) fn start(&self, policy: Arc<Policy>) {
                match self {
                    $(Self::$key(k) => k.start(policy),)*
                }
            }

            pub(crate) async fn on_request(&self, r: Request<'_>) -> Result<(), Early> {
                match self {
                    $(Self::$key(k) => k.on_request(r).await,)*
                }
            }

            pub(crate) fn summary(&self) -> String {
                match self {
                    $(Self::$key(k) => k.summary(),)*
                }
            }
        }
    };
}

weir_config::policy_kinds!(kind_enum);
