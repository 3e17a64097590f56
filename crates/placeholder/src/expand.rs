//! The kubelet's `$(VAR)` expansion (kubernetes `third_party/forked/golang/expansion`), on bytes.
//!
//! One implementation serves three users: the webhook reads which variables a string refers to
//! (to decide whether it is composed from a placeholder), the injector expands the templates the
//! webhook left it once the placeholders are resolved, and the end-to-end kubelet stand-in
//! expands like the kubelet. Bytes, not `str`: a resolved secret need not be UTF-8.
//!
//! The rules, byte for byte as the kubelet's `Expand`:
//! - `$$` is an escape for one `$`;
//! - `$(NAME)` is replaced by the variable's value; an undefined `NAME` stays `$(NAME)`; the
//!   name is everything up to the first `)` (spaces, `$`, `(` included, empty allowed);
//! - a `$(` with no `)` after it stays as written, and scanning goes on after the `(`;
//! - any other `$` stays, together with the byte after it;
//! - a value that was substituted is never expanded again.

use std::borrow::Cow;

/// One piece of a string as the kubelet reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Bytes copied as they are (an escaped `$$` is already one `$` here).
    Text(Cow<'a, [u8]>),
    /// `$(NAME)`: the name between the parentheses.
    Ref(&'a [u8]),
}

/// Splits `input` into text and references, exactly where the kubelet would.
pub fn pieces(input: &[u8]) -> Vec<Piece<'_>> {
    let mut out: Vec<Piece<'_>> = Vec::new();
    let push_text = |out: &mut Vec<Piece<'_>>, text: &[u8]| {
        if text.is_empty() {
            return;
        }
        if let Some(Piece::Text(last)) = out.last_mut() {
            last.to_mut().extend_from_slice(text);
        } else {
            out.push(Piece::Text(Cow::Owned(text.to_vec())));
        }
    };
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < input.len() {
        if input[cursor] == b'$' && cursor + 1 < input.len() {
            push_text(&mut out, &input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            // (bytes consumed after the `$`)
            let advance = match rest[0] {
                b'$' => {
                    push_text(&mut out, b"$");
                    1
                }
                b'(' => match memchr::memchr(b')', &rest[1..]) {
                    Some(end) => {
                        out.push(Piece::Ref(&rest[1..1 + end]));
                        end + 2
                    }
                    None => {
                        push_text(&mut out, b"$(");
                        1
                    }
                },
                other => {
                    push_text(&mut out, &[b'$', other]);
                    1
                }
            };
            cursor += advance + 1;
            checkpoint = cursor;
        } else {
            cursor += 1;
        }
    }
    push_text(&mut out, &input[checkpoint..]);
    out
}

/// The names `input` refers to, in order, repeats included.
pub fn references(input: &[u8]) -> impl Iterator<Item = &[u8]> {
    // Most strings have no `$(` at all: skip the allocation for them.
    let has_ref = memchr::memmem::find(input, b"$(").is_some();
    has_ref
        .then(|| pieces(input))
        .into_iter()
        .flatten()
        .filter_map(|piece| match piece {
            Piece::Ref(name) => Some(name),
            Piece::Text(_) => None,
        })
}

/// Expands `input` like the kubelet: `lookup` answers a name's value, `None` when undefined.
pub fn expand<'v>(input: &[u8], mut lookup: impl FnMut(&[u8]) -> Option<&'v [u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    for piece in pieces(input) {
        match piece {
            Piece::Text(text) => out.extend_from_slice(&text),
            Piece::Ref(name) => match lookup(name) {
                Some(value) => out.extend_from_slice(value),
                None => {
                    out.extend_from_slice(b"$(");
                    out.extend_from_slice(name);
                    out.push(b')');
                }
            },
        }
    }
    out
}

