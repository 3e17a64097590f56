//! Test support for the Helm chart: runs the real `helm` (fetched by `scripts/tools.sh`) and
//! `kubernetes-validate`, parses rendered manifests, and evaluates the chart's admission CEL.
pub mod cel_eval;
pub mod helm;
pub mod manifests;
pub mod values_doc;
