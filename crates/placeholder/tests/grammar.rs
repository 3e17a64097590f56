//! Table tests for every row of DESIGN.md's placeholder grammar.

use akv_placeholder::{
    CertPart, Encoding, ErrorKind, ObjectKind, ParseError, Reference, Vault, is_placeholder,
    is_placeholder_bytes, parse,
};

fn secret(name: &str) -> Reference {
    Reference::secret(name)
}

fn with(name: &str, f: impl FnOnce(&mut Reference)) -> Reference {
    let mut r = secret(name);
    f(&mut r);
    r
}

const V32: &str = "0123456789abcdef0123456789ABCDEF";

#[test]
fn well_formed_placeholders() {
    let cases: Vec<(&str, &str, Reference)> = vec![
        (
            "bare name",
            "db-password@azurekeyvault",
            secret("db-password"),
        ),
        ("digits and dashes", "a-1-B@azurekeyvault", secret("a-1-B")),
        ("one char name", "x@azurekeyvault", secret("x")),
        (
            "vault by name",
            "db@azurekeyvault?vault=prod-kv",
            with("db", |r| r.vault = Some(Vault::Name("prod-kv".into()))),
        ),
        (
            "vault by public URL",
            "db@azurekeyvault?vault=https://prod-kv.vault.azure.net",
            with("db", |r| {
                r.vault = Some(Vault::Url("https://prod-kv.vault.azure.net".into()))
            }),
        ),
        (
            "vault URL China, trailing slash",
            "db@azurekeyvault?vault=https://kv-cn.vault.azure.cn/",
            with("db", |r| {
                r.vault = Some(Vault::Url("https://kv-cn.vault.azure.cn".into()))
            }),
        ),
        (
            "vault URL US Gov, upper case host",
            "db@azurekeyvault?vault=https://KV-Gov.Vault.UsGovCloudApi.net",
            with("db", |r| {
                r.vault = Some(Vault::Url("https://kv-gov.vault.usgovcloudapi.net".into()))
            }),
        ),
        (
            "vault URL with port",
            "db@azurekeyvault?vault=https://kv1.vault.azure.net:8443",
            with("db", |r| {
                r.vault = Some(Vault::Url("https://kv1.vault.azure.net:8443".into()))
            }),
        ),
        (
            "vault URL with default port drops it",
            "db@azurekeyvault?vault=https://kv1.vault.azure.net:443/",
            with("db", |r| {
                r.vault = Some(Vault::Url("https://kv1.vault.azure.net".into()))
            }),
        ),
        (
            "percent-encoded vault URL",
            "db@azurekeyvault?vault=https%3A%2F%2Fkv1.vault.azure.net",
            with("db", |r| {
                r.vault = Some(Vault::Url("https://kv1.vault.azure.net".into()))
            }),
        ),
        (
            "version",
            format!("db@azurekeyvault?version={V32}").leak(),
            with("db", |r| r.version = Some(V32.into())),
        ),
        (
            "type secret is the default",
            "db@azurekeyvault?type=secret",
            secret("db"),
        ),
        (
            "type certificate",
            "tls@azurekeyvault?type=certificate",
            with("tls", |r| r.kind = ObjectKind::Certificate),
        ),
        (
            "type key",
            "signing@azurekeyvault?type=key",
            with("signing", |r| r.kind = ObjectKind::Key),
        ),
        (
            "json key",
            "cfg@azurekeyvault?key=password",
            with("cfg", |r| r.json_key = Some("password".into())),
        ),
        (
            "akv2k8s bare token means key",
            "tls@azurekeyvault?tls.crt",
            with("tls", |r| r.json_key = Some("tls.crt".into())),
        ),
        (
            "percent-encoded key with & and space",
            "cfg@azurekeyvault?key=a%26b%20c",
            with("cfg", |r| r.json_key = Some("a&b c".into())),
        ),
        (
            "percent-encoded UTF-8 key",
            "cfg@azurekeyvault?key=%C3%A9t%C3%A9",
            with("cfg", |r| r.json_key = Some("été".into())),
        ),
        (
            "key containing = and ?",
            "cfg@azurekeyvault?key=a=b?c",
            with("cfg", |r| r.json_key = Some("a=b?c".into())),
        ),
        (
            "encoding base64",
            "blob@azurekeyvault?encoding=base64",
            with("blob", |r| r.encoding = Some(Encoding::Base64)),
        ),
        (
            "key then base64",
            "cfg@azurekeyvault?key=cert&encoding=base64",
            with("cfg", |r| {
                r.json_key = Some("cert".into());
                r.encoding = Some(Encoding::Base64);
            }),
        ),
        (
            "certificate part cert",
            "tls@azurekeyvault?type=certificate&part=cert",
            with("tls", |r| {
                r.kind = ObjectKind::Certificate;
                r.part = Some(CertPart::Cert);
            }),
        ),
        (
            "certificate part key, params in any order",
            "tls@azurekeyvault?part=key&type=certificate",
            with("tls", |r| {
                r.kind = ObjectKind::Certificate;
                r.part = Some(CertPart::Key);
            }),
        ),
        (
            "certificate part pem",
            "tls@azurekeyvault?type=certificate&part=pem",
            with("tls", |r| {
                r.kind = ObjectKind::Certificate;
                r.part = Some(CertPart::Pem);
            }),
        ),
        (
            "everything",
            format!("tls@azurekeyvault?vault=kv1&type=certificate&version={V32}&part=cert").leak(),
            with("tls", |r| {
                r.vault = Some(Vault::Name("kv1".into()));
                r.kind = ObjectKind::Certificate;
                r.version = Some(V32.into());
                r.part = Some(CertPart::Cert);
            }),
        ),
    ];
    for (case, input, expected) in cases {
        assert!(is_placeholder(input), "{case}: is_placeholder");
        match parse(input) {
            Ok(Some(got)) => assert_eq!(got, expected, "{case}: {input}"),
            other => panic!("{case}: {input}: expected a reference, got {other:?}"),
        }
    }
}

