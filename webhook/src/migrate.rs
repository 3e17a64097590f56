//! `migrate`: akv2k8s manifests in, akv-env manifests out.
//!
//! In akv2k8s an env value `NAME@azurekeyvault[?QUERY]` names an `AzureKeyVaultSecret` resource
//! (`spv.no/v1` / `v2beta1`) in the pod's namespace, which says which vault and object to read;
//! akv-env names the object directly. This command reads the `AzureKeyVaultSecret` documents in
//! its input (also inside `kind: List`, as `kubectl get -o yaml` prints them) and rewrites every
//! such env value that refers to one into the equivalent akv-env placeholder, following what
//! akv2k8s' env injector does with each object type and query:
//!
//! | akv2k8s object type, query | akv-env |
//! |---|---|
//! | `secret`, none | `type` secret (with `output.transform: [base64decode]`: `encoding=base64`) |
//! | `certificate`, none or `tls.crt` | `type=certificate&part=cert` (the PEM certificate) |
//! | `certificate`, `tls.key` | `type=certificate&part=key` (the PEM private key) |
//! | `certificate`, `raw` | the certificate's backing secret (`type` secret, same name) |
//! | `key`, none | `type=key` (the public key as PEM) |
//! | `multi-key-value-secret` (`application/x-json`), `FIELD` | `key=FIELD` |
//!
//! What has no equivalent is left as it was and reported, one line each: Secrets and ConfigMaps
//! the akv2k8s controller syncs (`spec.output.secret` / `configMap`: akv-env never writes secrets
//! to the API server, by design), `username` / `password` queries, YAML multi-key secrets, the
//! `trim` and `base64encode` transforms, references to resources not in the input, and containers
//! akv2k8s already wrapped. Documents without changes are printed byte for byte.

use std::collections::HashMap;

use akv_placeholder::{CertPart, Encoding, ObjectKind, Reference, SUFFIX, Vault};
use serde::Deserialize;
use serde_json::Value;

use crate::inject::{describe, push_changed, split_documents, strip_marker};

/// akv2k8s' injector binary, as its webhook rewrites a container's command.
pub const AKV2K8S_INJECTOR: &str = "/azure-keyvault/azure-keyvault-env";

/// The result of a run: the rewritten manifests and what could not be converted.
#[derive(Debug)]
pub struct Migrated {
    pub yaml: String,
    /// Env values rewritten.
    pub converted: usize,
    /// One line per thing left unconverted (or worth a look), naming the document.
    pub notes: Vec<String>,
}

/// Input that cannot be read at all.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct MigrateError {
    pub problems: Vec<String>,
}

