//! Lookups against a real registry: Debian's `docker-registry` on loopback, with images pushed
//! by `umoci` + `skopeo` (see tests/registry-harness). Needs scripts/setup.sh.

use std::time::{Duration, Instant};

use akv_registry::{
    Credential, DockerConfig, ImageEntrypoint, ImageResolver, LookupError, Platform,
    RegistryOptions,
};
use registry_harness::{HangingServer, ImageSpec, TestRegistry};

fn resolver_for(hosts: &[String]) -> ImageResolver {
    ImageResolver::new(RegistryOptions {
        timeout: Duration::from_secs(10),
        insecure_registries: hosts.to_vec(),
        ..Default::default()
    })
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn secret(registry: &str, user: &str, password: &str) -> DockerConfig {
    DockerConfig::from_credentials([(registry, Credential::new(user, password))])
}

#[tokio::test]
async fn reads_entrypoint_and_cmd_of_a_single_platform_image() {
    let registry = TestRegistry::start().unwrap();
    let digest = registry
        .push(
            &ImageSpec::linux("amd64")
                .entrypoint(&["/usr/bin/app", "--config", "/etc/app.yaml"])
                .cmd(&["serve", "--port=8080"])
                .file("/etc/app.yaml", b"x: 1\n"),
            "team/app:v1",
        )
        .unwrap();
    let resolver = resolver_for(&[registry.host()]);
    let got = resolver
        .entrypoint(
            &registry.image("team/app:v1"),
            &Platform::linux("amd64"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        got,
        ImageEntrypoint {
            entrypoint: strings(&["/usr/bin/app", "--config", "/etc/app.yaml"]),
            cmd: strings(&["serve", "--port=8080"]),
            digest,
        }
    );
}

#[tokio::test]
async fn an_image_with_only_cmd_has_an_empty_entrypoint() {
    let registry = TestRegistry::start().unwrap();
    registry
        .push(
            &ImageSpec::linux("amd64").cmd(&["/bin/sh", "-c", "echo hi"]),
            "shell:latest",
        )
        .unwrap();
    let resolver = resolver_for(&[registry.host()]);
    // No tag: `:latest`, as the kubelet pulls.
    let got = resolver
        .entrypoint(&registry.image("shell"), &Platform::linux("amd64"), &[])
        .await
        .unwrap();
    assert!(got.entrypoint.is_empty(), "{got:?}");
    assert_eq!(got.cmd, strings(&["/bin/sh", "-c", "echo hi"]));
}

#[tokio::test]
async fn a_multi_arch_index_gives_the_nodes_platform() {
    let registry = TestRegistry::start().unwrap();
    registry
        .push_index(
            &[
                ImageSpec::linux("amd64").entrypoint(&["/amd64/app"]),
                ImageSpec::linux("arm64")
                    .variant("v8")
                    .entrypoint(&["/arm64/app"]),
                ImageSpec::linux("arm")
                    .variant("v7")
                    .entrypoint(&["/armv7/app"]),
            ],
            "multi:v1",
        )
        .unwrap();
    let resolver = resolver_for(&[registry.host()]);
    let image = registry.image("multi:v1");
    let cases = [
        (Platform::linux("amd64"), "/amd64/app"),
        (Platform::linux("arm64"), "/arm64/app"),
        (Platform::linux("arm64").with_variant("v8"), "/arm64/app"),
        (Platform::linux("arm"), "/armv7/app"),
    ];
    let mut digests = Vec::new();
    for (platform, want) in cases {
        let got = resolver.entrypoint(&image, &platform, &[]).await.unwrap();
        assert_eq!(got.entrypoint, strings(&[want]), "platform {platform}");
        digests.push(got.digest);
    }
    assert_ne!(digests[0], digests[1], "each platform has its own manifest");

    let err = resolver
        .entrypoint(&image, &Platform::linux("s390x"), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(err, LookupError::NoMatchingPlatform { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    for part in [
        image.as_str(),
        "linux/s390x",
        "linux/amd64, linux/arm64/v8, linux/arm/v7",
    ] {
        assert!(text.contains(part), "{text:?} lacks {part:?}");
    }
}

#[tokio::test]
async fn basic_auth_registry_takes_the_right_credentials_and_refuses_others() {
    let registry = TestRegistry::start_with_basic_auth("puller", "correct horse").unwrap();
    registry
        .push(
            &ImageSpec::linux("amd64").entrypoint(&["/private"]),
            "private/app:v1",
        )
        .unwrap();
    let resolver = resolver_for(&[registry.host()]);
    let image = registry.image("private/app:v1");
    let node = Platform::linux("amd64");

    let right = [secret(&registry.host(), "puller", "correct horse")];
    let got = resolver.entrypoint(&image, &node, &right).await.unwrap();
    assert_eq!(got.entrypoint, strings(&["/private"]));

    // A wrong credential first, the right one in a second secret: tried in order.
    let both = [
        secret(&registry.host(), "puller", "wrong"),
        secret(
            &format!("http://{}/private", registry.host()),
            "puller",
            "correct horse",
        ),
    ];
    let got = resolver.entrypoint(&image, &node, &both).await.unwrap();
    assert_eq!(got.entrypoint, strings(&["/private"]));

    let wrong = [secret(&registry.host(), "puller", "battery staple")];
    let err = resolver
        .entrypoint(&image, &node, &wrong)
        .await
        .unwrap_err();
    assert!(matches!(err, LookupError::Unauthorized { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&image) && text.contains("1 matching credential"),
        "{text}"
    );
    assert!(
        !text.contains("battery") && !format!("{err:?}").contains("battery"),
        "{text}"
    );

    // The earlier successful answer is not handed to a pod without credentials.
    let err = resolver.entrypoint(&image, &node, &[]).await.unwrap_err();
    assert!(matches!(err, LookupError::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains("anonymously"), "{err}");

    // Credentials for another registry do not match this one: anonymous, refused.
    let elsewhere = [secret("other.example.com", "puller", "correct horse")];
    let err = resolver
        .entrypoint(&image, &node, &elsewhere)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("anonymously"), "{err}");
}

#[tokio::test]
async fn a_missing_tag_or_repository_is_not_found() {
    let registry = TestRegistry::start().unwrap();
    registry
        .push(&ImageSpec::linux("amd64").cmd(&["x"]), "present:v1")
        .unwrap();
    let resolver = resolver_for(&[registry.host()]);
    for missing in ["present:v2", "absent:v1"] {
        let image = registry.image(missing);
        let err = resolver
            .entrypoint(&image, &Platform::linux("amd64"), &[])
            .await
            .unwrap_err();
        assert!(
            matches!(err, LookupError::NotFound { .. }),
            "{missing}: {err:?}"
        );
        assert!(err.to_string().contains(&image), "{err}");
    }
}

#[tokio::test]
async fn a_hanging_registry_gives_a_timeout_at_the_deadline() {
    let hanging = HangingServer::start().unwrap();
    let resolver = ImageResolver::new(RegistryOptions {
        timeout: Duration::from_millis(300),
        insecure_registries: vec![hanging.host()],
        ..Default::default()
    });
    let image = format!("{}/app:v1", hanging.host());
    let started = Instant::now();
    let err = resolver
        .entrypoint(&image, &Platform::linux("amd64"), &[])
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, LookupError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains(&image), "{err}");
    // No proxy was set: the message does not blame one.
    assert!(!err.to_string().contains("proxy"), "{err}");
    // The deadline holds: generous slack for a loaded machine, far below any HTTP timeout.
    assert!(waited < Duration::from_secs(5), "took {waited:?}");
    assert_eq!(resolver.stats().errors, 1);
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let addr = registry_harness::free_loopback_addr().unwrap();
    let resolver = resolver_for(&[addr.to_string()]);
    let image = format!("{addr}/app:v1");
    let err = resolver
        .entrypoint(&image, &Platform::linux("amd64"), &[])
        .await
        .unwrap_err();
    assert!(matches!(err, LookupError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains(&image), "{err}");
}

#[tokio::test]
async fn answers_are_cached_by_reference_and_by_digest() {
    let registry = TestRegistry::start().unwrap();
    let digest = registry
        .push(
            &ImageSpec::linux("amd64").entrypoint(&["/v1"]),
            "app:stable",
        )
        .unwrap();
    let resolver = resolver_for(&[registry.host()]);
    let node = Platform::linux("amd64");
    let image = registry.image("app:stable");

    let first = resolver.entrypoint(&image, &node, &[]).await.unwrap();
    let second = resolver.entrypoint(&image, &node, &[]).await.unwrap();
    assert_eq!(first, second);
    let stats = resolver.stats();
    assert_eq!(
        (stats.lookups, stats.hits, stats.misses),
        (2, 1, 1),
        "{stats:?}"
    );

    // Another platform is another answer.
    resolver
        .entrypoint(&image, &Platform::linux("arm64"), &[])
        .await
        .unwrap();
    assert_eq!(resolver.stats().misses, 2);

    // A digest reference is served from the cache even after the registry is gone.
    let by_digest = registry.image(&format!("app@{digest}"));
    let answer = resolver.entrypoint(&by_digest, &node, &[]).await.unwrap();
    assert_eq!(answer.entrypoint, strings(&["/v1"]));
    drop(registry);
    let again = resolver.entrypoint(&by_digest, &node, &[]).await.unwrap();
    assert_eq!(again, answer);
    assert_eq!(resolver.stats().hits, 2);
}

#[tokio::test]
async fn tag_answers_expire_but_digest_answers_do_not() {
    let registry = TestRegistry::start().unwrap();
    let digest = registry
        .push(
            &ImageSpec::linux("amd64").entrypoint(&["/v1"]),
            "app:moving",
        )
        .unwrap();
    // A TTL of zero: every tag lookup goes back to the registry.
    let resolver = ImageResolver::new(RegistryOptions {
        cache_ttl: Duration::ZERO,
        insecure_registries: vec![registry.host()],
        ..Default::default()
    });
    let node = Platform::linux("amd64");
    let tag = registry.image("app:moving");
    assert_eq!(
        resolver
            .entrypoint(&tag, &node, &[])
            .await
            .unwrap()
            .entrypoint,
        strings(&["/v1"])
    );

    // The tag moves to a new image; the next lookup sees it.
    registry
        .push(
            &ImageSpec::linux("amd64").entrypoint(&["/v2"]),
            "app:moving",
        )
        .unwrap();
    assert_eq!(
        resolver
            .entrypoint(&tag, &node, &[])
            .await
            .unwrap()
            .entrypoint,
        strings(&["/v2"])
    );
    let stats = resolver.stats();
    assert_eq!((stats.hits, stats.misses), (0, 2), "{stats:?}");

    let pinned = registry.image(&format!("app@{digest}"));
    for _ in 0..2 {
        let got = resolver.entrypoint(&pinned, &node, &[]).await.unwrap();
        assert_eq!(got.entrypoint, strings(&["/v1"]));
    }
    let stats = resolver.stats();
    assert_eq!((stats.hits, stats.misses), (1, 3), "{stats:?}");
}

#[tokio::test]
async fn a_bad_reference_is_refused_before_any_request() {
    let resolver = resolver_for(&[]);
    let err = resolver
        .entrypoint(
            "Registry.example.com/UPPER:tag",
            &Platform::linux("amd64"),
            &[],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, LookupError::InvalidReference { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("Registry.example.com/UPPER:tag"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_of_one_image_share_one_fetch() {
    let registry = TestRegistry::start().unwrap();
    registry
        .push(&ImageSpec::linux("amd64").entrypoint(&["/busy"]), "busy:v1")
        .unwrap();
    let resolver = resolver_for(&[registry.host()]);
    let image = registry.image("busy:v1");
    let lookups: Vec<_> = (0..20)
        .map(|_| {
            let resolver = resolver.clone();
            let image = image.clone();
            tokio::spawn(async move {
                resolver
                    .entrypoint(&image, &Platform::linux("amd64"), &[])
                    .await
            })
        })
        .collect();
    for lookup in lookups {
        assert_eq!(
            lookup.await.unwrap().unwrap().entrypoint,
            strings(&["/busy"])
        );
    }
    let stats = resolver.stats();
    assert_eq!(
        (stats.lookups, stats.hits, stats.misses),
        (20, 19, 1),
        "{stats:?}"
    );
}

/// Concurrent lookups of a missing image share its failure, and a failure is never cached: once
/// the image is pushed, the next lookup finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_shared_by_concurrent_lookups_but_not_cached() {
    let registry = TestRegistry::start().unwrap();
    let resolver = resolver_for(&[registry.host()]);
    let image = registry.image("late:v1");
    let lookups: Vec<_> = (0..10)
        .map(|_| {
            let (resolver, image) = (resolver.clone(), image.clone());
            tokio::spawn(async move {
                resolver
                    .entrypoint(&image, &Platform::linux("amd64"), &[])
                    .await
            })
        })
        .collect();
    for lookup in lookups {
        let err = lookup.await.unwrap().unwrap_err();
        assert!(matches!(err, LookupError::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains(&image), "{err}");
    }
    let stats = resolver.stats();
    assert_eq!((stats.lookups, stats.errors, stats.hits), (10, 10, 0));
    assert!((1..=10).contains(&stats.misses), "{stats:?}");

    registry
        .push(&ImageSpec::linux("amd64").entrypoint(&["/late"]), "late:v1")
        .unwrap();
    let found = resolver
        .entrypoint(&image, &Platform::linux("amd64"), &[])
        .await
        .unwrap();
    assert_eq!(found.entrypoint, strings(&["/late"]));
}
