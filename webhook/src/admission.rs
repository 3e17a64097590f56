//! One admission review in, one answer out: a thin edge around `akv-mutation`.
//!
//! The typed review (kube's admission types) says what is asked; the pod itself is taken from
//! the raw JSON the API server sent, so the patch is computed against exactly that.

use std::sync::Arc;
use std::time::{Duration, Instant};

use akv_mutation::{
    Mutation, NamespaceFacts, Skip, asks_for_managed_identity, needs_namespace_cloud,
    needs_namespace_vault, plan_in,
};
use base64::Engine;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use serde::Deserialize;
use serde_json::Value;

use crate::lookup::EntrypointSource;
use crate::metrics::{Metrics, Outcome};
use crate::namespaces::NamespaceSource;
use crate::pipeline;

/// Everything a review needs; shared by all requests.
pub struct Admitter {
    pub config: akv_mutation::Config,
    pub entrypoints: Arc<dyn EntrypointSource>,
    pub namespaces: Arc<dyn NamespaceSource>,
    pub metrics: Arc<Metrics>,
    /// Bound on the whole decision (namespace read, image lookups), well inside the API
    /// server's webhook timeout, so a hanging registry yields a clear refusal, not a timeout.
    pub timeout: Duration,
}

/// The HTTP answer: a review to send with 200, or a body that is not a review at all.
#[derive(Debug)]
pub enum Reply {
    Review(Value),
    BadRequest(String),
}

/// What the pure part decided, before it becomes a response.
enum Decision {
    Patch(Mutation),
    Skip(Skip, Vec<String>),
    Deny(String),
}

impl Admitter {
    pub async fn review(&self, body: &[u8]) -> Reply {
        let started = Instant::now();
        let (reply, outcome, wrapped) = self.answer(body).await;
        self.metrics.admission(outcome, started.elapsed(), wrapped);
        reply
    }

