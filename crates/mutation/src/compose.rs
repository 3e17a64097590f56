//! `$(VAR)` composition: strings that refer to a placeholder, kept exact under the kubelet's rules.
//!
//! The kubelet expands `$(VAR)` in env values and in `command`/`args` before the container
//! starts, with the raw placeholder text. For every string that is *composed* (it refers to a
//! variable bound, at that point, to a placeholder, to a ConfigMap-sourced value, or to another
//! composed string) the webhook:
//! 1. inserts *capture* env entries `AKV_ENV_REF_<VAR>: $(VAR)` where the kubelet would have
//!    looked `VAR` up (right before the env entry, or at the end of `env` for `command`/`args`),
//!    so the kubelet itself records each variable's value at exactly the right point (an
//!    undefined one stays `$(VAR)`, which is what it would have expanded to);
//! 2. rewrites the string as a template whose references are the captures, and escapes it
//!    (every `$` doubled) so the kubelet hands it over verbatim;
//! 3. tells the injector which env vars and arguments are templates and which env vars are
//!    captures. After resolving placeholders (captures holding one included), the injector
//!    expands each template with the same pure function and removes the captures.
//!
//! A reference to an earlier composed variable is inlined (its template, with its captures), so
//! a later redefinition of that variable cannot change what was composed. Strings that refer to
//! nothing of the above are left byte for byte.

use std::collections::HashMap;

use akv_placeholder::expand::{self, Piece};
use k8s_openapi::api::core::v1::EnvVar;
use serde_json::{Value, json};

/// The prefix of the capture env vars the webhook adds.
pub const CAPTURE_PREFIX: &str = "AKV_ENV_REF_";
/// Injector flag: this env var holds a template (repeated).
pub const FLAG_COMPOSE_ENV: &str = "--compose-env";
/// Injector flag: this program argument (0 = the program) holds a template (repeated).
pub const FLAG_COMPOSE_ARG: &str = "--compose-arg";
/// Injector flag: this env var is a capture, to be removed before exec (repeated).
pub const FLAG_CAPTURE: &str = "--capture";

/// What a variable is bound to at a point of the env list.
#[derive(Debug, Clone)]
enum Binding {
    /// A literal value that is not a placeholder, or a source that cannot hold one for us.
    Plain,
    /// A placeholder, or a value from a ConfigMap (which may be one).
    MaybePlaceholder,
    /// A composed string: its injector template.
    Composed(Vec<u8>),
}

/// The composition of one container, built while reading its env, then its argv.
#[derive(Debug, Clone)]
pub(crate) struct Composer {
    entries: Vec<Value>,
    end_captures: Vec<Value>,
    changed: bool,
    /// Name -> (binding, index of the env entry defining it).
    bindings: HashMap<Vec<u8>, (Binding, usize)>,
    /// `envFrom` has a ConfigMap: any name not bound in `env` may come from it.
    env_from_config_map: bool,
    /// (name, defining entry) -> capture name.
    captures: HashMap<(Vec<u8>, Option<usize>), String>,
    capture_names: Vec<String>,
    arg_templates: Vec<usize>,
}

impl Composer {
    /// Reads a container's env (typed and as raw JSON, same order) and rewrites composed values.
    pub(crate) fn new(typed: &[EnvVar], raw: &[Value], env_from_config_map: bool) -> Self {
        let mut composer = Composer {
            entries: Vec::with_capacity(raw.len()),
            end_captures: Vec::new(),
            changed: false,
            bindings: HashMap::new(),
            env_from_config_map,
            captures: HashMap::new(),
            capture_names: Vec::new(),
            arg_templates: Vec::new(),
        };
        for (index, (var, raw)) in typed.iter().zip(raw).enumerate() {
            let value = var.value.as_deref().unwrap_or_default();
            let binding = if !value.is_empty() {
                if akv_placeholder::is_placeholder(value) {
                    composer.entries.push(raw.clone());
                    Binding::MaybePlaceholder
                } else if composer.is_composed(value.as_bytes()) {
                    let template = composer.template(value.as_bytes(), false);
                    let mut entry = raw.clone();
                    entry["value"] = json!(lossless(&expand::escape(&template)));
                    composer.entries.push(entry);
                    composer.changed = true;
                    Binding::Composed(template)
                } else {
                    composer.entries.push(raw.clone());
                    Binding::Plain
                }
            } else {
                composer.entries.push(raw.clone());
                let from_config_map = var
                    .value_from
                    .as_ref()
                    .is_some_and(|f| f.config_map_key_ref.is_some());
                if from_config_map {
                    Binding::MaybePlaceholder
                } else {
                    Binding::Plain
                }
            };
            composer
                .bindings
                .insert(var.name.as_bytes().to_vec(), (binding, index));
        }
        composer
    }

