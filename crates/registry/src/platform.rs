//! Which manifest of a multi-platform image index a node would run.
//!
//! The choice is the node's (from the pod's `kubernetes.io/arch` selector), never the webhook's
//! own architecture. Variants follow containerd's matcher in the cases that matter: `arm64` means
//! `v8` when unset, `arm` means `v7`, and an `arm/v7` node also runs `v6` and `v5` images.

use std::fmt;
use std::str::FromStr;

/// An OS/architecture/variant triple as written in image indexes (`linux/arm64/v8`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/<architecture>`, the usual Kubernetes node.
    pub fn linux(architecture: &str) -> Self {
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    pub fn with_variant(mut self, variant: &str) -> Self {
        self.variant = Some(variant.into());
        self
    }
}

impl Default for Platform {
    /// `linux/amd64`: what the webhook assumes when a pod names no architecture.
    fn default() -> Self {
        Platform::linux("amd64")
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// Why a platform string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {input:?}: expected OS/ARCH or OS/ARCH/VARIANT, e.g. linux/arm64")]
pub struct PlatformParseError {
    input: String,
}

impl FromStr for Platform {
    type Err = PlatformParseError;

    /// `linux/amd64`, `linux/arm64/v8`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let valid = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(valid) {
            return Err(PlatformParseError { input: s.into() });
        }
        Ok(Platform {
            os: parts[0].into(),
            architecture: parts[1].into(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }
}

/// The variant a node of `architecture` has when none is stated.
fn default_variant(architecture: &str) -> Option<&'static str> {
    match architecture {
        "arm64" => Some("v8"),
        "arm" => Some("v7"),
        _ => None,
    }
}

/// Variants a node with `variant` can run, best first.
fn compatible_variants(architecture: &str, variant: &str) -> Vec<String> {
    match (architecture, variant) {
        ("arm", "v8") => vec!["v8", "v7", "v6", "v5"],
        ("arm", "v7") => vec!["v7", "v6", "v5"],
        ("arm", "v6") => vec!["v6", "v5"],
        _ => vec![variant],
    }
    .into_iter()
    .map(String::from)
    .collect()
}

/// The index of the entry `wanted` runs, or None. `offered` lists the platforms of an image
/// index's entries in order (None for an entry without a platform, e.g. an attestation).
pub fn choose(offered: &[Option<Platform>], wanted: &Platform) -> Option<usize> {
    let same_arch = |p: &Platform| p.os == wanted.os && p.architecture == wanted.architecture;
    let variant_of = |p: &Platform| {
        p.variant
            .clone()
            .or_else(|| default_variant(&p.architecture).map(String::from))
    };
    let candidates: Vec<(usize, &Platform)> = offered
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.as_ref().filter(|p| same_arch(p)).map(|p| (i, p)))
        .collect();
    match variant_of(wanted) {
        Some(want) => compatible_variants(&wanted.architecture, &want)
            .iter()
            .find_map(|v| {
                candidates
                    .iter()
                    .find(|(_, p)| variant_of(p).as_deref() == Some(v.as_str()))
            })
            .map(|(i, _)| *i),
        // No variant stated (amd64 etc.): prefer an entry without one, else the first.
        None => candidates
            .iter()
            .find(|(_, p)| p.variant.is_none())
            .or(candidates.first())
            .map(|(i, _)| *i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<Platform> {
        Some(s.parse().unwrap())
    }

    /// (case name, offered platforms, node platform, expected entry)
    type ChoiceCase<'a> = (
        &'static str,
        &'a [Option<Platform>],
        &'static str,
        Option<usize>,
    );

    #[test]
    fn chooses_the_nodes_platform() {
        let multi = vec![
            p("linux/amd64"),
            p("linux/arm64/v8"),
            p("linux/arm/v7"),
            p("linux/arm/v6"),
            None,
            p("windows/amd64"),
        ];
        let cases: &[ChoiceCase<'_>] = &[
            ("amd64", &multi, "linux/amd64", Some(0)),
            ("arm64 without variant", &multi, "linux/arm64", Some(1)),
            ("arm64 v8", &multi, "linux/arm64/v8", Some(1)),
            ("arm v7", &multi, "linux/arm/v7", Some(2)),
            ("arm default is v7", &multi, "linux/arm", Some(2)),
            ("arm v6", &multi, "linux/arm/v6", Some(3)),
            ("windows", &multi, "windows/amd64", Some(5)),
            ("absent arch", &multi, "linux/s390x", None),
            ("absent os", &multi, "darwin/amd64", None),
            (
                "arm64 entry without variant",
                &[p("linux/arm64")],
                "linux/arm64/v8",
                Some(0),
            ),
            (
                "arm64 v9 is not v8",
                &[p("linux/arm64/v8")],
                "linux/arm64/v9",
                None,
            ),
            (
                "arm v7 node runs v5",
                &[p("linux/arm/v5")],
                "linux/arm/v7",
                Some(0),
            ),
            (
                "arm v6 node cannot run v7",
                &[p("linux/arm/v7")],
                "linux/arm/v6",
                None,
            ),
            (
                "amd64 prefers plain",
                &[p("linux/amd64/v3"), p("linux/amd64")],
                "linux/amd64",
                Some(1),
            ),
            (
                "amd64 takes a variant if only one",
                &[p("linux/amd64/v2")],
                "linux/amd64",
                Some(0),
            ),
            (
                "amd64 v3 exact",
                &[p("linux/amd64"), p("linux/amd64/v3")],
                "linux/amd64/v3",
                Some(1),
            ),
            ("empty index", &[], "linux/amd64", None),
        ];
        for (name, offered, wanted, want) in cases {
            let wanted: Platform = wanted.parse().unwrap();
            assert_eq!(choose(offered, &wanted), *want, "case {name}");
        }
    }

    #[test]
    fn parses_and_prints_platforms() {
        let ok = [
            ("linux/amd64", Platform::linux("amd64")),
            (
                "linux/arm64/v8",
                Platform::linux("arm64").with_variant("v8"),
            ),
            (
                "windows/amd64",
                Platform {
                    os: "windows".into(),
                    architecture: "amd64".into(),
                    variant: None,
                },
            ),
        ];
        for (text, want) in ok {
            let got: Platform = text.parse().unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string(), text);
        }
        for bad in [
            "",
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/v8/x",
            "Linux/AMD64",
            "linux/am d64",
        ] {
            let err = bad.parse::<Platform>().expect_err(bad).to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}
