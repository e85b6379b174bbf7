//! etcd discovery against a real `etcd`: registration, lease expiry, a watch resumed after
//! etcd restarts (no change lost), authentication, TLS, and the churn drill.

use weir_testkit::etcd::EtcdServer;

use super::*;

const PREFIX: &str = "/services/api/";

fn etcd_config(etcd: &EtcdServer) -> String {
    provider_config(
        &format!(
            "etcd = {{ endpoints = [\"{}\"], prefix = \"{PREFIX}\", timeout = \"1s\" }}",
            etcd.url()
        ),
        "",
    )
}

fn value(addr: SocketAddr, weight: u32) -> String {
    serde_json::json!({"address": addr.to_string(), "weight": weight, "metadata": {"zone": "a"}})
        .to_string()
}

#[tokio::test]
async fn registration_lease_expiry_and_a_resumed_watch() {
    let origins = numbered_origins(3).await;
    let mut etcd = EtcdServer::start().await;
    etcd.put(&format!("{PREFIX}a"), &value(origins[0].addr, 1), None)
        .await;
    // Not under the prefix: ignored.
    etcd.put("/services/other/x", &value(origins[2].addr, 1), None)
        .await;
    let gw = gateway(&etcd_config(&etcd)).await;
    let a = origins[0].addr.to_string();
    let b = origins[1].addr.to_string();
    settled(&gw, &BTreeSet::from([a.clone()])).await;

    // Registration with a lease; the lease runs out and the endpoint goes.
    let lease = etcd.grant(2).await;
    etcd.put(
        &format!("{PREFIX}b"),
        &value(origins[1].addr, 2),
        Some(lease),
    )
    .await;
    settled(&gw, &BTreeSet::from([a.clone(), b.clone()])).await;
    let stats = &gw.server.as_ref().expect("server").upstream_stats()[0];
    assert_eq!(
        stats
            .endpoints
            .iter()
            .find(|e| *e.address == *b)
            .map(|e| e.weight),
        Some(2)
    );
    settled(&gw, &BTreeSet::from([a.clone()])).await;

    // etcd restarts; a change made right after it is back is not lost.
    etcd.stop();
    wait_for_metric(&gw, "weir_upstream_discovery_failures_total{upstream=\"up\",provider=\"etcd\",reason=\"unreachable\"}", 1.0).await;
    assert_eq!(
        set_now(&gw),
        BTreeSet::from([a.clone()]),
        "etcd down: the last good set stays"
    );
    etcd.resume().await;
    etcd.put(&format!("{PREFIX}b"), &value(origins[1].addr, 1), None)
        .await;
    etcd.delete(&format!("{PREFIX}a")).await;
    settled(&gw, &BTreeSet::from([b.clone()])).await;
    let bodies = load(&gw.url("/"), 100, 4).await;
    assert!(bodies.iter().all(|x| x == "1"), "{bodies:?}");
    let m = metrics(&gw).await;
    assert!(
        metric_value(
            &m,
            "weir_upstream_discovery_refreshes_total{upstream=\"up\",provider=\"etcd\"}"
        )
        .is_some_and(|v| v >= 3.0),
        "{m}"
    );
}

