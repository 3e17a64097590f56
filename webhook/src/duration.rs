//! Duration flags and env vars read in Go's grammar (`500ms`, `4s`, `1.5h`, `1h30m`), the one the
//! chart's values are written in: the parser is the shared `akv-duration` crate, so the webhook,
//! the injector and the chart's schema agree on what a duration is.

pub use akv_duration::parse as parse_duration;
