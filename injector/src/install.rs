//! `akv-env install DIR`: the init container's only job, with no shell and no `cp`.

use anyhow::{Context as _, Result};
use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write as _},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

/// Copies `source` to `dir/akv-env` atomically: write a temporary file in `dir`, fsync, set mode
/// 0755, rename over the target, fsync the directory. A reader never sees a partial binary.
pub fn install(source: &Path, dir: &Path) -> Result<(PathBuf, u64)> {
    let target = dir.join("akv-env");
    let tmp = dir.join(format!(".akv-env.tmp.{}", std::process::id()));
    let result = (|| -> Result<u64> {
        let mut from =
            File::open(source).with_context(|| format!("cannot read {}", source.display()))?;
        let mut to = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let n = io::copy(&mut from, &mut to)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        to.flush()?;
        // The umask may have cleared bits from the create mode.
        to.set_permissions(fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot chmod {}", tmp.display()))?;
        to.sync_all()
            .with_context(|| format!("cannot fsync {}", tmp.display()))?;
        fs::rename(&tmp, &target)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), target.display()))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot fsync {}", dir.display()))?;
        Ok(n)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|n| (target, n))
}

/// The cluster's CA bundle's file name in the install directory; the webhook points wrapped
/// containers' `--ca-file` at it.
pub const CA_BUNDLE_FILE: &str = "ca-bundle.pem";

/// Writes the cluster's CA bundle (`AKV_ENV_CA_BUNDLE`, set by the webhook on the init
/// container it adds) next to the binary, read-only, atomically like the binary. CAs are public:
/// nothing here is secret.
pub fn write_ca_bundle(dir: &Path, pem: &[u8]) -> Result<PathBuf> {
    let target = dir.join(CA_BUNDLE_FILE);
    let tmp = dir.join(format!(".{CA_BUNDLE_FILE}.tmp.{}", std::process::id()));
    let result = (|| -> Result<()> {
        let mut to = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        to.write_all(pem)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        to.set_permissions(fs::Permissions::from_mode(0o444))
            .with_context(|| format!("cannot chmod {}", tmp.display()))?;
        to.sync_all()
            .with_context(|| format!("cannot fsync {}", tmp.display()))?;
        fs::rename(&tmp, &target)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), target.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_bundle_is_written_read_only_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let target = write_ca_bundle(dir.path(), pem).unwrap();
        assert_eq!(target, dir.path().join("ca-bundle.pem"));
        assert_eq!(fs::read(&target).unwrap(), pem);
        assert_eq!(
            fs::metadata(&target).unwrap().permissions().mode() & 0o7777,
            0o444
        );
        write_ca_bundle(dir.path(), b"second").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"second");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn installs_a_copy_with_mode_0755_and_replaces_an_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src-bin");
        fs::write(&src, b"\x7fELF new binary").unwrap();
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("akv-env"), b"old").unwrap();
        let (target, n) = install(&src, &out).unwrap();
        assert_eq!(target, out.join("akv-env"));
        assert_eq!(n, 15);
        assert_eq!(fs::read(&target).unwrap(), b"\x7fELF new binary");
        assert_eq!(
            fs::metadata(&target).unwrap().permissions().mode() & 0o7777,
            0o755
        );
        let names: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["akv-env"], "no temporary file left behind");
    }

    #[test]
    fn a_missing_directory_is_named_and_nothing_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src-bin");
        fs::write(&src, b"x").unwrap();
        let err = install(&src, &dir.path().join("nope")).unwrap_err();
        assert!(format!("{err:#}").contains("nope/.akv-env.tmp."), "{err:#}");
    }
}
