//! One admission review in, one answer out: a thin edge around `akv-mutation`.
//!
//! The typed review (kube's admission types) says what is asked; the pod itself is taken from
//! the raw JSON the API server sent, so the patch is computed against exactly that.

use std::sync::Arc;
use std::time::{Duration, Instant};

use akv_mutation::{
    ContainerRef, NamespaceFacts, asks_for_managed_identity, needs_namespace_cloud,
    needs_namespace_vault, plan_in,
};
use base64::Engine;
use kube::core::DynamicObject;
use kube::core::TypeMeta;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use serde::{Deserialize, Serialize};
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
    /// The review's JSON.
    Review(Vec<u8>),
    BadRequest(String),
}

/// What one review came to: the reply, and what the metrics count.
struct Answer {
    reply: Reply,
    outcome: Outcome,
    /// Containers wrapped (0 unless mutated).
    wrapped: usize,
}

impl Answer {
    fn review(response: AdmissionResponse, outcome: Outcome) -> Answer {
        Answer {
            reply: Reply::Review(encode(response)),
            outcome,
            wrapped: 0,
        }
    }
}

/// Containers as the log shows them (`["container \"app\"", ...]`), formatted only when the
/// line is written.
struct Named<'a>(&'a [ContainerRef]);

impl std::fmt::Debug for Named<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(ToString::to_string))
            .finish()
    }
}

/// The pod a review is about, named for the logs.
struct Subject<'a> {
    uid: &'a str,
    namespace: String,
    name: &'a str,
    dry_run: bool,
}

