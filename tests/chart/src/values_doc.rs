//! The chart README's values table, generated from `values.yaml`'s helm-docs style comments
//! (`# -- description` above a key, continued on the following `#` lines), so the table cannot
//! drift from the values: tests/chart diff-checks it, `AKV_ENV_UPDATE_CHART_README=1` rewrites it.

use serde_yaml_ng::Value;

/// One documented key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Dotted path, e.g. `imageLookup.cacheTTL`.
    pub key: String,
    pub kind: &'static str,
    /// The default, as compact JSON.
    pub default: String,
    pub description: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ValuesDocError {
    #[error("values.yaml is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("values.yaml line {line}: a `# --` comment is not followed by a key")]
    Dangling { line: usize },
    #[error("values.yaml: documented key {0} not found in the parsed values")]
    Missing(String),
}

/// Rows for every `# --` documented key, in file order. Pure.
pub fn rows(values_yaml: &str) -> Result<Vec<Row>, ValuesDocError> {
    let values: Value = serde_yaml_ng::from_str(values_yaml)?;
    let mut rows = Vec::new();
    // (indent, key) of the mappings the current line is inside.
    let mut path: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (number, line) in values_yaml.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(text) = trimmed.strip_prefix("# --") {
            pending = Some((number + 1, text.trim().to_owned()));
            continue;
        }
        if let Some(text) = trimmed.strip_prefix('#') {
            if let Some((_, description)) = &mut pending {
                description.push(' ');
                description.push_str(text.trim());
            }
            continue;
        }
        if trimmed.is_empty() || trimmed.starts_with('-') {
            continue;
        }
        let Some((key, _)) = trimmed.split_once(':') else {
            continue;
        };
        while path.last().is_some_and(|(i, _)| *i >= indent) {
            path.pop();
        }
        path.push((indent, key.trim().to_owned()));
        if let Some((_, description)) = pending.take() {
            let keys: Vec<&str> = path.iter().map(|(_, k)| k.as_str()).collect();
            let mut value = &values;
            for k in &keys {
                value = value
                    .get(*k)
                    .ok_or_else(|| ValuesDocError::Missing(keys.join(".")))?;
            }
            rows.push(Row {
                key: keys.join("."),
                kind: kind(value),
                default: compact(value),
                description,
            });
        }
    }
    if let Some((line, _)) = pending {
        return Err(ValuesDocError::Dangling { line });
    }
    Ok(rows)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int",
        Value::Number(_) => "float",
        Value::String(_) => "string",
        Value::Sequence(_) => "list",
        Value::Mapping(_) | Value::Tagged(_) => "object",
    }
}

/// Compact JSON in the file's key order: `{"requests": {"cpu": "50m"}}`.
fn compact(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => serde_json::to_string(s).expect("strings serialise"),
        Value::Sequence(items) => format!(
            "[{}]",
            items.iter().map(compact).collect::<Vec<_>>().join(", ")
        ),
        Value::Mapping(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", compact(k), compact(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Tagged(tagged) => compact(&tagged.value),
    }
}

/// The Markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| Key | Type | Default | Description |\n|-----|------|---------|-------------|\n",
    );
    for row in rows {
        out.push_str(&format!(
            "| `{}` | {} | `{}` | {} |\n",
            row.key,
            row.kind,
            row.default,
            row.description.replace('|', "\\|")
        ));
    }
    out
}

/// `readme` with the table after the `## Values` heading replaced by `table`; `None` if the
/// README has no such table.
pub fn replace_table(readme: &str, table: &str) -> Option<String> {
    let heading = readme.find("\n## Values\n")?;
    let start = heading + readme[heading..].find("\n| Key |")? + 1;
    let rest = &readme[start..];
    let len = rest
        .split_inclusive('\n')
        .take_while(|l| l.starts_with('|'))
        .map(str::len)
        .sum::<usize>();
    Some(format!("{}{table}{}", &readme[..start], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_keys_become_rows_with_their_defaults() {
        let yaml = "\
# -- Replicas.
replicaCount: 2
image:
  # -- Repository,
  # continued.
  repository: r
  tag: \"\"
# -- Resources.
resources:
  requests:
    cpu: 50m
list:
  - a
# -- After a list.
flag: true
";
        let got = rows(yaml).unwrap();
        let keys: Vec<(&str, &str, &str, &str)> = got
            .iter()
            .map(|r| {
                (
                    r.key.as_str(),
                    r.kind,
                    r.default.as_str(),
                    r.description.as_str(),
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                ("replicaCount", "int", "2", "Replicas."),
                (
                    "image.repository",
                    "string",
                    "\"r\"",
                    "Repository, continued."
                ),
                (
                    "resources",
                    "object",
                    "{\"requests\": {\"cpu\": \"50m\"}}",
                    "Resources."
                ),
                ("flag", "bool", "true", "After a list."),
            ]
        );
        assert!(matches!(
            rows("# -- nothing follows\n"),
            Err(ValuesDocError::Dangling { line: 1 })
        ));
        let readme =
            "# T\n\n## Values\n\nIntro.\n\n| Key | x |\n|--|--|\n| old | row |\n\nAfter.\n";
        let replaced = replace_table(readme, &table(&got[..1])).unwrap();
        assert!(
            replaced.contains("| `replicaCount` | int | `2` | Replicas. |\n\nAfter.\n"),
            "{replaced}"
        );
        assert!(!replaced.contains("old"));
    }
}
