//! Pull-secret parsing and image references on arbitrary bytes: no panic, and what parses is
//! usable (lookups work, references print as text that parses to the same reference).
#![no_main]

use akv_registry::{DockerConfig, parse_reference};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for parsed in [
        DockerConfig::from_dockerconfigjson(data),
        DockerConfig::from_dockercfg(data),
    ] {
        match parsed {
            Ok(config) => {
                let _ = format!("{config:?}");
                for image in ["docker.io/library/nginx", "reg.example.com/team/app"] {
                    let _ = config.lookup(image);
                }
                let registries: Vec<String> =
                    config.registries().into_iter().map(str::to_owned).collect();
                for registry in registries {
                    let _ = config.lookup(&registry);
                }
            }
            Err(error) => {
                let _ = error.to_string();
            }
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_reference(text) {
        Ok(reference) => {
            let whole = reference.whole();
            let again = parse_reference(&whole)
                .unwrap_or_else(|e| panic!("{whole:?} (from {text:?}) does not parse back: {e}"));
            assert_eq!(again.whole(), whole, "round trip of {text:?}");
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