#[test]
fn values_that_are_not_placeholders_are_left_alone() {
    let cases = [
        "",
        "hunter2",
        "postgres://user@db:5432/app",
        "user@azurekeyvault.example.com",
        "db@AzureKeyVault",
        "db@azurekeyvault ",
        " db@azurekeyvault\n",
        "foo?bar@azurekeyvault",
        "?@azurekeyvault",
        "azurekeyvault",
        "@azurekeyvaul",
        "$(DB_PASSWORD)",
        "mail@example.com?x=y@azurekeyvault",
    ];
    for input in cases {
        assert!(!is_placeholder(input), "{input:?}");
        assert!(!is_placeholder_bytes(input.as_bytes()), "{input:?}");
        assert_eq!(parse(input), Ok(None), "{input:?}");
    }
    // Not UTF-8 is not a placeholder either, and the check does not care.
    assert!(!is_placeholder_bytes(b"\xff\xfe@azurekeyvaul"));
    assert!(is_placeholder_bytes(b"\xff@azurekeyvault"));
}

/// (case, input, offset, kind matcher, text the message must contain)
type ErrorCase<'a> = (&'a str, &'a str, usize, fn(&ErrorKind) -> bool, &'a str);

#[test]
fn malformed_placeholders_say_what_and_where() {
    let long_name = format!("{}@azurekeyvault", "a".repeat(128));
    let cases: Vec<ErrorCase> = vec![
        (
            "empty name",
            "@azurekeyvault",
            0,
            |k| matches!(k, ErrorKind::EmptyName),
            "empty",
        ),
        (
            "name with underscore",
            "db_password@azurekeyvault",
            2,
            |k| matches!(k, ErrorKind::InvalidNameChar { .. }),
            "`_`",
        ),
        (
            "name with a second @",
            "me@db@azurekeyvault",
            2,
            |k| matches!(k, ErrorKind::InvalidNameChar { .. }),
            "`@`",
        ),
        (
            "name too long",
            long_name.as_str(),
            127,
            |k| matches!(k, ErrorKind::NameTooLong { len: 128 }),
            "at most 127",
        ),
        (
            "empty query",
            "db@azurekeyvault?",
            16,
            |k| matches!(k, ErrorKind::EmptyQuery),
            "`?`",
        ),
        (
            "trailing &",
            "db@azurekeyvault?vault=kv1&",
            27,
            |k| matches!(k, ErrorKind::EmptyParameter),
            "empty parameter",
        ),
        (
            "double &",
            "db@azurekeyvault?vault=kv1&&type=key",
            27,
            |k| matches!(k, ErrorKind::EmptyParameter),
            "empty parameter",
        ),
        (
            "unknown param",
            "db@azurekeyvault?vualt=kv1",
            17,
            |k| matches!(k, ErrorKind::UnknownParameter { .. }),
            "unknown parameter `vualt`",
        ),
        (
            "param names are case sensitive",
            "db@azurekeyvault?Vault=kv1",
            17,
            |k| matches!(k, ErrorKind::UnknownParameter { .. }),
            "`Vault`",
        ),
        (
            "duplicate param",
            "db@azurekeyvault?vault=kv1&vault=kv2",
            27,
            |k| matches!(k, ErrorKind::DuplicateParameter { param: "vault" }),
            "more than once",
        ),
        (
            "bare token among other params",
            "db@azurekeyvault?key=a&b",
            23,
            |k| matches!(k, ErrorKind::MissingValue { .. }),
            "has no value",
        ),
        (
            "empty vault",
            "db@azurekeyvault?vault=",
            23,
            |k| matches!(k, ErrorKind::EmptyValue { param: "vault" }),
            "empty value",
        ),
        (
            "empty key",
            "db@azurekeyvault?key=",
            21,
            |k| matches!(k, ErrorKind::EmptyValue { param: "key" }),
            "empty value",
        ),
        (
            "bad percent escape",
            "db@azurekeyvault?key=a%zz",
            22,
            |k| matches!(k, ErrorKind::BadPercentEncoding),
            "percent",
        ),
        (
            "truncated percent escape",
            "db@azurekeyvault?key=a%4",
            22,
            |k| matches!(k, ErrorKind::BadPercentEncoding),
            "percent",
        ),
        (
            "percent escape not UTF-8",
            "db@azurekeyvault?key=%FF",
            21,
            |k| matches!(k, ErrorKind::NotUtf8 { param: "key" }),
            "UTF-8",
        ),
        (
            "vault name too short",
            "db@azurekeyvault?vault=kv",
            23,
            |k| matches!(k, ErrorKind::VaultNameLength { len: 2 }),
            "3 to 24",
        ),
        (
            "vault name too long",
            "db@azurekeyvault?vault=abcdefghijklmnopqrstuvwxy",
            23,
            |k| matches!(k, ErrorKind::VaultNameLength { len: 25 }),
            "3 to 24",
        ),
        (
            "vault name starts with a digit",
            "db@azurekeyvault?vault=1kv",
            23,
            |k| matches!(k, ErrorKind::VaultNameStart),
            "start with a letter",
        ),
        (
            "vault name with a dot",
            "db@azurekeyvault?vault=kv.prod",
            25,
            |k| matches!(k, ErrorKind::VaultNameChar { .. }),
            "`.`",
        ),
        (
            "vault URL over http",
            "db@azurekeyvault?vault=http://kv1.vault.azure.net",
            23,
            |k| matches!(k, ErrorKind::VaultUrlScheme),
            "https",
        ),
        (
            "vault URL with a path",
            "db@azurekeyvault?vault=https://kv1.vault.azure.net/secrets",
            50,
            |k| matches!(k, ErrorKind::VaultUrlExtra),
            "path",
        ),
        (
            "vault URL with user info",
            "db@azurekeyvault?vault=https://me@kv1.vault.azure.net",
            33,
            |k| matches!(k, ErrorKind::VaultUrlExtra),
            "user info",
        ),
        (
            "vault URL with a bad vault label",
            "db@azurekeyvault?vault=https://x.vault.azure.net",
            31,
            |k| matches!(k, ErrorKind::VaultNameLength { len: 1 }),
            "3 to 24",
        ),
        (
            "vault URL host too short",
            "db@azurekeyvault?vault=https://kv1.net",
            31,
            |k| matches!(k, ErrorKind::VaultUrlHost),
            "myvault.vault.azure.net",
        ),
        (
            "vault URL bad port",
            "db@azurekeyvault?vault=https://kv1.vault.azure.net:0",
            51,
            |k| matches!(k, ErrorKind::VaultUrlPort),
            "port",
        ),
        (
            "version too short",
            "db@azurekeyvault?version=abc",
            25,
            |k| matches!(k, ErrorKind::VersionLength { len: 3 }),
            "32 hex",
        ),
        (
            "version not hex",
            "db@azurekeyvault?version=0123456789abcdef0123456789abcdeg",
            56,
            |k| matches!(k, ErrorKind::VersionNotHex { .. }),
            "`g`",
        ),
        (
            "unknown type",
            "db@azurekeyvault?type=cert",
            22,
            |k| matches!(k, ErrorKind::UnknownType { .. }),
            "secret, certificate or key",
        ),
        (
            "unknown encoding",
            "db@azurekeyvault?encoding=hex",
            26,
            |k| matches!(k, ErrorKind::UnknownEncoding { .. }),
            "base64",
        ),
        (
            "unknown part",
            "db@azurekeyvault?type=certificate&part=pfx",
            39,
            |k| matches!(k, ErrorKind::UnknownPart { .. }),
            "cert, key or pem",
        ),
        (
            "part on a secret",
            "db@azurekeyvault?part=cert",
            17,
            |k| matches!(k, ErrorKind::NotForType { param: "part", .. }),
            "type=certificate",
        ),
        (
            "key on a certificate",
            "tls@azurekeyvault?type=certificate&key=x",
            35,
            |k| matches!(k, ErrorKind::NotForType { param: "key", .. }),
            "type=secret",
        ),
        (
            "encoding on a key",
            "k@azurekeyvault?encoding=base64&type=key",
            16,
            |k| {
                matches!(
                    k,
                    ErrorKind::NotForType {
                        param: "encoding",
                        ..
                    }
                )
            },
            "type=secret",
        ),
    ];
    for (case, input, offset, kind, message) in cases {
        assert!(is_placeholder(input), "{case}: is_placeholder");
        let err: ParseError = match parse(input) {
            Err(e) => e,
            Ok(other) => panic!("{case}: {input}: expected an error, got {other:?}"),
        };
        assert!(
            kind(&err.kind),
            "{case}: {input}: wrong kind {:?}",
            err.kind
        );
        assert_eq!(err.offset, offset, "{case}: {input}: offset of {err}");
        let text = err.to_string();
        assert!(
            text.contains(message),
            "{case}: message {text:?} lacks {message:?}"
        );
        assert!(
            text.ends_with(&format!("(at byte {offset})")),
            "{case}: {text}"
        );
    }
}