/// The parts of an `AzureKeyVaultSecret` that decide what the env injector reads.
#[derive(Debug, Deserialize)]
struct AzureKeyVaultSecret {
    metadata: Metadata,
    spec: Spec,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    name: String,
    namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Spec {
    vault: VaultSpec,
    #[serde(default)]
    output: Option<Output>,
}

#[derive(Debug, Deserialize)]
struct VaultSpec {
    name: String,
    object: ObjectSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectSpec {
    name: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Output {
    #[serde(default)]
    transform: Vec<String>,
    #[serde(default)]
    secret: Option<NamedOutput>,
    #[serde(default)]
    config_map: Option<NamedOutput>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NamedOutput {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    chain_order: Option<String>,
}

/// The akv-env placeholder for an akv2k8s reference with `query` (empty: none) to `akvs`, or
/// why there is none. Pure.
fn convert(akvs: &AzureKeyVaultSecret, query: &str) -> Result<Reference, String> {
    let spec = &akvs.spec;
    let object = &spec.vault.object;
    let vault = Vault::parse(&spec.vault.name)
        .map_err(|e| format!("its vault name {:?} is not valid: {e}", spec.vault.name))?;
    let mut reference = Reference::secret(object.name.clone());
    reference.vault = Some(vault);
    reference.version = object.version.clone().filter(|v| !v.is_empty());
    let transforms: &[String] = spec.output.as_ref().map_or(&[], |o| &o.transform);
    let kind = object.kind.as_deref().unwrap_or("secret");
    match (kind, query) {
        ("secret", "") => {
            for transform in transforms {
                match transform.as_str() {
                    "base64decode" if reference.encoding.is_none() => {
                        reference.encoding = Some(Encoding::Base64);
                    }
                    other => {
                        return Err(format!(
                            "output.transform {other:?} has no akv-env equivalent (only one \
                             base64decode does: encoding=base64)"
                        ));
                    }
                }
            }
        }
        ("secret", "username" | "password") => {
            return Err(format!(
                "the query ?{query} splits a `user:password` secret, which akv-env does not do: \
                 store the two parts as a JSON secret and use ?key=..."
            ));
        }
        ("certificate", "" | "tls.crt" | "tls.key") => {
            reference.kind = ObjectKind::Certificate;
            reference.part = Some(if query == "tls.key" {
                CertPart::Key
            } else {
                CertPart::Cert
            });
            let server_first = spec
                .output
                .as_ref()
                .and_then(|o| o.secret.as_ref())
                .and_then(|s| s.chain_order.as_deref())
                == Some("ensureserverfirst");
            if server_first && reference.part == Some(CertPart::Cert) {
                return Err(
                    "output.secret.chainOrder ensureserverfirst (reordering the chain) has no \
                     akv-env equivalent"
                        .to_owned(),
                );
            }
        }
        ("certificate", "raw") => {
            // The raw export is the certificate's backing secret, which has the same name.
        }
        ("key", "") => reference.kind = ObjectKind::Key,
        ("multi-key-value-secret", field) if !field.is_empty() => {
            match object.content_type.as_deref() {
                Some("application/x-json") => reference.json_key = Some(field.to_owned()),
                other => {
                    return Err(format!(
                        "a multi-key-value-secret with contentType {other:?}: akv-env reads \
                         fields of JSON secrets only (application/x-json)"
                    ));
                }
            }
        }
        (kind, query) => {
            return Err(format!(
                "akv2k8s' env injector has no query {query:?} for object type {kind:?}"
            ));
        }
    }
    // The result must read back as the same reference: the grammar is the judge.
    let text = reference.to_string();
    match akv_placeholder::parse(&text) {
        Ok(Some(parsed)) if parsed == reference => Ok(reference),
        Ok(_) => Err(format!("{text} does not read back as the same reference")),
        Err(e) => Err(format!("{text} is not a valid akv-env placeholder: {e}")),
    }
}

/// (namespace, name) of every `AzureKeyVaultSecret` in the input, and a note for each one whose
/// output the controller syncs.
fn collect_resources(
    value: &Value,
    label: &str,
    found: &mut HashMap<(String, String), AzureKeyVaultSecret>,
    notes: &mut Vec<String>,
) {
    if value.get("kind").and_then(Value::as_str) == Some("List") {
        for item in value
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            collect_resources(item, label, found, notes);
        }
        return;
    }
    let is_akvs = value.get("kind").and_then(Value::as_str) == Some("AzureKeyVaultSecret")
        && value
            .get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|v| v.starts_with("spv.no/"));
    if !is_akvs {
        return;
    }
    match AzureKeyVaultSecret::deserialize(value) {
        Ok(akvs) => {
            let namespace = akvs
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned());
            let name = akvs.metadata.name.clone();
            let output = akvs.spec.output.as_ref();
            for (what, target) in [
                ("Secret", output.and_then(|o| o.secret.as_ref())),
                ("ConfigMap", output.and_then(|o| o.config_map.as_ref())),
            ] {
                if let Some(target) = target.filter(|t| t.name.is_some()) {
                    notes.push(format!(
                        "{label}: AzureKeyVaultSecret {namespace}/{name} syncs {what} {}: the \
                         akv2k8s controller writes it to the API server, which akv-env never does \
                         by design; keep the controller for it, or read the object directly \
                         with {}",
                        target.name.as_deref().unwrap_or_default(),
                        convert(&akvs, "")
                            .map(|r| r.to_string())
                            .unwrap_or_else(|e| format!("(no direct equivalent: {e})")),
                    ));
                }
            }
            found.insert((namespace, name), akvs);
        }
        Err(e) => notes.push(format!(
            "{label}: an AzureKeyVaultSecret that cannot be read ({e}); references to it stay as they are"
        )),
    }
}

struct Rewriter<'a> {
    resources: &'a HashMap<(String, String), AzureKeyVaultSecret>,
    label: &'a str,
    notes: &'a mut Vec<String>,
    converted: usize,
}

