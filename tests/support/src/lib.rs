//! Test infrastructure the test crates share, written once: building the project's binaries
//! ([`cargo`]), a test CA ([`pki`]), the webhook binary as a process ([`webhook`]) and looking
//! for leaked secret values in every encoded form ([`leak`]).

pub mod cargo;
pub mod leak;
pub mod pki;
pub mod webhook;
