//! What one client can make the webhook hold, and for how long. With `failurePolicy: Fail` the
//! webhook's availability decides whether pods can be created, so no client (slow, idle or
//! sending many large bodies) may tie it up: every connection, request head, body and idle
//! period has a deadline, and open connections, bytes of bodies in memory and reviews being
//! decided are capped. Past a cap the webhook answers at once (503) instead of queueing past the
//! API server's timeout.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use futures::StreamExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The bounds; flags with the same names set them.
#[derive(Debug, Clone)]
pub struct Limits {
    /// TLS handshake, and each request head (also how long an HTTP/1.1 connection may wait
    /// between requests).
    pub header_timeout: Duration,
    /// Reading one request body.
    pub body_timeout: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/2: GOAWAY).
    pub idle_timeout: Duration,
    /// HTTP/2 keep-alive pings; a peer that does not answer one within this time is dropped.
    pub keepalive_interval: Duration,
    /// Open connections on the HTTPS port; more are closed on accept.
    pub max_connections: usize,
    /// Open connections on the health/metrics port.
    pub health_max_connections: usize,
    /// Reviews being decided at once; more get 503.
    pub max_reviews: usize,
    /// Bytes of request bodies held in memory at once, all connections together; a body that
    /// would go past it gets 503.
    pub body_memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(90),
            keepalive_interval: Duration::from_secs(30),
            max_connections: 1000,
            health_max_connections: 64,
            max_reviews: 64,
            body_memory: 64 * 1024 * 1024,
        }
    }
}

/// Why a request was not read or not decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The body is larger than the per-request limit (413).
    TooLarge { limit: usize },
    /// The body did not arrive within the body timeout (408).
    TooSlow,
    /// The body could not be read (400).
    Broken(String),
    /// A shared cap is reached (503): `what` says which.
    Overloaded { what: &'static str },
}

/// Shared caps on bodies in memory and reviews in flight.
///
/// Body memory comes from two pools: the first [`SMALL_BODY`] bytes of every body from a pool
/// of their own, the rest from the large pool. A flood of maximum-size bodies can exhaust the
/// large pool, but ordinary reviews (a few KiB) keep being read.
#[derive(Debug, Clone)]
pub struct Gate {
    /// Units of [`UNIT`] bytes: the first [`SMALL_BODY`] bytes of each body.
    small: Arc<Semaphore>,
    /// Units of [`UNIT`] bytes: what bodies hold beyond that.
    memory: Arc<Semaphore>,
    reviews: Arc<Semaphore>,
    body_limit: usize,
    body_timeout: Duration,
}

/// Bytes per memory permit.
const UNIT: usize = 1024;
/// Bodies up to this size are read from the small pool alone.
pub const SMALL_BODY: usize = 64 * 1024;

/// Holds a share of the body memory and a review slot while the review is decided.
#[derive(Debug)]
pub struct Held {
    _memory: Charge,
    _review: OwnedSemaphorePermit,
}

/// Memory permits taken so far for one body.
#[derive(Debug, Default)]
struct Charge {
    small: Option<OwnedSemaphorePermit>,
    large: Option<OwnedSemaphorePermit>,
}

impl Charge {
    fn units(permit: &Option<OwnedSemaphorePermit>) -> usize {
        permit.as_ref().map_or(0, OwnedSemaphorePermit::num_permits)
    }

    /// Takes more permits so `bytes` are covered, or fails at once. A body past
    /// [`SMALL_BODY`] moves to the large pool entirely, so large bodies never hold the small
    /// pool for longer than their first bytes take to arrive.
    fn cover(&mut self, gate: &Gate, bytes: usize) -> Result<(), Refusal> {
        let units = bytes.div_ceil(UNIT);
        let (pool, permit, what) = if units <= SMALL_BODY / UNIT {
            (
                &gate.small,
                &mut self.small,
                "small request bodies in memory",
            )
        } else {
            (&gate.memory, &mut self.large, "request bodies in memory")
        };
        let have = Self::units(permit);
        if units > have {
            let more = u32::try_from(units - have).unwrap_or(u32::MAX);
            let taken = pool
                .clone()
                .try_acquire_many_owned(more)
                .map_err(|_| Refusal::Overloaded { what })?;
            match permit {
                Some(p) => p.merge(taken),
                None => *permit = Some(taken),
            }
        }
        if self.large.is_some() {
            self.small = None;
        }
        Ok(())
    }
}

impl Gate {
    pub fn new(limits: &Limits, body_limit: usize) -> Self {
        // Room for the first bytes of every body that can be read at once (one per connection),
        // up to a quarter of the large pool.
        let small = (limits.body_memory / 4).min(limits.max_connections * SMALL_BODY);
        Gate {
            small: Arc::new(Semaphore::new(small.max(SMALL_BODY).div_ceil(UNIT))),
            memory: Arc::new(Semaphore::new(limits.body_memory.div_ceil(UNIT))),
            reviews: Arc::new(Semaphore::new(limits.max_reviews)),
            body_limit,
            body_timeout: limits.body_timeout,
        }
    }

