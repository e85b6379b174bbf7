//! DNS discovery against a DNS server on loopback: A records re-resolved on their TTL within
//! the clamps, SRV priorities and weights, NXDOMAIN and timeouts keeping the last good set,
//! and the churn drill over SRV.

use std::time::Duration;

use weir_testkit::dns::{Answer, DnsServer, Rec};

use super::*;

fn dns_config(dns: &DnsServer, provider: &str, upstream: &str) -> String {
    provider_config(
        &format!(
            "dns = {{ {provider}, resolver = \"{}\", timeout = \"300ms\" }}",
            dns.addr
        ),
        upstream,
    )
}

const LOCAL: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

#[tokio::test]
async fn a_records_are_followed_on_their_ttl_within_the_clamps() {
    // Two origins on the same port, on 127.0.0.1 and 127.0.0.2.
    let first = numbered_origins(1).await;
    let port = first[0].addr.port();
    let second = weir_testkit::origin_at(
        ([127, 0, 0, 2], port).into(),
        |_req: Request<Incoming>| async { Response::new(full("1")) },
    )
    .await;
    let dns = DnsServer::start().await;
    // A long TTL: only max_ttl brings the next lookup.
    dns.set("api.test", Answer::Records(vec![Rec::Ip(LOCAL)], 3600));
    let gw = gateway(&dns_config(
        &dns,
        &format!("name = \"api.test:{port}\", min_ttl = \"400ms\", max_ttl = \"1s\""),
        "",
    ))
    .await;
    settled(&gw, &BTreeSet::from([format!("127.0.0.1:{port}")])).await;
    assert_eq!(body_of(&gw, "/").await, "0");

    dns.set(
        "api.test",
        Answer::Records(vec![Rec::Ip([127, 0, 0, 2].into())], 0),
    );
    settled(&gw, &BTreeSet::from([format!("127.0.0.2:{port}")])).await;
    let bodies = load(&gw.url("/"), 200, 4).await;
    assert!(
        bodies.iter().all(|b| b == "1"),
        "traffic moved to the new address: {bodies:?}"
    );
    // TTL 0 now: looked up again, but never sooner than min_ttl after the last time.
    wait_until("three more lookups", || async {
        (dns.asked("api.test", "A").len() >= 5).then_some(())
    })
    .await;
    let asked = dns.asked("api.test", "A");
    for pair in asked.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(390),
            "lookups {gap:?} apart, under min_ttl: {asked:?}"
        );
    }
    drop(second);
}

#[tokio::test]
async fn srv_priorities_fail_over_and_weights_hold_within_two_percent() {
    let origins = numbered_origins(3).await;
    let dns = DnsServer::start().await;
    for i in 0..3 {
        dns.set(
            &format!("o{i}.test"),
            Answer::Records(vec![Rec::Ip(LOCAL)], 60),
        );
    }
    let srv = |prio: u16, weight: u16, i: usize| {
        Rec::Srv(prio, weight, origins[i].addr.port(), format!("o{i}.test"))
    };
    dns.set(
        "_http._tcp.api.test",
        Answer::Records(vec![srv(0, 1, 0), srv(0, 3, 1), srv(1, 5, 2)], 60),
    );
    let gw = gateway(&dns_config(
        &dns,
        "srv = \"_http._tcp.api.test\"",
        "health.active = { type = \"tcp\", interval = \"50ms\", jitter = \"0s\", unhealthy_threshold = 1, healthy_threshold = 1 }",
    ))
    .await;
    let all: BTreeSet<String> = origins.iter().map(|o| o.addr.to_string()).collect();
    settled(&gw, &all).await;
    wait_until("the SRV endpoints to pass their first check", || async {
        let s = &gw.server.as_ref().expect("server").upstream_stats()[0];
        s.endpoints.iter().all(|e| !e.awaiting_check).then_some(())
    })
    .await;

    let bodies = load(&gw.url("/w"), 10_000, 16).await;
    let counts = tally(&bodies, 3);
    assert_eq!(counts.iter().sum::<usize>(), 10_000, "{counts:?}");
    assert_eq!(
        counts[2], 0,
        "priority 1 takes nothing while priority 0 is up: {counts:?}"
    );
    for (got, share) in counts.iter().zip([0.25, 0.75]) {
        assert!((*got as f64 / 10_000.0 - share).abs() < 0.02, "{counts:?}");
    }

    // Priority 0 goes down: priority 1 takes over.
    origins[0].kill();
    origins[1].kill();
    wait_until("the priority-1 endpoint to take the traffic", || async {
        let s = &gw.server.as_ref().expect("server").upstream_stats()[0];
        s.endpoints
            .iter()
            .all(|e| e.in_service == (e.address.to_string() == origins[2].addr.to_string()))
            .then_some(())
    })
    .await;
    let bodies = load(&gw.url("/w"), 200, 4).await;
    assert!(bodies.iter().all(|b| b == "2"), "{bodies:?}");
}

#[tokio::test]
async fn nxdomain_and_timeouts_keep_the_last_good_set() {
    let origins = numbered_origins(1).await;
    let port = origins[0].addr.port();
    let dns = DnsServer::start().await;
    dns.set("api.test", Answer::Records(vec![Rec::Ip(LOCAL)], 0));
    let gw = gateway(&dns_config(
        &dns,
        &format!("name = \"api.test:{port}\", min_ttl = \"50ms\""),
        "",
    ))
    .await;
    let one = BTreeSet::from([origins[0].addr.to_string()]);
    settled(&gw, &one).await;

    dns.set("api.test", Answer::NxDomain);
    wait_for_metric(&gw, "weir_upstream_discovery_failures_total{upstream=\"up\",provider=\"dns\",reason=\"nxdomain\"}", 2.0).await;
    assert_eq!(set_now(&gw), one);
    dns.set("api.test", Answer::Silent);
    wait_for_metric(&gw, "weir_upstream_discovery_failures_total{upstream=\"up\",provider=\"dns\",reason=\"timeout\"}", 1.0).await;
    assert_eq!(set_now(&gw), one);
    let bodies = load(&gw.url("/"), 100, 4).await;
    assert!(bodies.iter().all(|b| b == "0"), "{bodies:?}");
    let stats = gw.server.as_ref().expect("server").upstream_stats();
    let d = stats[0].discovery.as_ref().expect("discovery stats");
    assert_eq!((d.provider, d.endpoints), ("dns", 1));
    assert!(d.last_error.is_some());
}

#[tokio::test]
async fn churn_drill_through_srv_records() {
    let origins = drill_origins().await;
    let dns = DnsServer::start().await;
    for i in 0..origins.len() {
        dns.set(
            &format!("o{i}.test"),
            Answer::Records(vec![Rec::Ip(LOCAL)], 60),
        );
    }
    dns.set("_http._tcp.api.test", Answer::Records(Vec::new(), 0));
    let gw = gateway(&dns_config(
        &dns,
        "srv = \"_http._tcp.api.test\", min_ttl = \"20ms\"",
        "",
    ))
    .await;
    let ports: Vec<u16> = origins.iter().map(|o| o.addr.port()).collect();
    churn_drill(
        &gw,
        &origins,
        |i| format!("127.0.0.1:{}", ports[i]),
        |set: Vec<usize>| {
            let records = set
                .iter()
                .map(|&i| Rec::Srv(0, 1, ports[i], format!("o{i}.test")))
                .collect();
            dns.set("_http._tcp.api.test", Answer::Records(records, 0));
            async {}
        },
    )
    .await;
}