impl<'a> Subject<'a> {
    fn of(request: &'a AdmissionRequest<DynamicObject>, pod: &'a Value) -> Subject<'a> {
        let namespace = request
            .namespace
            .clone()
            .or_else(|| {
                pod.get("metadata")?
                    .get("namespace")?
                    .as_str()
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        let metadata = pod.get("metadata");
        let name = metadata
            .and_then(|m| m.get("name"))
            .or_else(|| metadata?.get("generateName"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        Subject {
            uid: request.uid.as_str(),
            namespace,
            name,
            dry_run: request.dry_run,
        }
    }
}

impl Admitter {
    pub async fn review(&self, body: &[u8]) -> Reply {
        let started = Instant::now();
        let answer = self.answer(body).await;
        self.metrics
            .admission(answer.outcome, started.elapsed(), answer.wrapped);
        answer.reply
    }

    /// Decode, decide, encode.
    async fn answer(&self, body: &[u8]) -> Answer {
        let (request, pod) = match decode(body) {
            Ok(decoded) => decoded,
            Err(answer) => {
                self.metrics.error("bad_request");
                return answer;
            }
        };
        let response = AdmissionResponse::from(&request);
        let pod = pod.filter(|_| is_pod_create(&request));
        let Some(pod) = pod.as_ref() else {
            return Answer::review(response, Outcome::Ignored);
        };
        let subject = Subject::of(&request, pod);
        let decision = match tokio::time::timeout(
            self.timeout,
            self.decide(pod, &subject.namespace),
        )
        .await
        {
            Ok(decision) => decision,
            Err(_) => {
                self.metrics.error("timeout");
                Err(format!(
                    "akv-env: the mutation did not finish within {:?} (an image registry or the \
                     API server is slow); set `command` on containers with placeholders to avoid \
                     image lookups",
                    self.timeout
                ))
            }
        };
        self.respond(response, decision, &subject)
    }

    /// The decision as a response, logged once.
    fn respond(
        &self,
        mut response: AdmissionResponse,
        decision: Result<pipeline::Outcome, String>,
        subject: &Subject<'_>,
    ) -> Answer {
        let Subject {
            uid,
            namespace,
            name,
            dry_run,
        } = subject;
        match decision {
            Ok(pipeline::Outcome::Mutated(mutation)) => {
                let denied_instead = response.clone();
                let mut response = match response.with_patch(mutation.patch) {
                    Ok(r) => r,
                    Err(e) => {
                        self.metrics.error("internal");
                        let denied =
                            denied_instead.deny(format!("akv-env: cannot encode the patch: {e}"));
                        return Answer::review(denied, Outcome::Denied);
                    }
                };
                let wrapped = Named(&mutation.wrapped);
                tracing::info!(uid, namespace, pod = name, ?wrapped, dry_run, "pod mutated");
                if !mutation.warnings.is_empty() {
                    response.warnings = Some(mutation.warnings);
                }
                Answer {
                    wrapped: mutation.wrapped.len(),
                    ..Answer::review(response, Outcome::Mutated)
                }
            }
            Ok(pipeline::Outcome::Skipped(skip, warnings)) => {
                tracing::debug!(uid, namespace, pod = name, ?skip, "pod left alone");
                if !warnings.is_empty() {
                    response.warnings = Some(warnings);
                }
                Answer::review(response, Outcome::Skipped)
            }
            Err(reason) => {
                tracing::info!(uid, namespace, pod = name, %reason, "pod refused");
                Answer::review(response.deny(reason), Outcome::Denied)
            }
        }
    }

    /// Namespace facts -> plan -> the shared pipeline. Err is the refusal.
    async fn decide(&self, pod: &Value, namespace: &str) -> Result<pipeline::Outcome, String> {
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
            facts.await.map_err(|e| {
                self.metrics.error("namespace");
                format!(
                    "akv-env: {e}, so the default vault and whether managed identity is \
                     allowed are unknown; retry, or annotate the pod with akv-env.io/vault"
                )
            })?
        } else {
            NamespaceFacts::default()
        };
        let plan = plan_in(pod, &facts, &self.config).map_err(|denial| denial.to_string())?;
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
        pipeline::mutate(&plan, namespace, &*self.entrypoints, namespace_selected).await
    }
}

/// The request and the pod (raw JSON, exactly as sent), or the answer to a body that is not a
/// usable review.
fn decode(body: &[u8]) -> Result<(AdmissionRequest<DynamicObject>, Option<Value>), Answer> {
    let bad_request = |why: String| Answer {
        reply: Reply::BadRequest(why),
        outcome: Outcome::Invalid,
        wrapped: 0,
    };
    let mut value: Value = serde_json::from_slice(body)
        .map_err(|e| bad_request(format!("the request body is not JSON: {e}")))?;
    // The objects are taken out before the typed read so they are not copied into it: the
    // decision uses the raw JSON, exactly as sent.
    let pod = value
        .get_mut("request")
        .and_then(Value::as_object_mut)
        .and_then(|request| {
            request.remove("oldObject");
            request.remove("object")
        });
    let review = AdmissionReview::<DynamicObject>::deserialize(&value)
        .map_err(|e| bad_request(format!("the request body is not an AdmissionReview: {e}")))?;
    // kube echoes the request's kind and apiVersion into the answer, so a body claiming to be
    // something else would get an answer the API server cannot read (found by fuzzing).
    if review.types.kind != "AdmissionReview"
        || !matches!(
            review.types.api_version.as_str(),
            "admission.k8s.io/v1" | "admission.k8s.io/v1beta1"
        )
    {
        return Err(bad_request(format!(
            "the request body is not an AdmissionReview: kind {:?}, apiVersion {:?} \
             (want kind \"AdmissionReview\", apiVersion \"admission.k8s.io/v1\")",
            review.types.kind, review.types.api_version
        )));
    }
    let request: AdmissionRequest<DynamicObject> = review.try_into().map_err(|_| {
        Answer::review(
            AdmissionResponse::invalid("the AdmissionReview has no request"),
            Outcome::Invalid,
        )
    })?;
    Ok((request, pod))
}

/// Only pod creation is mutated; subresources (`pods/ephemeralcontainers`, ...) are not.
fn is_pod_create(request: &AdmissionRequest<DynamicObject>) -> bool {
    request.kind.group.is_empty()
        && request.kind.kind == "Pod"
        && request.operation == Operation::Create
        && request
            .sub_resource
            .as_deref()
            .unwrap_or_default()
            .is_empty()
}

/// The review as the API server expects it on the wire, serialised once, straight to bytes.
///
/// kube-core serialises `patch` as an array of numbers (kube-rs/kube#1781); the API server
/// wants the bytes as a base64 string, so the patch is taken out and written after the rest,
/// encoded.
pub fn encode(mut response: AdmissionResponse) -> Vec<u8> {
    /// `{"apiVersion", "kind", "response": {..., "patch": "<base64>"}}`.
    #[derive(Serialize)]
    struct Wire<'a> {
        #[serde(flatten)]
        types: &'a TypeMeta,
        response: WireResponse<'a>,
    }
    #[derive(Serialize)]
    struct WireResponse<'a> {
        #[serde(flatten)]
        response: &'a AdmissionResponse,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch: Option<String>,
    }
    let patch = response
        .patch
        .take()
        .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes));
    let wire = Wire {
        types: &response.types,
        response: WireResponse {
            response: &response,
            patch,
        },
    };
    serde_json::to_vec(&wire).expect("an AdmissionReview serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> AdmissionRequest<DynamicObject> {
        let review: AdmissionReview<DynamicObject> = serde_json::from_value(serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": "CREATE",
                "userInfo": {},
            }
        }))
        .unwrap();
        review.try_into().unwrap()
    }

    #[test]
    fn the_answer_on_the_wire_has_the_patch_as_base64_after_the_other_fields() {
        let patch: json_patch::Patch = serde_json::from_str(
            r#"[{"op":"add","path":"/metadata/annotations","value":{"a":"b"}}]"#,
        )
        .unwrap();
        let mut response = AdmissionResponse::from(&request())
            .with_patch(patch)
            .unwrap();
        response.warnings = Some(vec!["careful".to_owned()]);
        let wire = String::from_utf8(encode(response)).unwrap();
        let base64 = base64::engine::general_purpose::STANDARD
            .encode(r#"[{"op":"add","path":"/metadata/annotations","value":{"a":"b"}}]"#);
        assert_eq!(
            wire,
            format!(
                r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{{"uid":"u-1","allowed":true,"status":{{}},"patchType":"JSONPatch","warnings":["careful"],"patch":"{base64}"}}}}"#
            )
        );
    }

    #[test]
    fn a_refusal_on_the_wire_has_no_patch() {
        let response = AdmissionResponse::from(&request()).deny("no");
        let wire: Value = serde_json::from_slice(&encode(response)).unwrap();
        assert_eq!(wire["response"]["uid"], "u-1");
        assert_eq!(wire["response"]["allowed"], false);
        assert_eq!(wire["response"]["status"]["message"], "no");
        assert!(wire["response"].get("patch").is_none(), "{wire}");
        assert!(wire["response"].get("patchType").is_none(), "{wire}");
    }
}
