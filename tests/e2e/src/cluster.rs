//! The control plane's part, as pure JSON transformations: the Pod a ReplicaSet controller
//! creates from a Deployment (with the API server's defaults and the ServiceAccount admission
//! plugin's token volume), the AdmissionReview the API server sends, applying the returned
//! patch, and the azure-workload-identity webhook's mutation.

use base64::Engine as _;
use serde_json::{Map, Value, json};

/// Label the azure-workload-identity webhook selects pods by.
pub const WI_USE_LABEL: &str = "azure.workload.identity/use";
/// Service account annotation holding the identity's client id.
pub const WI_CLIENT_ID_ANNOTATION: &str = "azure.workload.identity/client-id";
/// Where the workload identity webhook mounts the federated token.
pub const WI_TOKEN_DIR: &str = "/var/run/secrets/azure/tokens";
pub const WI_TOKEN_FILE: &str = "/var/run/secrets/azure/tokens/azure-identity-token";

/// What went wrong in the control plane's part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("manifest: {0}")]
    Manifest(String),
    #[error("admission response: {0}")]
    Response(String),
}

/// Short, stable, DNS-safe hash (the alphabet Kubernetes uses for generated names).
fn safe_hash(data: &[u8], len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    (0..len)
        .map(|i| {
            let x = h.rotate_left(i as u32 * 7) ^ (i as u64).wrapping_mul(0x9e3779b97f4a7c15);
            ALPHABET[(x % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

/// The Pod object the API server hands to admission when the ReplicaSet of `deployment` creates
/// a pod: template metadata + `pod-template-hash`, owner reference, `generateName` (no name yet),
/// defaulted spec, and the `kube-api-access-*` projected volume mounted in every container.
pub fn pod_from_deployment(deployment: &Value) -> Result<Value, ClusterError> {
    let bad = |what: &str| ClusterError::Manifest(what.to_string());
    if deployment["kind"] != "Deployment" {
        return Err(bad(&format!(
            "expected kind Deployment, got {}",
            deployment["kind"]
        )));
    }
    let name = deployment["metadata"]["name"]
        .as_str()
        .ok_or_else(|| bad("metadata.name is missing"))?;
    let namespace = deployment["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    let template = &deployment["spec"]["template"];
    let mut spec = template["spec"].clone();
    if !spec["containers"].is_array() {
        return Err(bad("spec.template.spec.containers is missing"));
    }
    let hash = safe_hash(template.to_string().as_bytes(), 10);
    let rs_name = format!("{name}-{hash}");

    let mut labels = template["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    labels.insert("pod-template-hash".into(), json!(hash));
    let mut metadata = Map::new();
    metadata.insert("generateName".into(), json!(format!("{rs_name}-")));
    metadata.insert("namespace".into(), json!(namespace));
    metadata.insert("labels".into(), Value::Object(labels));
    if let Some(a) = template["metadata"]["annotations"].as_object() {
        metadata.insert("annotations".into(), Value::Object(a.clone()));
    }
    metadata.insert(
        "ownerReferences".into(),
        json!([{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs_name,
            "uid": format!("{}-0000-4000-8000-{}", safe_hash(rs_name.as_bytes(), 8), safe_hash(b"rs", 12)),
            "controller": true, "blockOwnerDeletion": true,
        }]),
    );

    default_pod_spec(&mut spec, namespace, &hash);
    Ok(json!({ "apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec }))
}

/// The API server's defaulting and the ServiceAccount admission plugin (both run before
/// mutating webhooks).
fn default_pod_spec(spec: &mut Value, _namespace: &str, seed: &str) {
    let obj = spec.as_object_mut().expect("spec is an object");
    let mut default = |key: &str, value: Value| {
        obj.entry(key.to_string()).or_insert(value);
    };
    default("restartPolicy", json!("Always"));
    default("terminationGracePeriodSeconds", json!(30));
    default("dnsPolicy", json!("ClusterFirst"));
    default("securityContext", json!({}));
    default("schedulerName", json!("default-scheduler"));
    default("enableServiceLinks", json!(true));
    default("priority", json!(0));
    default("preemptionPolicy", json!("PreemptLowerPriority"));
    default(
        "tolerations",
        json!([
            { "key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300 },
            { "key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300 },
        ]),
    );
    let sa = obj
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    obj.insert("serviceAccountName".into(), json!(sa));
    obj.insert("serviceAccount".into(), json!(sa));

    let volume_name = format!("kube-api-access-{}", safe_hash(seed.as_bytes(), 5));
    for field in ["initContainers", "containers"] {
        for c in obj
            .get_mut(field)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let c = c.as_object_mut().expect("container is an object");
            c.entry("terminationMessagePath")
                .or_insert(json!("/dev/termination-log"));
            c.entry("terminationMessagePolicy").or_insert(json!("File"));
            c.entry("resources").or_insert(json!({}));
            let latest = c.get("image").and_then(Value::as_str).is_some_and(|i| {
                i.ends_with(":latest") || !i.rsplit('/').next().unwrap_or(i).contains(':')
            });
            c.entry("imagePullPolicy").or_insert(json!(if latest {
                "Always"
            } else {
                "IfNotPresent"
            }));
            for var in c
                .get_mut("env")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(field_ref) = var
                    .pointer_mut("/valueFrom/fieldRef")
                    .and_then(Value::as_object_mut)
                {
                    field_ref.entry("apiVersion").or_insert(json!("v1"));
                }
            }
            let mounts = c.entry("volumeMounts").or_insert(json!([]));
            mounts
                .as_array_mut()
                .expect("volumeMounts is an array")
                .push(json!({
                    "name": volume_name, "readOnly": true,
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                }));
        }
    }
    let volumes = obj.entry("volumes").or_insert(json!([]));
    volumes.as_array_mut().expect("volumes is an array").push(json!({
        "name": volume_name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                { "serviceAccountToken": { "expirationSeconds": 3607, "path": "token" } },
                { "configMap": { "name": "kube-root-ca.crt", "items": [ { "key": "ca.crt", "path": "ca.crt" } ] } },
                { "downwardAPI": { "items": [ { "path": "namespace", "fieldRef": { "apiVersion": "v1", "fieldPath": "metadata.namespace" } } ] } },
            ],
        },
    }));
}

/// The `AdmissionReview` (admission.k8s.io/v1) the API server posts for creating `pod`.
pub fn admission_review(pod: &Value, uid: &str, dry_run: bool) -> Value {
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": { "group": "", "version": "v1", "kind": "Pod" },
            "resource": { "group": "", "version": "v1", "resource": "pods" },
            "requestKind": { "group": "", "version": "v1", "kind": "Pod" },
            "requestResource": { "group": "", "version": "v1", "resource": "pods" },
            "name": pod["metadata"]["name"].as_str().unwrap_or(""),
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "1c1d4b6a-0000-4000-8000-000000000001",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
            },
            "object": pod,
            "oldObject": null,
            "dryRun": dry_run,
            "options": { "apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions" },
        }
    })
}

/// The webhook's answer, checked the way the API server checks it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub allowed: bool,
    /// `status.message` of a refusal.
    pub message: Option<String>,
    pub warnings: Vec<String>,
    /// The decoded JSON patch, if any.
    pub patch: Option<json_patch::Patch>,
}

/// Reads an `AdmissionReview` response for request `uid`: `patch` must be base64 of a JSON
/// patch with `patchType: JSONPatch`, as the API server requires.
pub fn read_verdict(review: &Value, uid: &str) -> Result<Verdict, ClusterError> {
    let bad = |what: String| ClusterError::Response(what);
    if review["apiVersion"] != "admission.k8s.io/v1" || review["kind"] != "AdmissionReview" {
        return Err(bad(format!(
            "expected admission.k8s.io/v1 AdmissionReview, got {} {}",
            review["apiVersion"], review["kind"]
        )));
    }
    let response = &review["response"];
    if response["uid"] != uid {
        return Err(bad(format!(
            "response.uid {} does not match the request's {uid:?}",
            response["uid"]
        )));
    }
    let allowed = response["allowed"]
        .as_bool()
        .ok_or_else(|| bad("response.allowed is missing".into()))?;
    let patch = match &response["patch"] {
        Value::Null => None,
        Value::String(b64) => {
            if response["patchType"] != "JSONPatch" {
                return Err(bad(format!(
                    "patchType must be JSONPatch, got {}",
                    response["patchType"]
                )));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| bad(format!("patch is not base64: {e}")))?;
            Some(
                serde_json::from_slice(&bytes)
                    .map_err(|e| bad(format!("patch is not a JSON patch: {e}")))?,
            )
        }
        other => {
            return Err(bad(format!(
                "patch must be a base64 string, got {}",
                type_name(other)
            )));
        }
    };
    Ok(Verdict {
        allowed,
        message: response["status"]["message"].as_str().map(str::to_string),
        warnings: response["warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str().map(str::to_string))
            .collect(),
        patch,
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Applies `patch` to a copy of `pod`.
pub fn apply(pod: &Value, patch: &json_patch::Patch) -> Result<Value, ClusterError> {
    let mut out = pod.clone();
    json_patch::patch(&mut out, patch)
        .map_err(|e| ClusterError::Response(format!("the patch does not apply: {e}")))?;
    Ok(out)
}

/// What the API server does after admission: a name from `generateName` and a uid.
pub fn persist(pod: &mut Value, suffix_seed: &str) {
    let meta = pod["metadata"]
        .as_object_mut()
        .expect("metadata is an object");
    if meta
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        let prefix = meta
            .get("generateName")
            .and_then(Value::as_str)
            .unwrap_or("pod-")
            .to_string();
        meta.insert(
            "name".into(),
            json!(format!("{prefix}{}", safe_hash(suffix_seed.as_bytes(), 5))),
        );
    }
    let uid = format!(
        "{}-{}-4{}-8{}-{}",
        safe_hash(suffix_seed.as_bytes(), 8),
        safe_hash(b"a", 4),
        safe_hash(b"b", 3),
        safe_hash(b"c", 3),
        safe_hash(suffix_seed.as_bytes(), 12)
    );
    meta.entry("uid").or_insert(json!(uid));
}

/// The azure-workload-identity webhook's mutation for a pod labelled
/// `azure.workload.identity/use: "true"` whose service account names a client id: env vars in
/// every container and init container, the projected token volume and its mount. Returns false
/// (and changes nothing) for pods it does not select.
pub fn workload_identity(
    pod: &mut Value,
    client_id: &str,
    tenant_id: &str,
    authority_host: &str,
) -> bool {
    if pod["metadata"]["labels"][WI_USE_LABEL] != "true" {
        return false;
    }
    let vars = [
        ("AZURE_CLIENT_ID", client_id),
        ("AZURE_TENANT_ID", tenant_id),
        ("AZURE_FEDERATED_TOKEN_FILE", WI_TOKEN_FILE),
        ("AZURE_AUTHORITY_HOST", authority_host),
    ];
    for field in ["initContainers", "containers"] {
        for c in pod["spec"][field].as_array_mut().into_iter().flatten() {
            let c = c.as_object_mut().expect("container is an object");
            let env = c
                .entry("env")
                .or_insert(json!([]))
                .as_array_mut()
                .expect("env is an array");
            for (name, value) in vars {
                if !env.iter().any(|e| e["name"] == name) {
                    env.push(json!({ "name": name, "value": value }));
                }
            }
            let mounts = c
                .entry("volumeMounts")
                .or_insert(json!([]))
                .as_array_mut()
                .expect("volumeMounts is an array");
            if !mounts.iter().any(|m| m["mountPath"] == WI_TOKEN_DIR) {
                mounts.push(json!({ "name": "azure-identity-token", "mountPath": WI_TOKEN_DIR, "readOnly": true }));
            }
        }
    }
    let volumes = pod["spec"]
        .as_object_mut()
        .expect("spec is an object")
        .entry("volumes")
        .or_insert(json!([]))
        .as_array_mut()
        .expect("volumes is an array");
    if !volumes.iter().any(|v| v["name"] == "azure-identity-token") {
        volumes.push(json!({
            "name": "azure-identity-token",
            "projected": {
                "defaultMode": 420,
                "sources": [ { "serviceAccountToken": {
                    "audience": "api://AzureADTokenExchange", "expirationSeconds": 3600, "path": "azure-identity-token",
                } } ],
            },
        }));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web", "namespace": "shop" },
            "spec": { "template": {
                "metadata": { "labels": { "app": "web", WI_USE_LABEL: "true" }, "annotations": { "a": "b" } },
                "spec": { "serviceAccountName": "web", "containers": [
                    { "name": "web", "image": "r/web:1", "env": [ { "name": "P", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } } ] },
                    { "name": "side", "image": "r/side" },
                ] }
            } }
        })
    }

    #[test]
    fn pod_from_deployment_looks_like_the_api_servers() {
        let pod = pod_from_deployment(&deployment()).unwrap();
        let meta = &pod["metadata"];
        assert!(meta["name"].is_null(), "no name before admission");
        let generate = meta["generateName"].as_str().unwrap();
        let hash = meta["labels"]["pod-template-hash"].as_str().unwrap();
        assert_eq!(generate, format!("web-{hash}-"));
        assert_eq!(hash.len(), 10);
        assert_eq!(meta["namespace"], "shop");
        assert_eq!(meta["annotations"]["a"], "b");
        assert_eq!(meta["ownerReferences"][0]["kind"], "ReplicaSet");
        let spec = &pod["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["serviceAccount"], "web");
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(
            spec["containers"][1]["imagePullPolicy"], "Always",
            "untagged is latest"
        );
        assert_eq!(
            spec["containers"][0]["env"][0]["valueFrom"]["fieldRef"]["apiVersion"],
            "v1"
        );
        let volume = spec["volumes"][0]["name"].as_str().unwrap();
        assert!(volume.starts_with("kube-api-access-"));
        for c in spec["containers"].as_array().unwrap() {
            assert_eq!(c["volumeMounts"][0]["name"], volume);
        }
        // Stable: the same template gives the same hash (one ReplicaSet).
        assert_eq!(pod, pod_from_deployment(&deployment()).unwrap());
    }

    #[test]
    fn manifests_that_are_not_deployments_are_refused() {
        let err = pod_from_deployment(&json!({ "kind": "Service" })).unwrap_err();
        assert_eq!(
            err.to_string(),
            "manifest: expected kind Deployment, got \"Service\""
        );
        let err = pod_from_deployment(
            &json!({ "kind": "Deployment", "metadata": { "name": "x" }, "spec": {} }),
        )
        .unwrap_err();
        assert!(err.to_string().contains("containers is missing"), "{err}");
    }

    #[test]
    fn verdicts_are_read_like_the_api_server() {
        let patch = base64::engine::general_purpose::STANDARD
            .encode(br#"[{"op":"add","path":"/metadata/labels","value":{"x":"y"}}]"#);
        let ok = json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": { "uid": "u1", "allowed": true, "patchType": "JSONPatch", "patch": patch, "warnings": ["w"] } });
        let v = read_verdict(&ok, "u1").unwrap();
        assert!(v.allowed);
        assert_eq!(v.warnings, ["w"]);
        let applied = apply(&json!({ "metadata": {} }), v.patch.as_ref().unwrap()).unwrap();
        assert_eq!(applied, json!({ "metadata": { "labels": { "x": "y" } } }));

        // (case, response, expected error part)
        let rows = [
            (
                "wrong uid",
                json!({ "uid": "other", "allowed": true }),
                "does not match",
            ),
            ("no allowed", json!({ "uid": "u1" }), "allowed is missing"),
            (
                "patch as numbers (kube-rs#1781)",
                json!({ "uid": "u1", "allowed": true, "patchType": "JSONPatch", "patch": [91, 93] }),
                "must be a base64 string, got an array",
            ),
            (
                "not base64",
                json!({ "uid": "u1", "allowed": true, "patchType": "JSONPatch", "patch": "%%%" }),
                "not base64",
            ),
            (
                "no patchType",
                json!({ "uid": "u1", "allowed": true, "patch": "W10=" }),
                "patchType must be JSONPatch",
            ),
        ];
        for (case, response, expected) in rows {
            let review = json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response });
            let err = read_verdict(&review, "u1").unwrap_err().to_string();
            assert!(err.contains(expected), "case {case:?}: {err}");
        }
        let refused = json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": { "uid": "u1", "allowed": false, "status": { "code": 403, "message": "no" } } });
        assert_eq!(
            read_verdict(&refused, "u1").unwrap().message.as_deref(),
            Some("no")
        );
    }

    #[test]
    fn workload_identity_adds_env_token_volume_and_mounts() {
        let mut pod = pod_from_deployment(&deployment()).unwrap();
        assert!(workload_identity(
            &mut pod,
            "app-web",
            "tenant",
            "https://login.microsoftonline.com/"
        ));
        for c in pod["spec"]["containers"].as_array().unwrap() {
            let env: Vec<(&str, &str)> = c["env"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
                .collect();
            assert!(env.contains(&("AZURE_CLIENT_ID", "app-web")));
            assert!(env.contains(&("AZURE_FEDERATED_TOKEN_FILE", WI_TOKEN_FILE)));
            assert!(
                c["volumeMounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["mountPath"] == WI_TOKEN_DIR)
            );
        }
        let once = pod.clone();
        assert!(workload_identity(
            &mut pod,
            "app-web",
            "tenant",
            "https://login.microsoftonline.com/"
        ));
        assert_eq!(pod, once, "idempotent");

        let mut unlabelled =
            json!({ "metadata": {}, "spec": { "containers": [ { "name": "c" } ] } });
        let before = unlabelled.clone();
        assert!(!workload_identity(&mut unlabelled, "x", "t", "a"));
        assert_eq!(unlabelled, before);
    }
}
