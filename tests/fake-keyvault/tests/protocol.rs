//! The wire protocol with a plain HTTP client: challenge, audience, throttling, knobs, managed
//! identity, certificates and keys.

mod common;

use std::time::Duration;

use common::{TENANT, VAULT};
use fake_keyvault::{GrantMethod, Options, Throttle};
use serde_json::Value;

const VAULT_SCOPE: &str = "https://vault.azure.net/.default";

fn url(path: &str) -> String {
    format!("https://myvault.vault.azure.net{path}?api-version=7.5")
}

async fn get_json(client: &reqwest::Client, url: &str, token: &str) -> (u16, Value) {
    let resp = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn no_token_gets_the_bearer_challenge() {
    let kv = common::start().await;
    let client = common::http_client(&kv);
    // (host, resource in the challenge, authority in the challenge)
    let cases = [
        (
            "myvault.vault.azure.net",
            "https://vault.azure.net",
            "https://login.microsoftonline.com",
        ),
        (
            "myvault.vault.azure.cn",
            "https://vault.azure.cn",
            "https://login.chinacloudapi.cn",
        ),
    ];
    for (host, resource, authority) in cases {
        let resp = client
            .get(format!(
                "https://{host}/secrets/db-password/?api-version=2025-07-01"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{host}");
        let challenge = resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(
            challenge,
            format!(r#"Bearer authorization="{authority}/{TENANT}", resource="{resource}""#),
            "{host}"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "Unauthorized", "{host}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("AKV10000"),
            "{host}: {body}"
        );
    }
}

#[tokio::test]
async fn token_audience_and_signature_are_checked() {
    let kv = common::start().await;
    let client = common::http_client(&kv);
    let vault_token = common::token(&kv, &client, "app-a", "s3cret", VAULT_SCOPE).await;
    let arm_token = common::token(
        &kv,
        &client,
        "app-a",
        "s3cret",
        "https://management.azure.com/.default",
    )
    .await;
    let mut forged = vault_token.clone();
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    // (case, token, status, message prefix)
    let cases = [
        ("right audience", vault_token.as_str(), 200, ""),
        (
            "wrong audience",
            arm_token.as_str(),
            401,
            "AKV10022: Invalid audience. Expected https://vault.azure.net",
        ),
        ("forged signature", forged.as_str(), 401, "AKV10013"),
        ("not a JWT", "opaque", 401, "AKV10013"),
    ];
    for (case, token, status, prefix) in cases {
        let (got, body) = get_json(&client, &url("/secrets/db-password"), token).await;
        assert_eq!(got, status, "case {case}: {body}");
        if status == 200 {
            assert_eq!(body["value"], "hunter2", "case {case}");
        } else {
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with(prefix),
                "case {case}: {body}"
            );
        }
    }
    let accesses = kv.accesses();
    assert_eq!(
        accesses[1].identity.as_deref(),
        Some("app-a"),
        "a wrong-audience token still names its holder"
    );
    assert_eq!(accesses[2].identity, None, "a forged token names nobody");
}

#[tokio::test]
async fn throttling_answers_429_with_retry_after_per_vault() {
    let kv = common::start_with(Options {
        throttle: Some(Throttle {
            limit: 3,
            window: Duration::from_secs(30),
        }),
        ..Default::default()
    })
    .await;
    let client = common::http_client(&kv);
    let token = common::token(&kv, &client, "app-a", "s3cret", VAULT_SCOPE).await;
    for i in 0..3 {
        let (status, _) = get_json(&client, &url("/secrets/db-password"), &token).await;
        assert_eq!(status, 200, "GET {i} is within the limit");
    }
    let resp = client
        .get(url("/secrets/db-password"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("whole seconds");
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "Throttled");
    // Another vault has its own window.
    let (status, body) = get_json(
        &client,
        "https://othervault.vault.azure.net/secrets/db-password?api-version=7.5",
        &token,
    )
    .await;
    assert_eq!(
        (status, body["value"].as_str()),
        (200, Some("other-hunter2"))
    );
    // Lifting the throttle at runtime lets reads through again.
    kv.set_throttle(None);
    assert_eq!(
        get_json(&client, &url("/secrets/db-password"), &token)
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn knobs_fail_drop_and_delay_vault_requests() {
    let kv = common::start().await;
    let client = common::http_client(&kv);
    let token = common::token(&kv, &client, "app-a", "s3cret", VAULT_SCOPE).await;

    kv.set_error_rate(1.0);
    let (status, body) = get_json(&client, &url("/secrets/db-password"), &token).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (500, Some("InternalServerError"))
    );
    kv.set_error_rate(0.0);

    kv.set_drop_rate(1.0);
    let err = client
        .get(url("/secrets/db-password"))
        .bearer_auth(&token)
        .send()
        .await
        .expect_err("dropped");
    assert!(
        err.is_request() || err.is_connect() || err.to_string().contains("connection"),
        "{err:?}"
    );
    assert_eq!(
        kv.accesses().last().unwrap().status,
        0,
        "a drop is recorded with status 0"
    );
    kv.set_drop_rate(0.0);

    kv.set_latency(Duration::from_millis(300));
    let started = std::time::Instant::now();
    assert_eq!(
        get_json(&client, &url("/secrets/db-password"), &token)
            .await
            .0,
        200
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "latency applied: {:?}",
        started.elapsed()
    );
    kv.set_latency(Duration::ZERO);

    kv.set_token_service_up(false);
    let resp = client
        .post(kv.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(common::form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "app-a"),
            ("client_secret", "s3cret"),
            ("scope", VAULT_SCOPE),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    kv.set_token_service_up(true);
}

#[tokio::test]
async fn token_service_rejects_bad_requests_with_entra_errors() {
    let kv = common::start().await;
    let client = common::http_client(&kv);
    let base = [("grant_type", "client_credentials"), ("scope", VAULT_SCOPE)];
    // (case, extra fields, tenant, status, AADSTS code)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, u16, &'a str);
    let cases: &[Case] = &[
        (
            "unknown client",
            &[("client_id", "ghost"), ("client_secret", "x")],
            TENANT,
            400,
            "AADSTS700016",
        ),
        (
            "wrong secret",
            &[("client_id", "app-a"), ("client_secret", "x")],
            TENANT,
            401,
            "AADSTS7000215",
        ),
        (
            "no secret",
            &[("client_id", "app-a")],
            TENANT,
            401,
            "AADSTS7000218",
        ),
        (
            "wrong assertion",
            &[
                ("client_id", "app-b"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", "forged"),
            ],
            TENANT,
            401,
            "AADSTS700213",
        ),
        (
            "unknown tenant",
            &[("client_id", "app-a"), ("client_secret", "s3cret")],
            "other-tenant",
            400,
            "AADSTS90002",
        ),
        (
            "managed via token endpoint",
            &[("client_id", "app-c"), ("client_secret", "x")],
            TENANT,
            400,
            "AADSTS700016",
        ),
    ];
    for (case, extra, tenant, status, code) in cases {
        let mut fields: Vec<(&str, &str)> = base.to_vec();
        fields.extend_from_slice(extra);
        let resp = client
            .post(format!(
                "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
            ))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(common::form(&fields))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), *status, "case {case}");
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .starts_with(code),
            "case {case}: {body}"
        );
    }
    assert!(kv.token_grants().is_empty(), "no token for any bad request");
}

#[tokio::test]
async fn managed_identity_endpoints_issue_tokens_the_vault_accepts() {
    let kv = common::start().await;
    let client = common::http_client(&kv);
    let http = common::http_client(&kv);
    let base = format!("http://{}", kv.http_addr());
    let resource = "https://vault.azure.net";
    // (case, path, query client_id, header, status, identity)
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        (&'a str, &'a str),
        u16,
        &'a str,
    );
    let cases: &[Case] = &[
        (
            "IMDS system",
            "/metadata/identity/oauth2/token",
            None,
            ("Metadata", "true"),
            200,
            "system",
        ),
        (
            "IMDS user-assigned",
            "/metadata/identity/oauth2/token",
            Some("app-c"),
            ("Metadata", "true"),
            200,
            "app-c",
        ),
        (
            "IMDS no header",
            "/metadata/identity/oauth2/token",
            None,
            ("X-Other", "1"),
            400,
            "",
        ),
        (
            "IMDS not managed",
            "/metadata/identity/oauth2/token",
            Some("app-a"),
            ("Metadata", "true"),
            400,
            "",
        ),
        (
            "App Service",
            "/msi/token",
            Some("app-c"),
            ("X-IDENTITY-HEADER", kv.identity_header()),
            200,
            "app-c",
        ),
        (
            "App Service bad header",
            "/msi/token",
            Some("app-c"),
            ("X-IDENTITY-HEADER", "wrong"),
            401,
            "",
        ),
    ];
    for (case, path, client_id, (hname, hvalue), status, identity) in cases {
        let mut u = format!("{base}{path}?api-version=2019-08-01&resource={resource}");
        if let Some(id) = client_id {
            u.push_str(&format!("&client_id={id}"));
        }
        let resp = http.get(&u).header(*hname, *hvalue).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), *status, "case {case}");
        let body: Value = resp.json().await.unwrap();
        if *status != 200 {
            assert!(body["error_description"].is_string(), "case {case}: {body}");
            continue;
        }
        let expires_on: i64 = body["expires_on"]
            .as_str()
            .expect("expires_on is a string")
            .parse()
            .unwrap();
        assert!(
            expires_on > time::OffsetDateTime::now_utc().unix_timestamp() + 3600,
            "case {case}"
        );
        assert_eq!(body["resource"], resource, "case {case}");
        let token = body["access_token"].as_str().unwrap();
        let (got, secret) = get_json(&client, &url("/secrets/db-password"), token).await;
        assert_eq!(
            (got, secret["value"].as_str()),
            (200, Some("hunter2")),
            "case {case}"
        );
        assert_eq!(
            kv.accesses().last().unwrap().identity.as_deref(),
            Some(*identity),
            "case {case}"
        );
    }
    let methods: Vec<GrantMethod> = kv.token_grants().iter().map(|g| g.method).collect();
    assert_eq!(methods, vec![GrantMethod::ManagedIdentity; 3]);
}

#[tokio::test]
async fn certificates_and_keys_have_key_vault_shapes() {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let kv = common::start().await;
    let client = common::http_client(&kv);
    let token = common::token(&kv, &client, "app-a", "s3cret", VAULT_SCOPE).await;

    let (status, cert) = get_json(&client, &url("/certificates/web-pem"), &token).await;
    assert_eq!(status, 200, "{cert}");
    let der = STANDARD
        .decode(cert["cer"].as_str().unwrap())
        .expect("cer is base64 DER");
    let thumb = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
    assert_eq!(
        cert["x5t"],
        URL_SAFE_NO_PAD.encode(thumb.as_ref()),
        "x5t is the SHA-1 thumbprint"
    );
    let version = cert["id"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let (status, pinned) = get_json(
        &client,
        &url(&format!("/certificates/web-pem/{version}")),
        &token,
    )
    .await;
    assert_eq!((status, &pinned["cer"]), (200, &cert["cer"]));
    assert_eq!(
        cert["policy"]["x509_props"]["subject"],
        "CN=web.example.com"
    );

    let (status, key) = get_json(&client, &url("/keys/signing"), &token).await;
    assert_eq!(status, 200, "{key}");
    assert_eq!(
        (key["key"]["kty"].as_str(), key["key"]["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );
    assert!(
        key["key"]["kid"]
            .as_str()
            .unwrap()
            .starts_with("https://myvault.vault.azure.net/keys/signing/")
    );
    assert!(
        key.get("managed").is_none(),
        "a standalone key is not managed"
    );

    let (status, body) = get_json(&client, &url("/keys/nope"), &token).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("KeyNotFound"))
    );
    let (status, body) = get_json(&client, &url("/certificates/nope"), &token).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("CertificateNotFound"))
    );
    let resp = client
        .get("https://myvault.vault.azure.net/secrets/db-password")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "api-version is required");
}

#[tokio::test]
async fn openid_configuration_points_back_at_the_authority() {
    let kv = common::start().await;
    let client = common::http_client(&kv);
    let resp = client
        .get(format!(
            "https://login.microsoftonline.com/{TENANT}/v2.0/.well-known/openid-configuration"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    for (field, want) in [
        (
            "token_endpoint",
            format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"),
        ),
        (
            "issuer",
            format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
        ),
        (
            "authorization_endpoint",
            format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/authorize"),
        ),
    ] {
        assert_eq!(body[field], want, "{field}");
    }
    let _ = VAULT;
}
