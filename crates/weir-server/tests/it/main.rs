//! Integration tests: the gateway in-process on 127.0.0.1:0, real sockets, real clients.

mod common;

mod access_log;
mod admin;
mod api_policies;
mod auth;
mod balancing;
mod cache;
mod cache_conformance;
mod cache_purge;
mod compression;
mod dashboard;
mod deploy;
mod discovery;
mod errors;
mod fleet_purge;
mod forward;
mod grpc;
mod h2_abuse;
mod hostile;
mod limits;
mod metrics;
mod policies;
mod proxy;
mod proxy_protocol;
mod redis_policies;
mod reload;
mod routing;
mod shutdown;
mod smuggling;
mod static_files;
mod timeouts;
mod tls;
mod traces;
mod upstream_protocols;
mod websocket;
