//! The application under test: an unmodified image whose program exists only as the image
//! config's ENTRYPOINT/CMD, and which knows nothing of Key Vault.

use crate::error::Result;
use crate::image::ImageBuilder;

/// `/app/run.sh`: reports how it was started (pid, user, dir, argv) and the variables named in
/// `SHOW_VARS`, one `env NAME=value` line each, on stdout. With `HASH_VALUES` set, every argument
/// and every set variable is shown as `sha256:<hex>` of its bytes instead, so its output can be
/// checked for exact strings and still be searched for leaks. It writes nothing to disk.
pub const APP_SCRIPT: &str = r#"#!/bin/sh
hash() { h=$(printf '%s' "$1" | sha256sum); echo "sha256:${h%% *}"; }
echo "app: pid=$$ uid=$(id -u) gid=$(id -g) cwd=$(pwd)"
printf 'app: args:'
for a in "$@"; do
  if [ -n "$HASH_VALUES" ]; then a=$(hash "$a"); fi
  printf ' [%s]' "$a"
done
echo
for name in $SHOW_VARS; do
  eval "value=\${$name-<unset>}"
  if [ -n "$HASH_VALUES" ] && eval "[ -n \"\${$name+set}\" ]"; then value=$(hash "$value"); fi
  echo "env $name=$value"
done
"#;

/// What the app prints for `value` with `HASH_VALUES` set.
pub fn hashed(value: &str) -> String {
    use sha2::Digest as _;
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(value.as_bytes()))
    )
}

/// ENTRYPOINT of the app image.
pub const APP_ENTRYPOINT: &[&str] = &["/app/run.sh"];
/// CMD of the app image.
pub const APP_CMD: &[&str] = &["serve", "--port=8080"];

/// busybox + `/app/run.sh`, ENTRYPOINT/CMD above, user 1000, working dir /app.
pub fn app_image() -> Result<ImageBuilder> {
    Ok(ImageBuilder::busybox()?
        .file("/app/run.sh", APP_SCRIPT.as_bytes(), 0o755)
        .entrypoint(APP_ENTRYPOINT)
        .cmd(APP_CMD)
        .env("LANG=C.UTF-8")
        .working_dir("/app")
        .user("1000:1000"))
}
