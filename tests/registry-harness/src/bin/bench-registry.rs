//! The benchmark's fixtures, made the way the tests make them: a Debian docker-registry on
//! loopback holding one image (ENTRYPOINT/CMD of nginx's), and a test CA with a leaf for
//! localhost for the webhook to serve. Writes `ca.crt`, `tls.crt`, `tls.key` and an `env` file
//! (`REGISTRY=host:port`, `IMAGE=host:port/bench/nginx:1`) into the directory given, last, and
//! keeps the registry running until it is killed. Used by `scripts/bench-webhook.sh`.

use std::path::PathBuf;

use akv_test_support::pki::TestCa;
use clap::Parser;
use registry_harness::{ImageSpec, TestRegistry};

#[derive(Parser)]
struct Args {
    /// Where to write the certificates and the `env` file.
    dir: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let registry = TestRegistry::start()?;
    let image = ImageSpec::linux("amd64")
        .entrypoint(&["/docker-entrypoint.sh"])
        .cmd(&["nginx", "-g", "daemon off;"]);
    registry.push(&image, "bench/nginx:1")?;
    let ca = TestCa::new("akv-env bench CA");
    let (cert, key) = ca.leaf();
    std::fs::write(args.dir.join("ca.crt"), ca.pem())?;
    std::fs::write(args.dir.join("tls.crt"), cert)?;
    std::fs::write(args.dir.join("tls.key"), key)?;
    // Written last and renamed into place: its presence means everything above is ready.
    let env = format!(
        "REGISTRY={}\nIMAGE={}\n",
        registry.host(),
        registry.image("bench/nginx:1")
    );
    let tmp = args.dir.join("env.tmp");
    std::fs::write(&tmp, env)?;
    std::fs::rename(&tmp, args.dir.join("env"))?;
    loop {
        std::thread::park();
    }
}
