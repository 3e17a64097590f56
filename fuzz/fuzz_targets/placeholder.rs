//! The placeholder grammar on arbitrary bytes: the cheap test agrees with the parser, nothing
//! panics, and every reference that parses prints as text that parses back to it.
#![no_main]

use akv_placeholder::{Vault, is_placeholder, is_placeholder_bytes, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let quick = is_placeholder_bytes(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    assert_eq!(quick, is_placeholder(text), "str and bytes tests disagree");
    match parse(text) {
        // `Ok(None)` exactly when the cheap test says "not a placeholder".
        Ok(None) => assert!(!quick, "a placeholder was parsed as plain text"),
        Ok(Some(reference)) => {
            assert!(quick, "plain text was parsed as a placeholder");
            let canonical = reference.to_string();
            let again = parse(&canonical)
                .unwrap_or_else(|e| panic!("{canonical:?} does not parse back: {e}"))
                .unwrap_or_else(|| panic!("{canonical:?} is not a placeholder"));
            assert_eq!(again, reference, "round trip of {canonical:?}");
            assert_eq!(again.to_string(), canonical, "Display is not canonical");
        }
        Err(error) => {
            assert!(quick, "plain text was refused");
            // The message must be printable (it ends up in an admission denial).
            let _ = error.to_string();
        }
    }
    if let Ok(vault) = Vault::parse(text) {
        let printed = vault.to_string();
        assert_eq!(
            Vault::parse(&printed).ok(),
            Some(vault.clone()),
            "{printed:?}"
        );
        let _ = (vault.url(), vault.name());
    }
});
