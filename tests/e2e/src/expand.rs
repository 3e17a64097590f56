//! Kubelet's `$(VAR)` expansion (kubernetes `third_party/forked/golang/expansion`), byte for
//! byte: the wrapped entrypoint only keeps working if the stand-in expands exactly like kubelet.

/// Expands `$(NAME)` with `lookup`; `$$` becomes `$`; an unknown `$(NAME)` and an unclosed `$(`
/// stay as written; any other `$` is kept. The product's own implementation
/// ([`akv_placeholder::expand`]), so the stand-in and the injector cannot drift apart.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let pieces = akv_placeholder::expand::pieces(input.as_bytes());
    let mut out = Vec::with_capacity(input.len());
    for piece in pieces {
        match piece {
            akv_placeholder::expand::Piece::Text(text) => out.extend_from_slice(&text),
            akv_placeholder::expand::Piece::Ref(name) => {
                // Names are cut at ASCII bytes, so they are UTF-8 like the input.
                let name = std::str::from_utf8(name).expect("a name cut at ASCII bytes");
                match lookup(name) {
                    Some(value) => out.extend_from_slice(value.as_bytes()),
                    None => out.extend_from_slice(format!("$({name})").as_bytes()),
                }
            }
        }
    }
    String::from_utf8(out).expect("pieces of UTF-8 cut at ASCII bytes")
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
