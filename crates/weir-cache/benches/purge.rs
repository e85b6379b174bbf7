//! Purge by tag over 100,000 stored objects (issue 6 asks for under 100 ms).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderMap, StatusCode};
use weir_cache::directives::ResponseDirectives;
use weir_cache::freshness::Freshness;
use weir_cache::store::{Lookup, MemoryStore, Purge, Variant};

fn filled(n: usize) -> MemoryStore {
    let store = MemoryStore::new(4 << 30);
    let now = SystemTime::now();
    for i in 0..n {
        let variant = Variant {
            secondary: Vec::new(),
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"0123456789abcdef"),
            freshness: Freshness {
                lifetime: Duration::from_secs(3600),
                heuristic: false,
                initial_age: Duration::ZERO,
                response_time: now,
            },
            directives: ResponseDirectives::default(),
            body_len: 16,
            file: None,
        };
        // Every object carries "all" and one of 100 product tags.
        let tags = vec!["all".to_owned(), format!("product-{}", i % 100)];
        store.insert_tagged(
            format!("https://shop.test/item/{i}").into_bytes(),
            format!("shop.test/item/{i}"),
            Vec::new(),
            variant,
            tags,
        );
    }
    store.usage();
    store
}

fn purge(c: &mut Criterion) {
    let mut g = c.benchmark_group("purge");
    g.sample_size(10);
    g.bench_function("tag_100k_objects", |b| {
        b.iter_batched(
            || filled(100_000),
            |store| {
                let n = store.purge(Purge::Tag("all"), false, SystemTime::now());
                assert_eq!(n, 100_000);
                // Gone for every reader from here on.
                let none = HeaderMap::new();
                assert!(matches!(
                    store.lookup(b"https://shop.test/item/5", &none),
                    Lookup::UriMiss
                ));
                store
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("tag_1k_of_100k_objects", |b| {
        b.iter_batched(
            || filled(100_000),
            |store| {
                let n = store.purge(Purge::Tag("product-7"), false, SystemTime::now());
                assert_eq!(n, 1_000);
                store
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("soft_tag_100k_objects", |b| {
        b.iter_batched(
            || filled(100_000),
            |store| {
                store.purge(Purge::Tag("all"), true, SystemTime::now());
                store
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, purge);
criterion_main!(benches);
