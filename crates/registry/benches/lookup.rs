//! What an image lookup costs the webhook: a cache hit (every admission of a known image) and a
//! cold lookup against a real `docker-registry` on loopback (manifest, index entry, config).
//!
//! Run: `cargo bench -p akv-registry --bench lookup` (needs scripts/setup.sh).

use std::hint::black_box;

use akv_registry::{ImageResolver, Platform, RegistryOptions};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use registry_harness::{ImageSpec, TestRegistry};

fn bench(c: &mut Criterion) {
    let registry = TestRegistry::start().expect("test registry starts");
    registry
        .push(
            &ImageSpec::linux("amd64")
                .entrypoint(&["/app"])
                .cmd(&["serve"]),
            "bench/app:v1",
        )
        .expect("push");
    registry
        .push_index(
            &[
                ImageSpec::linux("amd64").entrypoint(&["/amd64"]),
                ImageSpec::linux("arm64")
                    .variant("v8")
                    .entrypoint(&["/arm64"]),
            ],
            "bench/multi:v1",
        )
        .expect("push index");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let options = RegistryOptions {
        insecure_registries: vec![registry.host()],
        ..Default::default()
    };
    let node = Platform::linux("amd64");

    let mut group = c.benchmark_group("image_lookup");
    group.throughput(Throughput::Elements(1));

    let warm = ImageResolver::new(options.clone());
    let image = registry.image("bench/app:v1");
    runtime
        .block_on(warm.entrypoint(&image, &node, &[]))
        .expect("warm-up lookup");
    group.bench_function("cache_hit", |b| {
        b.iter(|| {
            runtime
                .block_on(warm.entrypoint(black_box(&image), &node, &[]))
                .expect("hit")
        })
    });

    for (name, repo) in [
        ("cold_single", "bench/app:v1"),
        ("cold_index", "bench/multi:v1"),
    ] {
        let image = registry.image(repo);
        group.bench_function(name, |b| {
            b.iter(|| {
                // A fresh resolver: no cached answers, clients or connections.
                let cold = ImageResolver::new(options.clone());
                runtime
                    .block_on(cold.entrypoint(black_box(&image), &node, &[]))
                    .expect("cold lookup")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
