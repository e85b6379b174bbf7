//! Retry backoff on tokio's paused clock: connect failures to a closed port are retried with
//! jittered, exponentially growing waits, and the total wait stays within the windows.

use std::sync::Arc;
use std::time::Duration;

use weir_core::{BodyStats, ErrorKind, RequestBody};
use weir_upstream::{CallInfo, CallOpts, Upstream};

async fn closed_port() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    l.local_addr().expect("addr")
}

#[tokio::test(start_paused = true)]
async fn connect_failures_back_off_exponentially_with_jitter() {
    let dead = closed_port().await;
    let toml = format!(
        r#"
[[listeners]]
name = "m"
bind = "127.0.0.1:0"
[[upstreams]]
name = "u"
endpoints = ["{dead}"]
timeouts = {{ connect = "30s" }}
health.passive = {{ consecutive_failures = 0 }}
retry = {{ attempts = 3, backoff = {{ base = "100ms", max = "1s" }} }}
"#
    );
    let config = weir_config::parse(&toml, "t.toml").expect("config");
    let upstream = Arc::new(Upstream::new(&config.upstreams[0]).expect("upstream"));
    let stats = Arc::new(BodyStats::default());
    let (parts, ()) = http::Request::get("/x")
        .body(())
        .expect("request")
        .into_parts();
    let mut info = CallInfo::default();
    let start = tokio::time::Instant::now();
    let result = upstream
        .call(
            parts,
            RequestBody::buffered(bytes::Bytes::new(), stats.clone()),
            CallOpts {
                client_ip: [127, 0, 0, 1].into(),
                retry_non_idempotent: false,
                body_stats: stats,
                addrs: None,
                interim: None,
                added: &weir_core::added::NO_FIELDS,
            },
            &mut info,
        )
        .await;
    let waited = start.elapsed();
    assert_eq!(
        result.err().map(|e| e.kind),
        Some(ErrorKind::UpstreamConnect)
    );
    assert_eq!(info.tries, 4);
    // Full jitter over windows of 100, 200 and 400 ms: at most 700 ms in all; a connect
    // timeout (30 s) would show here if one had fired.
    assert!(waited <= Duration::from_millis(700), "{waited:?}");
    assert_eq!(upstream.stats().retries, 3);
}
