//! Kubelet's `$(VAR)` expansion (kubernetes `third_party/forked/golang/expansion`), byte for
//! byte: the wrapped entrypoint only keeps working if the stand-in expands exactly like kubelet.

/// Expands `$(NAME)` with `lookup`; `$$` becomes `$`; an unknown `$(NAME)` and an unclosed `$(`
/// stay as written; any other `$` is kept.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            // How many bytes after the `$` were consumed.
            let advance = match rest.as_bytes()[0] {
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest[1..].find(')') {
                    Some(end) => {
                        let name = &rest[1..1 + end];
                        match lookup(name) {
                            Some(value) => out.push_str(&value),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        end + 2
                    }
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                _ => {
                    // Kubelet copies `$` and the next byte; keep whole characters instead, which
                    // gives the same bytes.
                    out.push('$');
                    0
                }
            };
            cursor += advance + 1;
            checkpoint = cursor;
        } else {
            cursor += 1;
        }
    }
    out.push_str(&input[checkpoint..]);
    out
}

/// Looks `name` up in `(name, value)` pairs, the last definition winning (kubelet's map).
pub fn lookup_in<'a>(vars: &'a [(String, String)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        vars.iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_matches_kubelet() {
        let vars: Vec<(String, String)> = [("A", "alpha"), ("B", "$(A)"), ("EMPTY", "")]
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        // (case, input, expected): rows from kubelet's expand_test.go and edge cases.
        let cases = [
            ("plain", "no refs", "no refs"),
            ("one ref", "$(A)", "alpha"),
            ("ref in text", "x-$(A)-y", "x-alpha-y"),
            ("two refs", "$(A)$(A)", "alphaalpha"),
            ("empty value", "[$(EMPTY)]", "[]"),
            ("undefined kept", "$(NOPE)", "$(NOPE)"),
            ("values are not re-expanded", "$(B)", "$(A)"),
            ("escaped ref", "$$(A)", "$(A)"),
            ("escaped dollar", "$$", "$"),
            ("double escape then ref", "$$$(A)", "$alpha"),
            ("four dollars", "$$$$(A)", "$$(A)"),
            ("lone dollar at end", "abc$", "abc$"),
            ("dollar then letter", "$A", "$A"),
            ("shell style braces kept", "${A}", "${A}"),
            ("unclosed", "$(A", "$(A"),
            ("unclosed then ref", "$($(A)", "$($(A)"),
            ("empty name", "$()", "$()"),
            ("utf-8 after dollar", "$é$(A)", "$éalpha"),
            ("ref with spaces is a name", "$(A B)", "$(A B)"),
        ];
        for (case, input, expected) in cases {
            assert_eq!(expand(input, lookup_in(&vars)), expected, "case {case:?}");
        }
    }

    #[test]
    fn last_definition_wins() {
        let vars = vec![
            ("X".to_string(), "first".to_string()),
            ("X".to_string(), "second".to_string()),
        ];
        assert_eq!(expand("$(X)", lookup_in(&vars)), "second");
    }
}
