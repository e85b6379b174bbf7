//! What a phase decided about a request, as enums (not strings other code matches on): the
//! forward proxy's decision, the idempotency policy's and the cache's outcome. Each has the
//! one spelling the access log, metrics and traces use ([`ForwardDecision::as_str`] …).

macro_rules! outcome {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            /// Its spelling in the access log, metrics and traces.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }
        }
    };
}

outcome! {
    /// A forward proxy's decision about a request.
    ForwardDecision {
        /// Its policy let it through.
        Allowed = "allowed",
        /// Its policy refused it.
        Denied = "denied",
    }
}

outcome! {
    /// What an idempotency policy did with a request.
    IdempotencyOutcome {
        /// Its response is being stored under its key.
        Stored = "stored",
        /// Answered with the response stored under its key.
        Replayed = "replayed",
        /// A request with the same key is in flight (409).
        Conflict = "conflict",
        /// The key was used for a different request (422).
        Mismatch = "mismatch",
        /// The key is required and absent (400).
        Missing = "missing",
        /// Passed through: the store failed and the policy lets requests through.
        Bypass = "bypass",
    }
}

outcome! {
    /// What a route's cache did with a request.
    CacheOutcome {
        /// Answered from the store.
        Hit = "hit",
        /// Not stored (or not usable): forwarded, and perhaps stored.
        Miss = "miss",
        /// Answered stale (while revalidating, or because the origin failed).
        Stale = "stale",
        /// A stored response was revalidated (304) and served.
        Revalidated = "revalidated",
        /// Revalidation brought a new response.
        Refetched = "refetched",
        /// The cache did not apply (method, `no-store` request …).
        Bypass = "bypass",
        /// A `PURGE` request answered by the cache.
        Purge = "purge",
    }
}