#[tokio::test]
async fn etcd_with_authentication_on_needs_the_credentials() {
    let origins = numbered_origins(1).await;
    let mut etcd = EtcdServer::start().await;
    etcd.put(&format!("{PREFIX}a"), &value(origins[0].addr, 1), None)
        .await;
    etcd.enable_auth("etcd-root-password").await;
    let with = |creds: &str| {
        provider_config(
            &format!(
                "etcd = {{ endpoints = [\"{}\"], prefix = \"{PREFIX}\", timeout = \"1s\"{creds} }}",
                etcd.url()
            ),
            "",
        )
    };
    // Without: refused, counted, nothing applied.
    let anon = gateway(&with("")).await;
    wait_until("the refusal to be counted", || async {
        let s = anon.server.as_ref().expect("server").upstream_stats();
        let d = s[0].discovery.clone().expect("discovery");
        (d.failures.values().sum::<u64>() > 0).then_some(())
    })
    .await;
    assert!(set_now(&anon).is_empty());
    // With them (the password as a secret from the environment).
    std::env::set_var("WEIR_TEST_ETCD_PASSWORD", "etcd-root-password");
    let gw = gateway(&with(
        ", username = \"root\", password = \"${WEIR_TEST_ETCD_PASSWORD}\"",
    ))
    .await;
    settled(&gw, &BTreeSet::from([origins[0].addr.to_string()])).await;
    etcd.put(&format!("{PREFIX}a"), &value(origins[0].addr, 4), None)
        .await;
    wait_until("the watch to see the reweight", || async {
        let s = gw.server.as_ref().expect("server").upstream_stats();
        (s[0].endpoints.first().map(|e| e.weight) == Some(4)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn etcd_over_tls_is_verified_against_the_configured_ca() {
    let origins = numbered_origins(1).await;
    let pki = crate::tls::Pki::new();
    pki.server("etcd", &["127.0.0.1"]);
    let etcd = EtcdServer::start_with_tls(&pki.path("etcd.pem"), &pki.path("etcd.key")).await;
    etcd.put(&format!("{PREFIX}a"), &value(origins[0].addr, 1), None)
        .await;
    let url = etcd.tls_url().expect("tls url");
    let with_ca = |ca: &std::path::Path| {
        provider_config(
            &format!(
                "etcd = {{ endpoints = [\"{url}\"], prefix = \"{PREFIX}\", timeout = \"1s\", tls = {{ ca = \"{}\" }} }}",
                ca.display()
            ),
            "",
        )
    };
    // Trusting another CA: the handshake fails, the failure is counted, nothing is applied.
    let stranger = crate::tls::Pki::new();
    let refused = gateway(&with_ca(&stranger.path("ca.pem"))).await;
    wait_until("the failed handshake to be counted", || async {
        let s = refused.server.as_ref().expect("server").upstream_stats();
        let d = s[0].discovery.clone().expect("discovery");
        (d.failures.values().sum::<u64>() > 0).then_some(())
    })
    .await;
    assert!(set_now(&refused).is_empty());
    // Trusting etcd's CA: read, then watched over TLS.
    let gw = gateway(&with_ca(&pki.path("ca.pem"))).await;
    settled(&gw, &BTreeSet::from([origins[0].addr.to_string()])).await;
    etcd.put(&format!("{PREFIX}a"), &value(origins[0].addr, 3), None)
        .await;
    wait_until("the watch over TLS to see the reweight", || async {
        let s = gw.server.as_ref().expect("server").upstream_stats();
        (s[0].endpoints.first().map(|e| e.weight) == Some(3)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn churn_drill_through_etcd() {
    let origins = drill_origins().await;
    let etcd = EtcdServer::start().await;
    let gw = gateway(&etcd_config(&etcd)).await;
    let addrs: Vec<SocketAddr> = origins.iter().map(|o| o.addr).collect();
    let etcd = &etcd;
    let addrs = &addrs;
    let mut registered: BTreeSet<usize> = BTreeSet::new();
    let registered = std::cell::RefCell::new(&mut registered);
    churn_drill(
        &gw,
        &origins,
        |i| addrs[i].to_string(),
        |set: Vec<usize>| {
            let want: BTreeSet<usize> = set.into_iter().collect();
            let gone: Vec<usize> = registered.borrow().difference(&want).copied().collect();
            let new: Vec<usize> = want.difference(&registered.borrow()).copied().collect();
            **registered.borrow_mut() = want;
            async move {
                for i in new {
                    etcd.put(&format!("{PREFIX}{i}"), &value(addrs[i], 1), None)
                        .await;
                }
                for i in gone {
                    etcd.delete(&format!("{PREFIX}{i}")).await;
                }
            }
        },
    )
    .await;
}