/// Escapes `text` so that the kubelet's expansion gives it back unchanged: every `$` doubled.
/// Exact: each `$$` pair comes back as one `$`, and no `$(` survives to be expanded.
pub fn escape(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 8);
    for &b in text {
        if b == b'$' {
            out.push(b'$');
        }
        out.push(b);
    }
    out
}

/// [`escape`] for text.
pub fn escape_str(text: &str) -> String {
    text.replace('$', "$$")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup_in<'v>(vars: &'v [(&str, &str)]) -> impl FnMut(&[u8]) -> Option<&'v [u8]> {
        move |name| {
            vars.iter()
                .rev()
                .find(|(n, _)| n.as_bytes() == name)
                .map(|(_, v)| v.as_bytes())
        }
    }

    #[test]
    fn expansion_matches_the_kubelet() {
        let vars = [
            ("A", "alpha"),
            ("B", "$(A)"),
            ("EMPTY", ""),
            ("", "empty-name"),
            ("É", "accent"),
            ("A B", "spaced"),
            ("X", "first"),
            ("X", "second"),
        ];
        // (case, input, expected): rows from the kubelet's expand_test.go and edge cases.
        #[rustfmt::skip]
        let cases = [
            ("plain", "no refs", "no refs"),
            ("empty input", "", ""),
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
            ("lone dollar", "$", "$"),
            ("dollar then letter", "$A", "$A"),
            ("dollar then dollar at end", "a$$", "a$"),
            ("shell style braces kept", "${A}", "${A}"),
            ("unclosed", "$(A", "$(A"),
            ("unclosed at end", "x$(", "x$("),
            ("nested opener is part of the name", "$($(A)", "$($(A)"),
            ("nested ref after unclosed text", "$(x $(A)", "$(x $(A)"),
            ("closer ends the name early", "$(A))", "alpha)"),
            ("empty name is looked up", "$()", "empty-name"),
            ("unicode name", "$(É)", "accent"),
            ("unicode after dollar", "$é$(A)", "$éalpha"),
            ("unicode text", "ü$(A)ü", "üalphaü"),
            ("name with a space", "$(A B)", "spaced"),
            ("redefinition: last wins", "$(X)", "second"),
        ];
        for (case, input, expected) in cases {
            let got = expand(input.as_bytes(), lookup_in(&vars));
            assert_eq!(String::from_utf8(got).unwrap(), expected, "case {case:?}");
        }
        // Without the empty name defined, `$()` stays.
        assert_eq!(expand(b"$()", |_| None), b"$()");
    }

    #[test]
    fn bytes_that_are_not_utf8_pass_through() {
        let value: &[u8] = b"\xff\xfe";
        let got = expand(b"k=$(S)\xc3", |n| (n == b"S").then_some(value));
        assert_eq!(got, b"k=\xff\xfe\xc3");
    }

    #[test]
    fn references_are_what_the_kubelet_would_look_up() {
        let cases: [(&str, &[&str]); 6] = [
            ("none", &[]),
            ("$(A) and $(B) and $(A)", &["A", "B", "A"]),
            ("$$(A) $(B)", &["B"]),
            ("$(unclosed", &[]),
            ("$($(A)", &["$(A"]),
            ("$$$(A)", &["A"]),
        ];
        for (input, want) in cases {
            let got: Vec<&[u8]> = references(input.as_bytes()).collect();
            let want: Vec<&[u8]> = want.iter().map(|w| w.as_bytes()).collect();
            assert_eq!(got, want, "input {input:?}");
        }
    }

    #[test]
    fn escaping_then_expanding_gives_the_text_back() {
        for text in ["plain", "$(A)", "$$", "a$b", "$", "$(A", "$$(A)$", "ü$(É)"] {
            let escaped = escape(text.as_bytes());
            assert_eq!(escape_str(text).as_bytes(), escaped.as_slice());
            let vars = [("A", "alpha"), ("É", "x")];
            assert_eq!(
                expand(&escaped, lookup_in(&vars)),
                text.as_bytes(),
                "text {text:?}"
            );
        }
    }
}