impl Rewriter<'_> {
    /// Walks any object: Kubernetes objects (`kind` + `metadata`) set the namespace for what is
    /// inside them; every `env` list of a container-like object (with a `name`) is rewritten.
    fn walk(&mut self, value: &mut Value, namespace: &str) {
        match value {
            Value::Object(map) => {
                if map.get("kind").and_then(Value::as_str) == Some("AzureKeyVaultSecret") {
                    return;
                }
                let namespace = match (map.get("kind"), map.get("metadata")) {
                    (Some(_), Some(meta)) => meta
                        .get("namespace")
                        .and_then(Value::as_str)
                        .unwrap_or(namespace)
                        .to_owned(),
                    _ => namespace.to_owned(),
                };
                let container = map.get("name").and_then(Value::as_str).map(str::to_owned);
                if let Some(container) = &container {
                    let wrapped = map
                        .get("command")
                        .and_then(|c| c.get(0))
                        .and_then(Value::as_str)
                        == Some(AKV2K8S_INJECTOR);
                    if wrapped {
                        self.notes.push(format!(
                            "{}: container {container} was already wrapped by akv2k8s (command \
                             {AKV2K8S_INJECTOR}): migrate the manifest it came from, not a \
                             running pod",
                            self.label
                        ));
                    }
                    if let Some(env) = map.get_mut("env").and_then(Value::as_array_mut) {
                        for var in env {
                            self.rewrite_var(var, container, &namespace);
                        }
                    }
                }
                for (key, child) in map.iter_mut() {
                    if key != "env" {
                        self.walk(child, &namespace);
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.walk(item, namespace);
                }
            }
            _ => {}
        }
    }

    fn rewrite_var(&mut self, var: &mut Value, container: &str, namespace: &str) {
        let Some(text) = var.get("value").and_then(Value::as_str) else {
            return;
        };
        let (head, query) = text.split_once('?').unwrap_or((text, ""));
        let Some(name) = head.strip_suffix(SUFFIX) else {
            return;
        };
        // Already akv-env's syntax (`?vault=...`): nothing to do.
        if query.contains('=') {
            return;
        }
        let env = var.get("name").and_then(Value::as_str).unwrap_or("?");
        let at = format!("{}: container {container}, env {env}", self.label);
        let Some(akvs) = self.resources.get(&(namespace.to_owned(), name.to_owned())) else {
            self.notes.push(format!(
                "{at}: no AzureKeyVaultSecret {namespace}/{name} in the input, left as it was; \
                 add the resources (kubectl get azurekeyvaultsecrets -n {namespace} -o yaml) or \
                 write {name}{SUFFIX}?vault=VAULT yourself"
            ));
            return;
        };
        match convert(akvs, query) {
            Ok(reference) => {
                var["value"] = Value::String(reference.to_string());
                self.converted += 1;
            }
            Err(why) => self.notes.push(format!(
                "{at}: {text} (AzureKeyVaultSecret {namespace}/{name}) left as it was: {why}"
            )),
        }
    }
}

