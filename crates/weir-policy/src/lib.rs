//! Route policies (DESIGN §1: the request phase). So far: the rate-limiting algorithms and their
//! in-memory store ([`ratelimit`]); the policy chain, identity and the Redis store build on it.

pub mod ratelimit;