    /// Does `text` refer to a variable that is (or may be) a placeholder, as bound now?
    fn is_composed(&self, text: &[u8]) -> bool {
        expand::references(text).any(|name| match self.bindings.get(name) {
            Some((Binding::Plain, _)) => false,
            Some(_) => true,
            None => self.env_from_config_map,
        })
    }

    /// The injector template of `text` as bound now: text escaped, references as captures.
    fn template(&mut self, text: &[u8], at_end: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() + 16);
        for piece in expand::pieces(text) {
            match piece {
                Piece::Text(t) => out.extend_from_slice(&expand::escape(&t)),
                Piece::Ref(name) => match self.bindings.get(name) {
                    Some((Binding::Composed(template), _)) => out.extend_from_slice(template),
                    other => {
                        let defined_at = other.map(|(_, index)| *index);
                        let capture = self.capture(name, defined_at, at_end);
                        out.extend_from_slice(b"$(");
                        out.extend_from_slice(capture.as_bytes());
                        out.push(b')');
                    }
                },
            }
        }
        out
    }

    /// The capture of `name` as defined by entry `defined_at`, added where needed.
    fn capture(&mut self, name: &[u8], defined_at: Option<usize>, at_end: bool) -> String {
        let key = (name.to_vec(), defined_at);
        if let Some(existing) = self.captures.get(&key) {
            return existing.clone();
        }
        let readable = std::str::from_utf8(name)
            .ok()
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
            .unwrap_or("VAR");
        let base = format!("{CAPTURE_PREFIX}{readable}");
        let mut capture = base.clone();
        let mut n = 1;
        while self.capture_names.contains(&capture) {
            n += 1;
            capture = format!("{base}_{n}");
        }
        // `name` was cut from a string of the spec at ASCII bytes: it is UTF-8.
        let entry = json!({ "name": capture, "value": format!("$({})", lossless(name)) });
        if at_end {
            self.end_captures.push(entry);
        } else {
            self.entries.push(entry);
        }
        self.changed = true;
        self.captures.insert(key, capture.clone());
        self.capture_names.push(capture.clone());
        capture
    }

    /// A word of the program's argv (`index` 0 = the program) from the pod's `command`/`args`:
    /// the word to put in `args` instead, if it is composed.
    pub(crate) fn word(&mut self, index: usize, word: &str) -> Option<String> {
        if !self.is_composed(word.as_bytes()) {
            return None;
        }
        let template = self.template(word.as_bytes(), true);
        self.arg_templates.push(index);
        Some(lossless(&expand::escape(&template)))
    }

    /// Whether the env list must be replaced.
    pub(crate) fn env_changed(&self) -> bool {
        self.changed
    }

    /// The new env list: the rewritten entries, then the captures for `command`/`args`.
    pub(crate) fn env(&self) -> Vec<Value> {
        self.entries
            .iter()
            .chain(&self.end_captures)
            .cloned()
            .collect()
    }

    /// The injector flags telling it which strings are templates and which vars are captures.
    /// Escaped, because the kubelet expands `args` too.
    pub(crate) fn flags(&self) -> Vec<String> {
        let mut templates: Vec<&[u8]> = self
            .bindings
            .iter()
            .filter(|(_, (binding, _))| matches!(binding, Binding::Composed(_)))
            .map(|(name, _)| name.as_slice())
            .collect();
        templates.sort_by_key(|name| self.bindings[*name].1);
        let mut flags = Vec::new();
        for name in templates {
            flags.push(format!(
                "{FLAG_COMPOSE_ENV}={}",
                expand::escape_str(&lossless(name))
            ));
        }
        for index in &self.arg_templates {
            flags.push(format!("{FLAG_COMPOSE_ARG}={index}"));
        }
        for capture in &self.capture_names {
            flags.push(format!("{FLAG_CAPTURE}={capture}"));
        }
        flags
    }
}