#[test]
fn error_messages_never_echo_json_keys() {
    // A `key=` token may be sensitive-looking; errors after it must not quote it.
    let err = parse("db@azurekeyvault?key=s3cr3t-token&type=key").unwrap_err();
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
}

#[test]
fn vault_parse_and_urls() {
    let cases = [
        ("kv1", "https://kv1.vault.azure.net", "kv1"),
        ("Prod-KV", "https://prod-kv.vault.azure.net", "Prod-KV"),
        (
            "https://kv1.vault.azure.cn",
            "https://kv1.vault.azure.cn",
            "kv1",
        ),
        (
            "https://kv2.vault.usgovcloudapi.net/",
            "https://kv2.vault.usgovcloudapi.net",
            "kv2",
        ),
        (
            "https://kv3.vault.azure.net:8443",
            "https://kv3.vault.azure.net:8443",
            "kv3",
        ),
    ];
    for (input, url, name) in cases {
        let vault = Vault::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(vault.url(), url, "{input}");
        assert_eq!(vault.name(), name, "{input}");
    }
    assert!(Vault::parse("ab").is_err());
    assert!(Vault::parse("ftp://kv1.vault.azure.net").is_err());
}

#[test]
fn display_is_canonical_and_reads_back() {
    let cases = [
        ("db@azurekeyvault", "db@azurekeyvault"),
        ("db@azurekeyvault?type=secret", "db@azurekeyvault"),
        ("tls@azurekeyvault?tls.crt", "tls@azurekeyvault?key=tls.crt"),
        (
            "t@azurekeyvault?part=cert&vault=kv1&type=certificate",
            "t@azurekeyvault?vault=kv1&type=certificate&part=cert",
        ),
        (
            "c@azurekeyvault?key=a%26b%25",
            "c@azurekeyvault?key=a%26b%25",
        ),
        (
            "c@azurekeyvault?vault=https%3A%2F%2Fkv1.vault.azure.cn%2F",
            "c@azurekeyvault?vault=https://kv1.vault.azure.cn",
        ),
    ];
    for (input, canonical) in cases {
        let r = parse(input).unwrap().unwrap();
        assert_eq!(r.to_string(), canonical, "{input}");
        assert_eq!(parse(canonical).unwrap().unwrap(), r, "{input}");
    }
}

#[test]
fn bare_names_take_the_clouds_suffix_and_urls_stay() {
    // (vault, suffix, url)
    let cases = [
        ("kv1", "vault.azure.net", "https://kv1.vault.azure.net"),
        ("kv1", "vault.azure.cn", "https://kv1.vault.azure.cn"),
        (
            "Prod-KV",
            "vault.usgovcloudapi.net",
            "https://prod-kv.vault.usgovcloudapi.net",
        ),
        (
            "kv1",
            ".Vault.Example.Test",
            "https://kv1.vault.example.test",
        ),
        (
            "https://kv1.vault.azure.net",
            "vault.azure.cn",
            "https://kv1.vault.azure.net",
        ),
        (
            "https://kv2.vault.azure.cn/",
            "vault.usgovcloudapi.net",
            "https://kv2.vault.azure.cn",
        ),
    ];
    for (input, suffix, url) in cases {
        let vault = Vault::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(vault.url_in(suffix), url, "{input} in {suffix}");
        assert_eq!(
            vault.in_suffix(suffix),
            Vault::Url(url.into()),
            "{input} in {suffix}"
        );
        assert_eq!(
            vault.in_suffix(suffix).name(),
            vault.name().to_ascii_lowercase(),
            "{input}"
        );
    }
}
