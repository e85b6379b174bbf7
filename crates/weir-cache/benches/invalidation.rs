//! GET hits while unsafe requests invalidate other URIs (a POST stream): the cost one POST's
//! invalidation puts on every later read. Lookups of 1,000 stored objects, alone and after
//! 10,000 invalidations of URIs that are not stored (each POST's target) with no housekeeping
//! in between — the worst case for a store that registers an invalidation predicate per
//! request, which every read evaluates until housekeeping runs.

mod common;
use common::object;

use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::HeaderMap;
use weir_cache::store::{Lookup, MemoryStore};

fn filled(n: usize) -> MemoryStore {
    let store = MemoryStore::new(1 << 30);
    let now = SystemTime::now();
    for i in 0..n {
        store.insert(
            format!("https://shop.test/item/{i}").into_bytes(),
            format!("shop.test/item/{i}"),
            Vec::new(),
            object(now),
        );
    }
    store.usage();
    store
}

fn hits(store: &MemoryStore, keys: &[Vec<u8>]) {
    let none = HeaderMap::new();
    for k in keys {
        assert!(matches!(store.lookup(k, &none), Lookup::Found(_)));
    }
}

fn invalidation(c: &mut Criterion) {
    let keys: Vec<Vec<u8>> = (0..1_000)
        .map(|i| format!("https://shop.test/item/{i}").into_bytes())
        .collect();
    let mut g = c.benchmark_group("get_hits_1k");
    g.sample_size(20);
    let quiet = filled(1_000);
    g.bench_function("without_posts", |b| b.iter(|| hits(&quiet, &keys)));
    // Each sample reads right after the POSTs, before any housekeeping could run.
    g.bench_function("after_10k_post_invalidations", |b| {
        b.iter_batched(
            || {
                let busy = filled(1_000);
                for i in 0..10_000 {
                    let _ = busy.invalidate_uri(&format!("shop.test/cart/{i}"));
                }
                busy
            },
            |busy| {
                hits(&busy, &keys);
                busy
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, invalidation);
criterion_main!(benches);
