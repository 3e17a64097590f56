//! A network namespace of the test's own, for tests that need real addresses and ports (IMDS'
//! 169.254.169.254:80, a cloud's host on :443) with no other host reachable: `unshare
//! (CLONE_NEWNET)` on one thread, whose children inherit it. Needs root (CI runs as root) and
//! `ip` from iproute2 (scripts/setup.sh installs it).

use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::mpsc;

use nix::sched::{CloneFlags, unshare};

/// A thread living in the namespace: it bound the listeners and runs commands there on request.
pub struct NetNamespace {
    jobs: mpsc::Sender<(Command, mpsc::Sender<Output>)>,
}

impl NetNamespace {
    /// Enters a new network namespace with loopback up and `addresses` (CIDR) added to it, and
    /// returns it with a listener bound inside it for each of `binds`, in order.
    pub fn start<const N: usize>(
        addresses: &[&'static str],
        binds: [&'static str; N],
    ) -> (NetNamespace, [TcpListener; N]) {
        let euid = nix::unistd::geteuid();
        assert!(
            euid.is_root(),
            "this test needs root for a network namespace (uid {euid}); run it as CI does"
        );
        let addresses = addresses.to_vec();
        let (jobs, inbox) = mpsc::channel::<(Command, mpsc::Sender<Output>)>();
        let (ready, listeners) = mpsc::channel();
        std::thread::spawn(move || {
            unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
            let mut setup = vec![vec!["link", "set", "lo", "up"]];
            setup.extend(
                addresses
                    .iter()
                    .map(|a| vec!["addr", "add", a, "dev", "lo"]),
            );
            for args in setup {
                let status = Command::new("ip")
                    .args(&args)
                    .status()
                    .expect("ip (iproute2) runs; scripts/setup.sh installs it");
                assert!(status.success(), "ip {args:?}: {status}");
            }
            let bound = binds.map(|addr| {
                TcpListener::bind(addr)
                    .unwrap_or_else(|e| panic!("bind {addr} in the namespace: {e}"))
            });
            ready.send(bound).unwrap();
            for (mut command, reply) in inbox {
                let _ = reply.send(command.output().expect("the command starts"));
            }
        });
        let bound = listeners.recv().expect("the namespace thread is ready");
        (NetNamespace { jobs }, bound)
    }

    /// Runs `command` inside the namespace; blocks until it exits.
    pub fn run(&self, command: Command) -> Output {
        let (reply, output) = mpsc::channel();
        self.jobs.send((command, reply)).unwrap();
        output.recv().unwrap()
    }
}