/// Rewrites akv2k8s placeholders in `input` (multi-document YAML or JSON).
pub fn migrate(input: &str) -> Result<Migrated, MigrateError> {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut docs = Vec::new();
    for (index, doc) in split_documents(input).into_iter().enumerate() {
        let (marker, body) = strip_marker(doc);
        let value = match serde_yaml_ng::from_str::<Option<Value>>(body) {
            Ok(value) => value,
            Err(e) => {
                problems.push(format!("document {}: not valid YAML: {e}", index + 1));
                None
            }
        };
        docs.push((doc, marker, value));
    }
    if !problems.is_empty() {
        return Err(MigrateError { problems });
    }
    let mut resources = HashMap::new();
    for (index, (_, _, value)) in docs.iter().enumerate() {
        if let Some(value) = value {
            collect_resources(
                value,
                &describe(value, index + 1),
                &mut resources,
                &mut notes,
            );
        }
    }
    let mut out = String::with_capacity(input.len());
    let mut converted = 0;
    for (index, (doc, marker, value)) in docs.into_iter().enumerate() {
        let Some(mut value) = value else {
            out.push_str(doc);
            continue;
        };
        let label = describe(&value, index + 1);
        let mut rewriter = Rewriter {
            resources: &resources,
            label: &label,
            notes: &mut notes,
            converted: 0,
        };
        rewriter.walk(&mut value, "default");
        let changed = rewriter.converted;
        if changed == 0 {
            out.push_str(doc);
            continue;
        }
        converted += changed;
        if let Err(e) = push_changed(&mut out, index, marker, &value) {
            problems.push(format!("{label}: cannot print it as YAML: {e}"));
        }
    }
    if !problems.is_empty() {
        return Err(MigrateError { problems });
    }
    Ok(Migrated {
        yaml: out,
        converted,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An AzureKeyVaultSecret as akv2k8s' documentation writes them (`spv.no/v2beta1`).
    fn akvs(name: &str, object: &str, extra_spec: &str) -> String {
        format!(
            "apiVersion: spv.no/v2beta1\nkind: AzureKeyVaultSecret\nmetadata:\n  name: {name}\n  \
             namespace: shop\nspec:\n  vault:\n    name: shop-kv\n    object:\n{object}\n{extra_spec}"
        )
    }

    fn deployment(value: &str) -> String {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: shop\n\
             spec:\n  template:\n    spec:\n      containers:\n        - name: app\n          \
             image: example/app\n          env:\n            - name: VAR\n              value: \
             {value:?}\n"
        )
    }

    /// One row: case, the resource's `object`, extra `spec` lines, the akv2k8s env value, and
    /// the akv-env value (or the note saying why there is none).
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        Result<&'static str, &'static str>,
    );

    #[test]
    fn each_akv2k8s_shape_becomes_the_equivalent_placeholder_or_a_note() {
        let secret = "      name: db-password\n      type: secret";
        let cert = "      name: web-tls\n      type: certificate";
        let key = "      name: signing\n      type: key";
        let json_multi = "      name: settings\n      type: multi-key-value-secret\n      contentType: application/x-json";
        let yaml_multi = "      name: settings\n      type: multi-key-value-secret\n      contentType: application/x-yaml";
        let pinned = "      name: db-password\n      type: secret\n      version: 0123456789abcdef0123456789abcdef";
        let cases: &[Case] = &[
            (
                "secret",
                secret,
                "",
                "pw@azurekeyvault",
                Ok("db-password@azurekeyvault?vault=shop-kv"),
            ),
            (
                "pinned version",
                pinned,
                "",
                "pw@azurekeyvault",
                Ok(
                    "db-password@azurekeyvault?vault=shop-kv&version=0123456789abcdef0123456789abcdef",
                ),
            ),
            (
                "base64decode transform",
                secret,
                "  output:\n    transform:\n      - base64decode",
                "pw@azurekeyvault",
                Ok("db-password@azurekeyvault?vault=shop-kv&encoding=base64"),
            ),
            (
                "trim transform",
                secret,
                "  output:\n    transform:\n      - trim",
                "pw@azurekeyvault",
                Err("output.transform \"trim\" has no akv-env equivalent"),
            ),
            (
                "username query",
                secret,
                "",
                "pw@azurekeyvault?username",
                Err("splits a `user:password` secret"),
            ),
            (
                "certificate",
                cert,
                "",
                "tls@azurekeyvault",
                Ok("web-tls@azurekeyvault?vault=shop-kv&type=certificate&part=cert"),
            ),
            (
                "certificate tls.crt",
                cert,
                "",
                "tls@azurekeyvault?tls.crt",
                Ok("web-tls@azurekeyvault?vault=shop-kv&type=certificate&part=cert"),
            ),
            (
                "certificate tls.key",
                cert,
                "",
                "tls@azurekeyvault?tls.key",
                Ok("web-tls@azurekeyvault?vault=shop-kv&type=certificate&part=key"),
            ),
            (
                "certificate raw",
                cert,
                "",
                "tls@azurekeyvault?raw",
                Ok("web-tls@azurekeyvault?vault=shop-kv"),
            ),
            (
                "certificate unknown query",
                cert,
                "",
                "tls@azurekeyvault?ca.crt",
                Err("no query \"ca.crt\" for object type \"certificate\""),
            ),
            (
                "server first chain",
                cert,
                "  output:\n    secret:\n      name: web-tls\n      type: kubernetes.io/tls\n      chainOrder: ensureserverfirst",
                "tls@azurekeyvault?tls.crt",
                Err("chainOrder ensureserverfirst"),
            ),
            (
                "key",
                key,
                "",
                "sign@azurekeyvault",
                Ok("signing@azurekeyvault?vault=shop-kv&type=key"),
            ),
            (
                "multi-key JSON",
                json_multi,
                "",
                "cfg@azurekeyvault?db-host",
                Ok("settings@azurekeyvault?vault=shop-kv&key=db-host"),
            ),
            (
                "multi-key YAML",
                yaml_multi,
                "",
                "cfg@azurekeyvault?db-host",
                Err("reads fields of JSON secrets only"),
            ),
            (
                "multi-key without a field",
                json_multi,
                "",
                "cfg@azurekeyvault",
                Err("no query \"\" for object type \"multi-key-value-secret\""),
            ),
        ];
        for (case, object, extra, value, want) in cases {
            let resource_name = value.split('@').next().unwrap();
            let input = format!(
                "{}\n---\n{}",
                akvs(resource_name, object, extra),
                deployment(value)
            );
            let migrated = migrate(&input).unwrap_or_else(|e| panic!("{case}: {e}"));
            let docs: Vec<Value> = split_documents(&migrated.yaml)
                .into_iter()
                .map(|d| serde_yaml_ng::from_str(strip_marker(d).1).unwrap())
                .collect();
            let got = docs[1]
                .pointer("/spec/template/spec/containers/0/env/0/value")
                .and_then(Value::as_str)
                .unwrap();
            // A controller-synced output is reported separately: only the env notes count here.
            let env_notes: Vec<&String> = migrated
                .notes
                .iter()
                .filter(|n| n.contains("env VAR"))
                .collect();
            match want {
                Ok(expected) => {
                    assert_eq!(got, *expected, "{case}");
                    assert_eq!(migrated.converted, 1, "{case}");
                    assert!(env_notes.is_empty(), "{case}: {env_notes:?}");
                    assert!(akv_placeholder::parse(got).unwrap().is_some(), "{case}");
                }
                Err(note) => {
                    assert_eq!(got, *value, "{case}: left as it was");
                    assert_eq!(migrated.converted, 0, "{case}");
                    assert_eq!(env_notes.len(), 1, "{case}: {:?}", migrated.notes);
                    assert!(env_notes[0].contains(note), "{case}: {}", env_notes[0]);
                    assert!(
                        env_notes[0]
                            .contains("document 2 (Deployment web): container app, env VAR"),
                        "{case}: {}",
                        env_notes[0]
                    );
                }
            }
        }
    }

    #[test]
    fn a_whole_akv2k8s_namespace_migrates_and_reports_what_has_no_equivalent() {
        let input = "\
# the namespace keeps its label: both injectors use it
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels:
    azure-key-vault-env-injection: enabled
---
apiVersion: v1
kind: List
items:
  - apiVersion: spv.no/v2beta1
    kind: AzureKeyVaultSecret
    metadata: {name: db, namespace: shop}
    spec:
      vault: {name: shop-kv, object: {name: db-password, type: secret}}
  - apiVersion: spv.no/v2beta1
    kind: AzureKeyVaultSecret
    metadata: {name: synced, namespace: shop}
    spec:
      vault: {name: shop-kv, object: {name: api-token, type: secret}}
      output: {secret: {name: api-token, dataKey: token}}
  - apiVersion: spv.no/v2beta1
    kind: AzureKeyVaultSecret
    metadata: {name: db, namespace: other}
    spec:
      vault: {name: other-kv, object: {name: other-db, type: secret}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report, namespace: shop}
spec:
  schedule: '@daily'
  jobTemplate:
    spec:
      template:
        spec:
          initContainers:
            - name: migrate
              image: example/migrate
              env: [{name: DB, value: db@azurekeyvault}]
          containers:
            - name: report
              image: example/report
              env:
                - {name: DB, value: db@azurekeyvault}
                - {name: MISSING, value: nowhere@azurekeyvault}
                - {name: NEW, value: x@azurekeyvault?vault=shop-kv}
                - {name: PLAIN, value: hello}
---
apiVersion: v1
kind: Pod
metadata: {name: old, namespace: shop}
spec:
  containers:
    - name: app
      image: example/app
      command: [/azure-keyvault/azure-keyvault-env]
      args: [/app]
";
        let migrated = migrate(input).unwrap();
        let docs = split_documents(&migrated.yaml);
        let originals = split_documents(input);
        assert_eq!(docs.len(), 4);
        // Unchanged documents (comment included) are byte for byte the same.
        assert_eq!(docs[0], originals[0]);
        assert_eq!(docs[1], originals[1]);
        assert_eq!(docs[3], originals[3]);
        let cron: Value = serde_yaml_ng::from_str(strip_marker(docs[2]).1).unwrap();
        let pod = "/spec/jobTemplate/spec/template/spec";
        let value = |p: &str| {
            cron.pointer(&format!("{pod}{p}"))
                .and_then(Value::as_str)
                .unwrap()
                .to_owned()
        };
        // The namespace decides which resource `db` is.
        assert_eq!(
            value("/initContainers/0/env/0/value"),
            "db-password@azurekeyvault?vault=shop-kv"
        );
        assert_eq!(
            value("/containers/0/env/0/value"),
            "db-password@azurekeyvault?vault=shop-kv"
        );
        assert_eq!(value("/containers/0/env/1/value"), "nowhere@azurekeyvault");
        assert_eq!(
            value("/containers/0/env/2/value"),
            "x@azurekeyvault?vault=shop-kv"
        );
        assert_eq!(value("/containers/0/env/3/value"), "hello");
        assert_eq!(migrated.converted, 2);
        let notes = migrated.notes.join("\n");
        assert_eq!(migrated.notes.len(), 3, "{notes}");
        assert!(
            notes.contains("AzureKeyVaultSecret shop/synced syncs Secret api-token")
                && notes.contains("api-token@azurekeyvault?vault=shop-kv"),
            "{notes}"
        );
        assert!(notes.contains("document 3 (CronJob report): container report, env MISSING: no AzureKeyVaultSecret shop/nowhere"), "{notes}");
        assert!(
            notes.contains("document 4 (Pod old): container app was already wrapped by akv2k8s"),
            "{notes}"
        );
    }

    /// (akv2k8s cell, object type, contentType, transform, query, akv-env parameters).
    type Row = (
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        &'static str,
        &'static str,
    );

    /// The migration table in docs/install.md says what `convert` does, row by row.
    #[test]
    fn the_install_guides_migration_table_matches_the_conversion() {
        let guide = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/install.md"),
        )
        .unwrap();
        // (akv2k8s cell, object type, contentType, transform, query, akv-env parameters after vault=)
        let rows: &[Row] = &[
            (
                "| object `type: secret` |",
                "secret",
                None,
                Some("base64decode"),
                "",
                "&encoding=base64",
            ),
            (
                "| object `type: certificate`, no query or `?tls.crt`",
                "certificate",
                None,
                None,
                "tls.crt",
                "&type=certificate&part=cert",
            ),
            (
                "| object `type: certificate`, no query or `?tls.crt`",
                "certificate",
                None,
                None,
                "",
                "&type=certificate&part=cert",
            ),
            (
                "| object `type: certificate`, `?tls.key`",
                "certificate",
                None,
                None,
                "tls.key",
                "&type=certificate&part=key",
            ),
            (
                "| object `type: certificate`, `?raw`",
                "certificate",
                None,
                None,
                "raw",
                "",
            ),
            ("| object `type: key` |", "key", None, None, "", "&type=key"),
            (
                "| object `type: multi-key-value-secret`",
                "multi-key-value-secret",
                Some("application/x-json"),
                None,
                "field",
                "&key=field",
            ),
        ];
        for (cell, kind, content_type, transform, query, params) in rows {
            let line = guide
                .lines()
                .find(|l| l.starts_with(cell))
                .unwrap_or_else(|| panic!("no row {cell} in docs/install.md"));
            let documented = params.trim_start_matches('&');
            if documented.is_empty() {
                assert!(line.contains("no `type`"), "{line}");
            } else if documented != "key=field" {
                assert!(
                    line.contains(&format!("?{documented}`"))
                        || line.contains(&format!("`{documented}`")),
                    "{line} vs {documented}"
                );
            } else {
                assert!(line.contains("`?key=field`"), "{line}");
            }
            let akvs = AzureKeyVaultSecret {
                metadata: Metadata {
                    name: "r".into(),
                    namespace: None,
                },
                spec: Spec {
                    vault: VaultSpec {
                        name: "kv1".into(),
                        object: ObjectSpec {
                            name: "obj".into(),
                            kind: Some((*kind).into()),
                            version: None,
                            content_type: content_type.map(str::to_owned),
                        },
                    },
                    output: transform.map(|t| Output {
                        transform: vec![t.to_owned()],
                        ..Default::default()
                    }),
                },
            };
            let got = convert(&akvs, query).unwrap().to_string();
            assert_eq!(
                got,
                format!("obj@azurekeyvault?vault=kv1{params}"),
                "{cell} {query}"
            );
        }
    }

    #[test]
    fn unreadable_input_names_the_document() {
        let err = migrate("a: 1\n---\n: : [\n").unwrap_err().to_string();
        assert!(err.starts_with("document 2: not valid YAML"), "{err}");
    }
}
