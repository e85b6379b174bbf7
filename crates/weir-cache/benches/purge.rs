//! Purge by tag over 100,000 stored objects (issue 6 asks for under 100 ms), in memory and on
//! disk.

mod common;
use common::object;

use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::HeaderMap;
use weir_cache::disk::DiskStore;
use weir_cache::store::{Lookup, MemoryStore, Purge};

/// Every object carries "all" and one of 100 product tags.
fn tags_of(i: usize) -> Vec<String> {
    vec!["all".to_owned(), format!("product-{}", i % 100)]
}

fn filled(n: usize) -> MemoryStore {
    let store = MemoryStore::new(4 << 30);
    let now = SystemTime::now();
    for i in 0..n {
        store.insert_tagged(
            format!("https://shop.test/item/{i}").into_bytes(),
            format!("shop.test/item/{i}"),
            Vec::new(),
            object(now),
            tags_of(i),
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
    // The disk tier: 100,000 objects (one file each); a tag on 1,000 of them is purged (its
    // files deleted); the 1,000 are written back between iterations, outside the timing.
    let dir = std::env::temp_dir().join(format!("weir-bench-purge-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let disk = std::sync::Arc::new(DiskStore::open(&dir, 1 << 40, Vec::new()).expect("disk"));
    let now = SystemTime::now();
    let put = |i: usize| {
        let key = format!("https://shop.test/item/{i}");
        disk.insert(
            key.as_bytes(),
            &format!("shop.test/item/{i}"),
            &[],
            &object(now),
            &tags_of(i),
        )
        .expect("write");
    };
    (0..100_000).for_each(put);
    g.bench_function("disk_tag_1k_of_100k_objects", |b| {
        b.iter_batched(
            || (7..100_000).step_by(100).for_each(put),
            |()| {
                let n = disk.purge(Purge::Tag("product-7"), false, SystemTime::now());
                assert_eq!(n, 1_000);
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, purge);
criterion_main!(benches);
