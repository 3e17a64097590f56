//! Test infrastructure the test crates share, written once: building the project's binaries
//! ([`cargo`]), a test CA ([`pki`]), the webhook binary as a process ([`webhook`]), looking
//! for leaked secret values in every encoded form ([`leak`]) and an HTTP CONNECT proxy that
//! records what it sees ([`proxy`]).

pub mod cargo;
pub mod leak;
pub mod pki;
pub mod pod;
pub mod proxy;
pub mod webhook;