    async fn answer(&self, body: &[u8]) -> (Reply, Outcome, usize) {
        let mut value: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                self.metrics.error("bad_request");
                return (
                    Reply::BadRequest(format!("the request body is not JSON: {e}")),
                    Outcome::Invalid,
                    0,
                );
            }
        };
        // The objects are taken out before the typed read so they are not copied into it: the
        // decision uses the raw JSON, exactly as sent.
        let object = value
            .get_mut("request")
            .and_then(Value::as_object_mut)
            .map(|request| {
                request.remove("oldObject");
                request.remove("object")
            });
        let pod = object.flatten();
        let review = match AdmissionReview::<DynamicObject>::deserialize(&value) {
            Ok(r) => r,
            Err(e) => {
                self.metrics.error("bad_request");
                return (
                    Reply::BadRequest(format!("the request body is not an AdmissionReview: {e}")),
                    Outcome::Invalid,
                    0,
                );
            }
        };
        // kube echoes the request's kind and apiVersion into the answer, so a body claiming to be
        // something else would get an answer the API server cannot read (found by fuzzing).
        if review.types.kind != "AdmissionReview"
            || !matches!(
                review.types.api_version.as_str(),
                "admission.k8s.io/v1" | "admission.k8s.io/v1beta1"
            )
        {
            self.metrics.error("bad_request");
            return (
                Reply::BadRequest(format!(
                    "the request body is not an AdmissionReview: kind {:?}, apiVersion {:?} \
                     (want kind \"AdmissionReview\", apiVersion \"admission.k8s.io/v1\")",
                    review.types.kind, review.types.api_version
                )),
                Outcome::Invalid,
                0,
            );
        }
        let request: AdmissionRequest<DynamicObject> = match review.try_into() {
            Ok(r) => r,
            Err(_) => {
                self.metrics.error("bad_request");
                let response = AdmissionResponse::invalid("the AdmissionReview has no request");
                return (Reply::Review(encode(response)), Outcome::Invalid, 0);
            }
        };
        let response = AdmissionResponse::from(&request);
        let is_pod_create = request.kind.group.is_empty()
            && request.kind.kind == "Pod"
            && request.operation == Operation::Create
            && request
                .sub_resource
                .as_deref()
                .unwrap_or_default()
                .is_empty();
        let (true, Some(pod)) = (is_pod_create, pod.as_ref()) else {
            return (Reply::Review(encode(response)), Outcome::Ignored, 0);
        };
        let namespace = request
            .namespace
            .clone()
            .or_else(|| {
                pod.pointer("/metadata/namespace")?
                    .as_str()
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        let name = pod
            .pointer("/metadata/name")
            .or_else(|| pod.pointer("/metadata/generateName"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let uid = request.uid.as_str();

        let decision = match tokio::time::timeout(self.timeout, self.decide(pod, &namespace)).await
        {
            Ok(decision) => decision,
            Err(_) => {
                self.metrics.error("timeout");
                Decision::Deny(format!(
                    "akv-env: the mutation did not finish within {:?} (an image registry or the \
                     API server is slow); set `command` on containers with placeholders to avoid \
                     image lookups",
                    self.timeout
                ))
            }
        };
        match decision {
            Decision::Patch(mutation) => {
                let wrapped: Vec<String> =
                    mutation.wrapped.iter().map(ToString::to_string).collect();
                tracing::info!(
                    uid,
                    namespace,
                    pod = name,
                    ?wrapped,
                    dry_run = request.dry_run,
                    "pod mutated"
                );
                let count = wrapped.len();
                let mut response = match response.with_patch(mutation.patch) {
                    Ok(r) => r,
                    Err(e) => {
                        self.metrics.error("internal");
                        let denied = AdmissionResponse::from(&request)
                            .deny(format!("akv-env: cannot encode the patch: {e}"));
                        return (Reply::Review(encode(denied)), Outcome::Denied, 0);
                    }
                };
                if !mutation.warnings.is_empty() {
                    response.warnings = Some(mutation.warnings);
                }
                (Reply::Review(encode(response)), Outcome::Mutated, count)
            }
            Decision::Skip(skip, warnings) => {
                tracing::debug!(uid, namespace, pod = name, ?skip, "pod left alone");
                let mut response = response;
                if !warnings.is_empty() {
                    response.warnings = Some(warnings);
                }
                (Reply::Review(encode(response)), Outcome::Skipped, 0)
            }
            Decision::Deny(reason) => {
                tracing::info!(uid, namespace, pod = name, %reason, "pod refused");
                (
                    Reply::Review(encode(response.deny(reason))),
                    Outcome::Denied,
                    0,
                )
            }
        }
    }

    async fn decide(&self, pod: &Value, namespace: &str) -> Decision {
        let needs_cloud = needs_namespace_cloud(pod, &self.config.trust);
        let facts = if needs_namespace_vault(pod) || asks_for_managed_identity(pod) || needs_cloud {
            let facts = async {
                Ok::<_, String>(NamespaceFacts {
                    vault: self.namespaces.vault_annotation(namespace).await?,
                    allow_managed_identity: asks_for_managed_identity(pod)
                        && self.namespaces.allows_managed_identity(namespace).await?,
                    cloud: match needs_cloud {
                        true => self.namespaces.cloud_annotation(namespace).await?,
                        false => None,
                    },
                })
            };
            match facts.await {
                Ok(v) => v,
                Err(e) => {
                    self.metrics.error("namespace");
                    return Decision::Deny(format!(
                        "akv-env: {e}, so the default vault and whether managed identity is \
                         allowed are unknown; retry, or annotate the pod with akv-env.io/vault"
                    ));
                }
            }
        } else {
            NamespaceFacts::default()
        };
        let plan = match plan_in(pod, &facts, &self.config) {
            Ok(p) => p,
            Err(denial) => return Decision::Deny(denial.to_string()),
        };
        // Lookups read the pod's pull Secrets and ServiceAccount: only for namespaces that
        // opted in, whatever the review claims (`/mutate` answers anyone who reaches it).
        // The refusal says nothing about the Secrets named.
        let namespace_selected = || async {
            match self.namespaces.enabled(namespace).await {
                Ok(true) => Ok(()),
                Ok(false) => {
                    self.metrics.error("namespace_not_enabled");
                    Err(format!(
                        "akv-env: namespace {namespace} is not selected by the webhook's \
                         namespace selector ({}), so its images are not looked up",
                        self.namespaces.selector()
                    ))
                }
                Err(e) => {
                    self.metrics.error("namespace");
                    Err(format!(
                        "akv-env: {e}, so image lookups cannot be made; retry, or set `command` \
                         on containers with placeholders"
                    ))
                }
            }
        };
        match pipeline::mutate(&plan, namespace, &*self.entrypoints, namespace_selected).await {
            Ok(pipeline::Outcome::Mutated(mutation)) => Decision::Patch(mutation),
            Ok(pipeline::Outcome::Skipped(skip, warnings)) => Decision::Skip(skip, warnings),
            Err(refusal) => Decision::Deny(refusal),
        }
    }
}

/// The review as the API server expects it on the wire.
///
/// kube-core serialises `patch` as an array of numbers (kube-rs/kube#1781); the API server
/// wants the bytes as a base64 string, so the patch is taken out and put back encoded.
pub fn encode(mut response: AdmissionResponse) -> Value {
    let patch = response.patch.take();
    let mut review =
        serde_json::to_value(response.into_review()).expect("an AdmissionReview serialises");
    if let Some(bytes) = patch {
        review["response"]["patch"] =
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    review
}
