//! The cost of one local rate-limit decision (the budget: under 200 ns), per algorithm,
//! for a hot key and across 100,000 keys.
//!
//! `cargo bench -p weir-policy --bench limiter`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use weir_policy::ratelimit::{Algorithm, LocalLimiter, Rate};

fn bench(c: &mut Criterion) {
    let rate = Rate::new(1_000_000, Duration::from_secs(1)).expect("rate");
    for (name, alg) in [
        ("token_bucket", Algorithm::TokenBucket),
        ("fixed_window", Algorithm::FixedWindow),
        ("sliding_window", Algorithm::SlidingWindow),
        ("gcra", Algorithm::Gcra),
    ] {
        let limiter = LocalLimiter::new(alg, rate, 1_000_000, 1_000_000);
        let mut now = 0u64;
        c.bench_function(&format!("local_{name}_one_key"), |b| {
            b.iter(|| {
                now += 1_000;
                black_box(limiter.check(black_box(b"203.0.113.7"), now, 1))
            })
        });
        let keys: Vec<String> = (0..100_000).map(|i| format!("client-{i}")).collect();
        let mut i = 0usize;
        c.bench_function(&format!("local_{name}_100k_keys"), |b| {
            b.iter(|| {
                i = (i + 7919) % keys.len();
                now += 1_000;
                black_box(limiter.check(keys[i].as_bytes(), now, 1))
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
