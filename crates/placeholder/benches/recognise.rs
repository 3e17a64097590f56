//! How fast a value that is *not* a placeholder is recognised: the webhook runs this on every env
//! var of every admitted pod, the injector on every var of its environment.
//!
//! Run: `cargo bench -p akv-placeholder --bench recognise`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let long_json = format!("{{\"items\":[{}]}}", "\"value\",".repeat(500));
    let plain: [(&str, &str); 5] = [
        ("port", "8080"),
        ("url", "postgres://app@db.internal:5432/app?sslmode=require"),
        (
            "path",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
        ("email-like", "alerts@example.com"),
        ("json-4k", long_json.as_str()),
    ];
    let mut group = c.benchmark_group("not_a_placeholder");
    for (name, value) in plain {
        group.throughput(Throughput::Elements(1));
        group.bench_function(name, |b| {
            b.iter(|| akv_placeholder::parse(black_box(value)).expect("plain"))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("placeholder");
    for (name, value) in [
        ("bare", "db-password@azurekeyvault"),
        (
            "full",
            "tls@azurekeyvault?vault=https://kv1.vault.azure.cn&type=certificate&part=cert",
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| akv_placeholder::parse(black_box(value)).expect("valid"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
