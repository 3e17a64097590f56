//! Rendered manifests as JSON values, and pure checks on them.

use serde::Deserialize as _;
use serde_json::Value as Json;

#[derive(Debug, thiserror::Error)]
#[error("rendered manifest document {index}: {source}")]
pub struct ManifestError {
    index: usize,
    source: serde_yaml_ng::Error,
}

/// Parses multi-document YAML (as `helm template` prints it), dropping empty documents.
pub fn parse_documents(yaml: &str) -> Result<Vec<Json>, ManifestError> {
    let mut docs = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
        let value =
            Json::deserialize(document).map_err(|source| ManifestError { index, source })?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// Every document of `kind`.
pub fn of_kind<'a>(docs: &'a [Json], kind: &str) -> Vec<&'a Json> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The only document of `kind`; panics naming the kind and count otherwise (test helper).
pub fn one<'a>(docs: &'a [Json], kind: &str) -> &'a Json {
    let found = of_kind(docs, kind);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {kind}, found {}",
        found.len()
    );
    found[0]
}

/// Volume types the Pod Security "restricted" level allows.
const RESTRICTED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// What in a pod spec breaks the Pod Security Standards "restricted" level (empty: it passes).
/// Covers the checks of the baseline and restricted levels that a webhook Deployment can hit.
pub fn restricted_violations(spec: &Json) -> Vec<String> {
    let mut out = Vec::new();
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        if spec[field] == true {
            out.push(format!("spec.{field} is true"));
        }
    }
    for volume in spec["volumes"].as_array().into_iter().flatten() {
        let name = volume["name"].as_str().unwrap_or("?");
        let ok = volume.as_object().is_some_and(|o| {
            o.keys()
                .all(|k| k == "name" || RESTRICTED_VOLUMES.contains(&k.as_str()))
        });
        if !ok {
            out.push(format!("volume {name}: type not allowed"));
        }
    }
    let pod = &spec["securityContext"];
    let pod_non_root = pod["runAsNonRoot"] == true;
    let pod_seccomp = pod["seccompProfile"]["type"].as_str();
    if pod["runAsUser"] == 0 {
        out.push("spec.securityContext.runAsUser is 0".into());
    }
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in spec[list].as_array().into_iter().flatten() {
            let name = format!("{list}[{}]", c["name"].as_str().unwrap_or("?"));
            let sc = &c["securityContext"];
            if sc["privileged"] == true {
                out.push(format!("{name}: privileged"));
            }
            if sc["allowPrivilegeEscalation"] != false {
                out.push(format!("{name}: allowPrivilegeEscalation is not false"));
            }
            let non_root = match sc["runAsNonRoot"].as_bool() {
                Some(v) => v,
                None => pod_non_root,
            };
            if !non_root {
                out.push(format!("{name}: runAsNonRoot is not true"));
            }
            if sc["runAsUser"] == 0 {
                out.push(format!("{name}: runAsUser is 0"));
            }
            let seccomp = sc["seccompProfile"]["type"].as_str().or(pod_seccomp);
            if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
                out.push(format!(
                    "{name}: seccompProfile is not RuntimeDefault or Localhost"
                ));
            }
            let drops_all = sc["capabilities"]["drop"]
                .as_array()
                .is_some_and(|d| d.iter().any(|c| c == "ALL"));
            if !drops_all {
                out.push(format!("{name}: capabilities do not drop ALL"));
            }
            for add in sc["capabilities"]["add"].as_array().into_iter().flatten() {
                if add != "NET_BIND_SERVICE" {
                    out.push(format!("{name}: adds capability {add}"));
                }
            }
            for port in c["ports"].as_array().into_iter().flatten() {
                if port.get("hostPort").is_some_and(|p| p != 0) {
                    out.push(format!("{name}: hostPort set"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Json {
        json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "app", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
            "volumes": [{"name": "tls", "secret": {"secretName": "x"}}]
        })
    }

    #[test]
    fn restricted_checker_accepts_a_compliant_spec_and_names_each_violation() {
        assert_eq!(restricted_violations(&good()), Vec::<String>::new());
        let cases: &[(&str, &str, Json, &str)] = &[
            (
                "host network",
                "/hostNetwork",
                json!(true),
                "spec.hostNetwork is true",
            ),
            (
                "hostPath",
                "/volumes/0",
                json!({"name": "h", "hostPath": {"path": "/"}}),
                "volume h",
            ),
            (
                "root pod",
                "/securityContext/runAsNonRoot",
                json!(false),
                "runAsNonRoot is not true",
            ),
            (
                "escalation",
                "/containers/0/securityContext/allowPrivilegeEscalation",
                json!(true),
                "allowPrivilegeEscalation",
            ),
            (
                "caps kept",
                "/containers/0/securityContext/capabilities/drop",
                json!(["NET_RAW"]),
                "drop ALL",
            ),
            (
                "cap added",
                "/containers/0/securityContext/capabilities/add",
                json!(["SYS_ADMIN"]),
                "SYS_ADMIN",
            ),
            (
                "no seccomp",
                "/securityContext/seccompProfile/type",
                json!("Unconfined"),
                "seccompProfile",
            ),
            (
                "privileged",
                "/containers/0/securityContext/privileged",
                json!(true),
                "privileged",
            ),
            (
                "root uid",
                "/containers/0/securityContext/runAsUser",
                json!(0),
                "runAsUser is 0",
            ),
        ];
        for (case, pointer, value, expected) in cases {
            let mut spec = good();
            let (parent, field) = pointer.rsplit_once('/').unwrap();
            let target = if parent.is_empty() {
                &mut spec
            } else {
                spec.pointer_mut(parent).unwrap()
            };
            match target {
                Json::Object(map) => {
                    map.insert(field.to_owned(), value.clone());
                }
                Json::Array(items) => items[field.parse::<usize>().unwrap()] = value.clone(),
                _ => unreachable!(),
            }
            let violations = restricted_violations(&spec);
            assert!(
                violations.iter().any(|v| v.contains(expected)),
                "{case}: {violations:?}"
            );
        }
    }

    #[test]
    fn documents_parse_and_empty_ones_are_dropped() {
        let docs = parse_documents("---\n# only a comment\n---\nkind: A\n---\nkind: B\nx: [1\n")
            .unwrap_err();
        assert!(docs.to_string().contains("document 2"), "{docs}");
        let docs = parse_documents("---\n# c\n---\nkind: A\n---\nkind: B\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(of_kind(&docs, "B").len(), 1);
    }
}
