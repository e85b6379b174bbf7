//! Deployments through real sockets: weighted splits with stickiness and overrides, canary
//! plans that advance or roll back on their own (alone and as a fleet sharing a real
//! `redis-server`), and mirrored traffic.

mod canary;
mod mirror;
mod split;

use std::net::SocketAddr;

use crate::common::*;

/// Two versions, `v1` answering `0` and `v2` answering `1`, and a route `app` with `proxy`.
pub(crate) fn versions_config(v1: SocketAddr, v2: SocketAddr, proxy: &str, top: &str) -> String {
    TestConfig::new()
        .admin()
        .top(top)
        .upstream(
            "v1",
            &[v1],
            "timeouts = { connect = \"1s\", response_header = \"5s\" }",
        )
        .upstream(
            "v2",
            &[v2],
            "timeouts = { connect = \"1s\", response_header = \"5s\" }",
        )
        .route("app", &format!("proxy = {{ {proxy} }}"))
        .build()
}

/// `GET /canaries` (or any admin JSON path).
pub(crate) async fn admin_json(gw: &Gateway, path: &str) -> serde_json::Value {
    reqwest::get(format!("http://{}{path}", gw.admin_addr()))
        .await
        .expect("admin")
        .json()
        .await
        .expect("json")
}
