//! Cost of one pick, per balancer, over 3, 30 and 300 endpoints: `Upstream::pick` as the
//! proxy calls it (loading the current view, then the algorithm).
//!
//! Run: `cargo bench -p weir-upstream --bench balancers`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use weir_upstream::Upstream;

fn upstream(balance: &str, n: usize) -> Upstream {
    let endpoints: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{{ address = \"10.0.{}.{}:80\", weight = {} }}",
                i / 250,
                i % 250 + 1,
                1 + i % 3
            )
        })
        .collect();
    let toml = format!(
        "[[listeners]]\nname = \"m\"\nbind = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"u\"\nendpoints = [{}]\n{balance}",
        endpoints.join(", ")
    );
    let config = weir_config::parse(&toml, "bench.toml").expect("config");
    Upstream::new(&config.upstreams[0]).expect("upstream")
}

fn picks(c: &mut Criterion) {
    let balancers = [
        ("round_robin", "balance = \"round_robin\""),
        ("least_conn", "balance = \"least_conn\""),
        ("p2c", "balance = \"p2c\""),
        ("ewma", "balance = \"ewma\""),
        ("random", "balance = \"random\""),
        ("ip_hash", "balance = \"ip_hash\""),
        ("ring", "balance = \"consistent_hash\"\nhash = \"ring\""),
        ("maglev", "balance = \"consistent_hash\"\nhash = \"maglev\""),
    ];
    for (name, cfg) in balancers {
        let mut group = c.benchmark_group(format!("pick/{name}"));
        for n in [3usize, 30, 300] {
            let up = upstream(cfg, n);
            let mut key = 0u64;
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
                b.iter(|| {
                    key = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    black_box(up.pick(Some(black_box(key)), &[], 1))
                });
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = picks
}
criterion_main!(benches);