    /// Reviews being decided now.
    pub fn reviews_in_flight(&self, max_reviews: usize) -> usize {
        max_reviews - self.reviews.available_permits()
    }

    /// Reads a body within the deadline, charging the memory it takes as it arrives (so a
    /// client trickling a body holds only what it sent), then takes a review slot.
    pub async fn admit(&self, declared: Option<u64>, body: Body) -> Result<(Bytes, Held), Refusal> {
        if declared.is_some_and(|n| n > self.body_limit as u64) {
            return Err(Refusal::TooLarge {
                limit: self.body_limit,
            });
        }
        let (bytes, memory) = tokio::time::timeout(self.body_timeout, self.read(body))
            .await
            .map_err(|_| Refusal::TooSlow)??;
        let review = self
            .reviews
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Overloaded {
                what: "reviews in flight",
            })?;
        Ok((
            bytes,
            Held {
                _memory: memory,
                _review: review,
            },
        ))
    }

    async fn read(&self, body: Body) -> Result<(Bytes, Charge), Refusal> {
        let mut stream = body.into_data_stream();
        let mut buffer: Vec<u8> = Vec::new();
        let mut charge = Charge::default();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Refusal::Broken(e.to_string()))?;
            if buffer.len() + chunk.len() > self.body_limit {
                return Err(Refusal::TooLarge {
                    limit: self.body_limit,
                });
            }
            buffer.reserve(chunk.len());
            // Charge what is allocated, not only what arrived.
            charge.cover(self, buffer.capacity())?;
            buffer.extend_from_slice(&chunk);
        }
        Ok((Bytes::from(buffer), charge))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(body_memory: usize, max_reviews: usize) -> Gate {
        let limits = Limits {
            body_memory,
            max_reviews,
            body_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        Gate::new(&limits, 100_000)
    }

    #[tokio::test]
    async fn bodies_and_reviews_are_capped() {
        let gate = gate(256 * 1024, 2);
        let body = || Body::from(vec![b'x'; 5000]);
        assert_eq!(
            gate.small.available_permits(),
            64,
            "at least one small body"
        );
        // Too large, by declaration and by what arrives.
        assert_eq!(
            gate.admit(Some(100_001), body()).await.unwrap_err(),
            Refusal::TooLarge { limit: 100_000 }
        );
        assert_eq!(
            gate.admit(None, Body::from(vec![0; 100_001]))
                .await
                .unwrap_err(),
            Refusal::TooLarge { limit: 100_000 }
        );
        // Two reviews fit, a third is shed while they are held.
        let first = gate.admit(Some(5000), body()).await.unwrap();
        let second = gate.admit(Some(5000), body()).await.unwrap();
        assert_eq!(first.0.len(), 5000);
        assert_eq!(gate.reviews_in_flight(2), 2);
        assert_eq!(
            gate.admit(Some(5000), body()).await.unwrap_err(),
            Refusal::Overloaded {
                what: "reviews in flight"
            }
        );
        // The small pool (64 KiB): two held 5000-byte bodies leave room for 54 KiB.
        assert_eq!(
            gate.admit(None, Body::from(vec![0; 56 * 1024]))
                .await
                .unwrap_err(),
            Refusal::Overloaded {
                what: "small request bodies in memory"
            }
        );
        drop((first, second));
        assert_eq!(gate.reviews_in_flight(2), 0, "permits come back on drop");
        assert_eq!(gate.small.available_permits(), 64);
    }

    #[tokio::test]
    async fn large_bodies_cannot_starve_small_ones() {
        let limits = Limits {
            body_memory: 256 * 1024,
            max_reviews: 10,
            ..Limits::default()
        };
        let gate = Gate::new(&limits, 1 << 20);
        // One 200 KiB body takes most of the large pool, and none of the small one.
        let big = gate
            .admit(None, Body::from(vec![0; 200 * 1024]))
            .await
            .unwrap();
        assert_eq!(gate.memory.available_permits(), 256 - 200);
        assert_eq!(gate.small.available_permits(), 64);
        let shed = gate.admit(None, Body::from(vec![0; 200 * 1024])).await;
        assert_eq!(
            shed.unwrap_err(),
            Refusal::Overloaded {
                what: "request bodies in memory"
            }
        );
        let small = gate.admit(None, Body::from(vec![0; 4000])).await.unwrap();
        assert_eq!(small.0.len(), 4000);
        drop((big, small));
        assert_eq!(gate.memory.available_permits(), 256);
    }

    #[tokio::test]
    async fn a_body_that_never_ends_times_out() {
        let gate = gate(1 << 20, 2);
        let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        tx.try_send(Ok(Bytes::from_static(b"{"))).unwrap();
        let body = Body::from_stream(rx);
        assert_eq!(gate.admit(None, body).await.unwrap_err(), Refusal::TooSlow);
        drop(tx);
        assert_eq!(gate.small.available_permits(), 256, "memory returned");
    }
}
