//! `/metrics`: requests by route, method and status class; duration histograms; bytes;
//! requests in flight; upstream try durations; open connections by protocol — and the whole
//! exposition accepted by `promtool check metrics`.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::*;

#[tokio::test]
async fn request_metrics_are_counted_and_the_exposition_is_valid() {
    let o = echo_origin().await;
    let toml = config(&[o.addr], "admin = { bind = \"127.0.0.1:0\" }").replace(
        "[[routes]]\nname = \"to-up\"",
        "[[routes]]\nname = \"to-up\"\nmatch = { path_prefix = \"/api/\" }",
    );
    let gw = gateway(&toml).await;
    let c = client();
    for _ in 0..3 {
        let r = c.get(gw.url("/api/x")).send().await.expect("request");
        assert_eq!(r.status(), 200);
        r.bytes().await.expect("body");
    }
    let r = c
        .post(gw.url("/nowhere"))
        .body("abc")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    r.bytes().await.expect("body");
    // The record is written when the response body ends, just after the client has it.
    let mut m = String::new();
    for _ in 0..50 {
        m = metrics(&gw).await;
        if m.contains("weir_requests_total{route=\"\",method=\"POST\",status_class=\"4xx\"} 1") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for line in [
        "weir_requests_total{route=\"to-up\",method=\"GET\",status_class=\"2xx\"} 3",
        "weir_requests_total{route=\"\",method=\"POST\",status_class=\"4xx\"} 1",
        "weir_request_duration_seconds_count{route=\"to-up\"} 3",
        "weir_requests_in_flight 0",
        "weir_access_log_dropped_total 0",
        "weir_access_log_write_errors_total 0",
        // In-process the binary never set its commit: the labels say so.
        concat!(
            "weir_build_info{version=\"",
            env!("CARGO_PKG_VERSION"),
            "\",commit=\"unknown\",rustc=\"unknown\"} 1"
        ),
        "# TYPE process_cpu_seconds_total counter",
        "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_open_fds gauge",
        "# TYPE process_start_time_seconds gauge",
        "# TYPE weir_upstream_attempt_duration_seconds histogram",
    ] {
        assert!(m.contains(line), "missing `{line}` in\n{m}");
    }
    assert_eq!(
        metric_value(
            &m,
            &format!(
                "weir_upstream_attempt_duration_seconds_count{{upstream=\"up\",endpoint=\"{}\"}}",
                o.addr
            )
        ),
        Some(3.0)
    );
    assert!(
        metric_value(
            &m,
            "weir_connections_open{listener=\"main\",protocol=\"http1\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{m}"
    );
    assert!(
        metric_value(&m, "weir_response_bytes_total{route=\"to-up\"}").is_some_and(|n| n > 300.0),
        "{m}"
    );
    // No raw paths as labels.
    assert!(!m.contains("/api/x") && !m.contains("/nowhere"));

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is required (scripts/test installs Debian's prometheus package)");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(m.as_bytes())
        .expect("write");
    let out = promtool.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool refused the exposition:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
