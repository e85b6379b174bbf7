//! File discovery: the set follows a JSON or TOML file; a broken or missing file keeps the
//! last good set; an empty one empties the set only after the grace.

use super::*;

fn file_config(path: &std::path::Path, extra: &str) -> String {
    provider_config(
        &format!(
            "file = {{ path = \"{}\", interval = \"20ms\" }}{extra}",
            path.display()
        ),
        "",
    )
}

/// Replaces the file atomically, as consul-template does.
fn write_atomically(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[tokio::test]
async fn churn_drill_through_a_file() {
    let dir = TempDir::new("file-drill");
    let path = dir.0.join("endpoints.json");
    let origins = drill_origins().await;
    let addrs: Vec<String> = origins.iter().map(|o| o.addr.to_string()).collect();
    write_atomically(&path, "[]");
    let gw = gateway(&file_config(&path, "")).await;
    let names = addrs.clone();
    churn_drill(
        &gw,
        &origins,
        |i| names[i].clone(),
        |set: Vec<usize>| {
            let list: Vec<serde_json::Value> = set
                .iter()
                .map(|&i| serde_json::json!({"address": addrs[i], "weight": 1}))
                .collect();
            write_atomically(&path, &serde_json::Value::Array(list).to_string());
            async {}
        },
    )
    .await;
}

#[tokio::test]
async fn a_broken_file_keeps_the_last_good_set_and_an_empty_one_waits_for_the_grace() {
    let dir = TempDir::new("file-broken");
    let path = dir.0.join("endpoints.toml");
    let origins = numbered_origins(2).await;
    let a = origins[0].addr.to_string();
    let b = origins[1].addr.to_string();
    write_atomically(
        &path,
        &format!("endpoints = [\"{a}\", {{ address = \"{b}\", weight = 3 }}]"),
    );
    let gw = gateway(&file_config(&path, ", empty_grace = \"2s\"")).await;
    let both = BTreeSet::from([a.clone(), b.clone()]);
    settled(&gw, &both).await;
    let stats = &gw.server.as_ref().expect("server").upstream_stats()[0];
    assert_eq!(stats.endpoints[1].weight, 3);

    // Broken, then gone: counted, and the set stays.
    write_atomically(&path, "endpoints = [\"not an address\"]");
    wait_for_metric(&gw, "weir_upstream_discovery_failures_total{upstream=\"up\",provider=\"file\",reason=\"invalid\"}", 1.0).await;
    std::fs::remove_file(&path).expect("remove");
    wait_for_metric(&gw, "weir_upstream_discovery_failures_total{upstream=\"up\",provider=\"file\",reason=\"unreadable\"}", 1.0).await;
    assert_eq!(set_now(&gw), both);
    let bodies = load(&gw.url("/x"), 200, 4).await;
    assert!(bodies.iter().all(|b| !b.starts_with("ERR")), "{bodies:?}");

    // Empty: held for the grace, then applied.
    write_atomically(&path, "endpoints = []");
    wait_until("the empty answer to be seen", || async {
        let stats = gw.server.as_ref().expect("server").upstream_stats();
        stats[0]
            .discovery
            .as_ref()
            .and_then(|d| d.empty_since)
            .map(|_| ())
    })
    .await;
    assert_eq!(
        set_now(&gw),
        both,
        "an empty answer is held back for empty_grace"
    );
    settled(&gw, &BTreeSet::new()).await;
    assert_eq!(get_status(&gw, "/x").await, 503);
}
