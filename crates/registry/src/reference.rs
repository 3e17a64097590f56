//! Image names read as the kubelet reads them: `docker.io`, `library/` and `:latest` filled in.

use oci_spec::distribution::Reference;

use crate::error::{LookupError, short};

/// Parses an image reference with the kubelet's defaults: `docker.io`, `library/`, `:latest`.
pub fn parse_reference(image: &str) -> Result<Reference, LookupError> {
    if image.trim().is_empty() {
        return Err(LookupError::InvalidReference {
            image: image.to_string(),
            reason: "it is empty".into(),
        });
    }
    // A hostile pod can carry a megabyte-long image name; the message quotes the start of it.
    let invalid = |reason: String| LookupError::InvalidReference {
        image: short(image),
        reason,
    };
    let reference = image
        .parse::<Reference>()
        .map_err(|e| invalid(short(&e.to_string())))?;
    // oci-spec accepts upper case here; Docker's grammar (and so the kubelet) does not.
    if reference
        .repository()
        .bytes()
        .any(|b| b.is_ascii_uppercase())
    {
        return Err(invalid("the repository name must be lowercase".into()));
    }
    Ok(reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_get_the_kubelets_defaults() {
        let cases = [
            (
                "busybox",
                "docker.io",
                "library/busybox",
                Some("latest"),
                None,
            ),
            (
                "nginx:1.27",
                "docker.io",
                "library/nginx",
                Some("1.27"),
                None,
            ),
            (
                "someone/app",
                "docker.io",
                "someone/app",
                Some("latest"),
                None,
            ),
            (
                "index.docker.io/someone/app:v1",
                "docker.io",
                "someone/app",
                Some("v1"),
                None,
            ),
            (
                "127.0.0.1:5000/team/app",
                "127.0.0.1:5000",
                "team/app",
                Some("latest"),
                None,
            ),
            ("localhost/app:dev", "localhost", "app", Some("dev"), None),
            (
                "myacr.azurecr.io/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "myacr.azurecr.io",
                "app",
                None,
                Some("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
            ),
        ];
        for (image, registry, repository, tag, digest) in cases {
            let r = parse_reference(image).unwrap_or_else(|e| panic!("{image}: {e}"));
            assert_eq!(
                (r.registry(), r.repository(), r.tag(), r.digest()),
                (registry, repository, tag, digest),
                "{image}"
            );
        }
        assert_eq!(
            parse_reference("busybox").unwrap().resolve_registry(),
            "index.docker.io"
        );
    }

    #[test]
    fn bad_references_name_the_image() {
        for image in [
            "",
            "  ",
            "UPPER/case",
            "app:bad tag",
            "app@sha256:short",
            "-leading/dash",
        ] {
            let err = parse_reference(image).expect_err(image);
            assert!(
                matches!(err, LookupError::InvalidReference { .. }),
                "{image}: {err:?}"
            );
            assert!(err.to_string().contains(&format!("{image:?}")), "{err}");
        }
    }
}
