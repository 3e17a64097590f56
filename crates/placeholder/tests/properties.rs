//! Property tests: the parser never panics, agrees with the fast check, and `Display` is its
//! inverse on well-formed references.

use akv_placeholder::{
    CertPart, Encoding, ObjectKind, Reference, Vault, is_placeholder, is_placeholder_bytes, parse,
};
use proptest::prelude::*;

fn vault() -> impl Strategy<Value = Vault> {
    prop_oneof![
        "[A-Za-z][0-9A-Za-z-]{2,23}".prop_map(Vault::Name),
        (
            "[a-z][0-9a-z-]{2,23}",
            prop_oneof![
                Just("vault.azure.net"),
                Just("vault.azure.cn"),
                Just("vault.usgovcloudapi.net")
            ],
            proptest::option::of(1024u16..65535),
        )
            .prop_map(|(name, domain, port)| Vault::Url(match port {
                Some(port) => format!("https://{name}.{domain}:{port}"),
                None => format!("https://{name}.{domain}"),
            })),
    ]
}

fn reference() -> impl Strategy<Value = Reference> {
    let kind = prop_oneof![
        Just(ObjectKind::Secret),
        Just(ObjectKind::Certificate),
        Just(ObjectKind::Key)
    ];
    (
        "[0-9A-Za-z-]{1,127}",
        proptest::option::of(vault()),
        kind,
        proptest::option::of("[0-9a-fA-F]{32}"),
        proptest::option::of("\\PC{1,24}"),
        any::<bool>(),
        proptest::option::of(prop_oneof![
            Just(CertPart::Cert),
            Just(CertPart::Key),
            Just(CertPart::Pem)
        ]),
    )
        .prop_map(|(name, vault, kind, version, json_key, base64, part)| {
            // Only combinations the grammar accepts: key/encoding for secrets, part for certificates.
            let secret = kind == ObjectKind::Secret;
            Reference {
                name,
                vault,
                kind,
                version,
                json_key: json_key.filter(|_| secret),
                encoding: (secret && base64).then_some(Encoding::Base64),
                part: part.filter(|_| kind == ObjectKind::Certificate),
            }
        })
}

/// Strings close to the grammar, so the parser's deeper branches are explored, not only the
/// "not a placeholder" exit.
fn near_placeholder() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_@&=%.:/ -]{0,40}@azurekeyvault(\\?[a-zA-Z0-9@?&=%.:/ -]{0,60})?"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_strings_never_panic_and_agree_with_the_fast_check(s in any::<String>()) {
        let parsed = parse(&s);
        prop_assert_eq!(is_placeholder(&s), !matches!(parsed, Ok(None)));
        prop_assert_eq!(is_placeholder(&s), is_placeholder_bytes(s.as_bytes()));
    }

    #[test]
    fn near_placeholders_never_panic(s in near_placeholder()) {
        prop_assert!(is_placeholder(&s));
        match parse(&s) {
            Ok(Some(r)) => prop_assert_eq!(parse(&r.to_string()), Ok(Some(r.clone()))),
            Ok(None) => prop_assert!(false, "a placeholder parsed as a plain value"),
            Err(e) => prop_assert!(e.offset <= s.len(), "offset {} past the end", e.offset),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = is_placeholder_bytes(&b);
    }

    #[test]
    fn formatting_a_reference_parses_back_to_it(r in reference()) {
        let text = r.to_string();
        prop_assert!(is_placeholder(&text), "{}", text);
        prop_assert_eq!(parse(&text), Ok(Some(r)));
    }
}
