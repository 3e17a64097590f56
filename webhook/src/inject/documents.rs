//! Multi-document YAML, split so untouched documents can be printed back byte for byte.

use serde_json::Value;

/// Splits multi-document YAML at `---` lines, keeping each document's text.
pub(crate) fn split_documents(input: &str) -> Vec<&str> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in input.split_inclusive('\n') {
        let bare = line.trim_end();
        if bare == "---" || bare.starts_with("--- ") {
            docs.push(&input[start..offset]);
            start = offset;
        }
        offset += line.len();
    }
    docs.push(&input[start..]);
    docs
}

/// Strips a leading `---` line (kept separately so the output can put it back).
pub(crate) fn strip_marker(doc: &str) -> (&str, &str) {
    let first_end = doc.find('\n').map_or(doc.len(), |i| i + 1);
    let first = doc[..first_end].trim_end();
    if first == "---" || first.starts_with("--- ") {
        (&doc[..first_end], &doc[first_end..])
    } else {
        ("", doc)
    }
}

/// Appends a document that was changed: its `---` marker (one is put between documents that
/// had none) and the value re-serialised, keys in their original order.
pub(crate) fn push_changed(
    out: &mut String,
    index: usize,
    marker: &str,
    value: &Value,
) -> Result<(), serde_yaml_ng::Error> {
    let yaml = serde_yaml_ng::to_string(value)?;
    out.push_str(if marker.is_empty() && index > 0 {
        "---\n"
    } else {
        marker
    });
    out.push_str(&yaml);
    Ok(())
}

/// `document 2 (Deployment web)`.
pub(crate) fn describe(value: &Value, number: usize) -> String {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("?");
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    format!("document {number} ({kind} {name})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_at_marker_lines_only() {
        let cases: [(&str, Vec<&str>); 4] = [
            ("a: 1\n", vec!["a: 1\n"]),
            ("a: 1\n---\nb: 2\n", vec!["a: 1\n", "---\nb: 2\n"]),
            (
                "---\na: '---'\n--- # c\nb: 2",
                vec!["", "---\na: '---'\n", "--- # c\nb: 2"],
            ),
            ("a: |\n  ---x\n", vec!["a: |\n  ---x\n"]),
        ];
        for (input, want) in cases {
            assert_eq!(split_documents(input), want, "input {input:?}");
            assert_eq!(split_documents(input).concat(), input);
        }
    }
}
