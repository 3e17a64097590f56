//! Inputs found by `scripts/fuzz.sh` (target `placeholder`) that once crashed the grammar.
//! Each row: the input, and the error expected instead of a panic.

use akv_placeholder::{ErrorKind, Vault, parse};

/// `Vault::parse` sliced the first 8 bytes to compare with `https://`; when byte 8 fell inside
/// a multi-byte character (and the text held `://`) it panicked. The webhook calls it on pod
/// and namespace annotations and `vault=` parameters, so one annotation crashed a review.
#[test]
fn vault_urls_with_a_multibyte_character_across_the_scheme_boundary() {
    let cases = [
        ("fuzz crash d0410bf2", "hQ\0aut&\u{6a7}.azs://my"),
        (
            "2-byte char at bytes 7..9",
            "abcdefg\u{e9}://kv.vault.azure.net",
        ),
        (
            "3-byte char at bytes 6..9",
            "abcdef\u{20ac}://kv.vault.azure.net",
        ),
        (
            "4-byte char at bytes 5..9",
            "abcde\u{1f600}://kv.vault.azure.net",
        ),
        (
            "char in the scheme itself",
            "http\u{e9}://kv.vault.azure.net",
        ),
        ("short, multibyte", "\u{e9}://"),
    ];
    for (case, input) in cases {
        let error = Vault::parse(input).expect_err(case);
        assert_eq!(error.kind, ErrorKind::VaultUrlScheme, "{case}");
        assert_eq!(error.offset, 0, "{case}");

        // The same text as a placeholder's `vault=` parameter is refused, not a panic (the
        // fuzz input holds `&`, which ends the parameter, so only the refusal is asserted).
        let placeholder = format!("db@azurekeyvault?vault={input}");
        assert!(parse(&placeholder).is_err(), "{case} in a placeholder");
    }
    // The boundary case that must still work: an upper-case scheme.
    assert_eq!(
        Vault::parse("HTTPS://prod-kv.vault.azure.net").unwrap(),
        Vault::Url("https://prod-kv.vault.azure.net".into())
    );
}
