//! Prometheus metrics on the health port: admissions by outcome, latency, containers wrapped,
//! image lookups and their cache, errors.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::lookup::EntrypointSource;

/// How one admission review ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A pod was patched.
    Mutated,
    /// A pod in scope was left alone (opted out, already mutated, no placeholders).
    Skipped,
    /// Not a pod CREATE: allowed without looking.
    Ignored,
    /// Refused with a reason.
    Denied,
    /// The review itself could not be read.
    Invalid,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Mutated => "mutated",
            Outcome::Skipped => "skipped",
            Outcome::Ignored => "ignored",
            Outcome::Denied => "denied",
            Outcome::Invalid => "invalid",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PortLabels {
    port: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    kind: &'static str,
}

pub struct Metrics {
    registry: Registry,
    admissions: Family<OutcomeLabels, Counter>,
    latency: Histogram,
    wrapped: Counter,
    errors: Family<ErrorLabels, Counter>,
    connections: Family<PortLabels, Gauge>,
    in_flight: Gauge,
}

/// Counts one open connection (or review in flight) until dropped.
#[derive(Debug)]
pub struct OpenGuard(Gauge);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    pub fn new(lookups: Arc<dyn EntrypointSource>) -> Self {
        let mut registry = Registry::with_prefix("akv_env_webhook");
        let admissions = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "admissions",
            "Admission reviews answered, by outcome",
            admissions.clone(),
        );
        let latency = Histogram::new([
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register(
            "admission_duration_seconds",
            "Time to answer an admission review",
            latency.clone(),
        );
        let wrapped = Counter::default();
        registry.register(
            "containers_wrapped",
            "Containers and init containers wrapped with the injector",
            wrapped.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "errors",
            "Errors while answering reviews, by kind",
            errors.clone(),
        );
        let connections = Family::<PortLabels, Gauge>::default();
        registry.register(
            "open_connections",
            "Connections open now, by port (https, health)",
            connections.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "reviews_in_flight",
            "Reviews being decided now",
            in_flight.clone(),
        );
        registry.register_collector(Box::new(LookupCollector(lookups)));
        Metrics {
            registry,
            admissions,
            latency,
            wrapped,
            errors,
            connections,
            in_flight,
        }
    }

    pub fn admission(&self, outcome: Outcome, took: Duration, wrapped: usize) {
        self.admissions
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc();
        self.latency.observe(took.as_secs_f64());
        self.wrapped.inc_by(wrapped as u64);
    }

    /// One more open connection on `port` until the guard is dropped.
    pub fn open_connections(&self, port: &'static str) -> OpenGuard {
        let gauge = self.connections.get_or_create(&PortLabels { port }).clone();
        gauge.inc();
        OpenGuard(gauge)
    }

    /// One more review in flight until the guard is dropped.
    pub fn review_started(&self) -> OpenGuard {
        self.in_flight.inc();
        OpenGuard(self.in_flight.clone())
    }

    /// `kind`: a short fixed word, e.g. `timeout`, `namespace`, `bad_request`, `shed_review`.
    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&ErrorLabels { kind }).inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Reads the lookup source's counters at scrape time (the registry prefixes the names).
struct LookupCollector(Arc<dyn EntrypointSource>);

impl std::fmt::Debug for LookupCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LookupCollector")
    }
}

impl Collector for LookupCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        for (name, help, value) in [
            ("image_lookups", "Image entrypoint lookups", stats.lookups),
            (
                "image_cache_hits",
                "Lookups answered from the cache",
                stats.hits,
            ),
            (
                "image_cache_misses",
                "Lookups that went to a registry",
                stats.misses,
            ),
            ("image_lookup_errors", "Lookups that failed", stats.errors),
        ] {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}