/// Bytes cut from UTF-8 text at ASCII boundaries, back to text.
fn lossless(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kubelet, for a container env: each literal value expanded with the entries before it.
    fn kubelet_env(env: &[Value]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for entry in env {
            let name = entry["name"].as_str().unwrap().to_owned();
            let value = entry["value"].as_str().unwrap_or_default();
            let expanded = expand::expand(value.as_bytes(), |n| {
                out.iter()
                    .rev()
                    .find(|(k, _)| k.as_bytes() == n)
                    .map(|(_, v)| v.as_bytes())
            });
            out.push((name, String::from_utf8(expanded).unwrap()));
        }
        out
    }

    fn env(pairs: &[(&str, &str)]) -> (Vec<EnvVar>, Vec<Value>) {
        let raw: Vec<Value> = pairs
            .iter()
            .map(|(n, v)| json!({"name": n, "value": v}))
            .collect();
        let typed = raw
            .iter()
            .map(|v| serde_json::from_value(v.clone()).unwrap())
            .collect();
        (typed, raw)
    }

    /// What the program sees: the kubelet's env, then templates expanded with resolved captures.
    fn program_env(pairs: &[(&str, &str)], secrets: &[(&str, &str)]) -> Vec<(String, String)> {
        let (typed, raw) = env(pairs);
        let composer = Composer::new(&typed, &raw, false);
        let kubelet = kubelet_env(&composer.env());
        let resolve = |v: &str| {
            secrets
                .iter()
                .find(|(p, _)| *p == v)
                .map_or(v.to_owned(), |(_, s)| s.to_string())
        };
        let captures: Vec<(String, String)> = kubelet
            .iter()
            .filter(|(n, _)| composer.capture_names.contains(n))
            .map(|(n, v)| (n.clone(), resolve(v)))
            .collect();
        let flags = composer.flags();
        let mut last: Vec<(String, String)> = Vec::new();
        for (n, v) in kubelet {
            last.retain(|(k, _)| *k != n);
            last.push((n, v));
        }
        last.into_iter()
            .filter(|(n, _)| !composer.capture_names.contains(n))
            .map(|(n, v)| {
                let v = if flags.contains(&format!("{FLAG_COMPOSE_ENV}={n}")) {
                    let out = expand::expand(v.as_bytes(), |name| {
                        captures
                            .iter()
                            .find(|(c, _)| c.as_bytes() == name)
                            .map(|(_, v)| v.as_bytes())
                    });
                    String::from_utf8(out).unwrap()
                } else {
                    resolve(&v)
                };
                (n, v)
            })
            .collect()
    }

    #[test]
    fn composed_values_see_the_secret_where_the_kubelet_would_have_put_it() {
        let secrets = [("pw@azurekeyvault", "s3cret$(X)")];
        #[rustfmt::skip]
        type Pairs<'a> = Vec<(&'a str, &'a str)>;
        let cases: Vec<(&str, Pairs, Pairs)> = vec![
            (
                "postgres url",
                vec![
                    ("PW", "pw@azurekeyvault"),
                    ("URL", "postgres://app:$(PW)@db/app"),
                ],
                vec![
                    ("PW", "s3cret$(X)"),
                    ("URL", "postgres://app:s3cret$(X)@db/app"),
                ],
            ),
            (
                "escape kept, plain ref expanded",
                vec![
                    ("U", "app"),
                    ("PW", "pw@azurekeyvault"),
                    ("URL", "$(U):$(PW) $$(PW) $(NOPE)"),
                ],
                vec![
                    ("U", "app"),
                    ("PW", "s3cret$(X)"),
                    ("URL", "app:s3cret$(X) $(PW) $(NOPE)"),
                ],
            ),
            (
                "later definitions stay literal",
                vec![("URL", "x$(PW)"), ("PW", "pw@azurekeyvault")],
                vec![("URL", "x$(PW)"), ("PW", "s3cret$(X)")],
            ),
            (
                "transitive, then the source redefined",
                vec![
                    ("PW", "pw@azurekeyvault"),
                    ("A", "a-$(PW)"),
                    ("A2", "[$(A)]"),
                    ("PW", "plain"),
                    ("B", "$(PW)"),
                ],
                vec![
                    ("A", "a-s3cret$(X)"),
                    ("A2", "[a-s3cret$(X)]"),
                    ("PW", "plain"),
                    ("B", "plain"),
                ],
            ),
            (
                "redefined composed var: last definition wins",
                vec![("PW", "pw@azurekeyvault"), ("A", "1$(PW)"), ("A", "2$(PW)")],
                vec![("PW", "s3cret$(X)"), ("A", "2s3cret$(X)")],
            ),
            (
                "unclosed and dollars around the ref",
                vec![("PW", "pw@azurekeyvault"), ("A", "$$$(PW)$($")],
                vec![("PW", "s3cret$(X)"), ("A", "$s3cret$(X)$($")],
            ),
        ];
        for (case, pairs, want) in cases {
            let got = program_env(&pairs, &secrets);
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            assert_eq!(got, want, "case {case:?}");
        }
    }

    #[test]
    fn strings_without_placeholder_references_are_left_alone() {
        let (typed, raw) = env(&[("A", "x"), ("B", "$(A)-$(NOPE)-$$(A)"), ("C", "$(B")]);
        let composer = Composer::new(&typed, &raw, false);
        assert!(!composer.env_changed());
        assert_eq!(composer.env(), raw);
        assert!(composer.flags().is_empty());
    }

    #[test]
    fn the_admitted_spec_stays_readable() {
        let (typed, raw) = env(&[
            ("PW", "pw@azurekeyvault"),
            ("URL", "postgres://app:$(PW)@db"),
        ]);
        let mut composer = Composer::new(&typed, &raw, false);
        assert_eq!(
            composer.word(2, "--password=$(PW)"),
            Some("--password=$$(AKV_ENV_REF_PW)".to_owned())
        );
        // A composed variable is inlined; the user's escape keeps its meaning.
        assert_eq!(
            composer.word(3, "$(URL) $$(PW)"),
            Some("postgres://app:$$(AKV_ENV_REF_PW)@db $$$$(PW)".to_owned())
        );
        assert_eq!(composer.word(4, "$(HOME)"), None);
        assert_eq!(
            composer.env(),
            vec![
                json!({"name": "PW", "value": "pw@azurekeyvault"}),
                json!({"name": "AKV_ENV_REF_PW", "value": "$(PW)"}),
                json!({"name": "URL", "value": "postgres://app:$$(AKV_ENV_REF_PW)@db"}),
            ]
        );
        assert_eq!(
            composer.flags(),
            [
                "--compose-env=URL",
                "--compose-arg=2",
                "--compose-arg=3",
                "--capture=AKV_ENV_REF_PW"
            ]
        );
    }

    #[test]
    fn config_map_values_are_composed_too() {
        let raw = vec![
            json!({"name": "PW", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "pw"}}}),
            json!({"name": "URL", "value": "u:$(PW)"}),
            json!({"name": "OTHER", "value": "$(FROM_ENV_FROM)"}),
        ];
        let typed: Vec<EnvVar> = raw
            .iter()
            .map(|v| serde_json::from_value(v.clone()).unwrap())
            .collect();
        let composer = Composer::new(&typed, &raw, false);
        assert_eq!(
            composer.flags(),
            ["--compose-env=URL", "--capture=AKV_ENV_REF_PW"]
        );
        let composer = Composer::new(&typed, &raw, true);
        assert_eq!(
            composer.flags(),
            [
                "--compose-env=URL",
                "--compose-env=OTHER",
                "--capture=AKV_ENV_REF_PW",
                "--capture=AKV_ENV_REF_FROM_ENV_FROM"
            ]
        );
    }
}
