//! The one type that holds a resolved value.

use zeroize::Zeroizing;

/// A resolved Key Vault value.
///
/// Deliberately has no `Debug`, `Display`, `Clone` or serde impls, so a value cannot end up in a
/// log line, an error or a panic message by accident. The bytes are wiped when it is dropped.
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps bytes that are already owned; they are wiped on drop.
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(Zeroizing::new(bytes))
    }

    /// Takes a `String` without copying it (the buffer moves into the wiped vector).
    pub fn from_string(s: String) -> Self {
        Secret(Zeroizing::new(s.into_bytes()))
    }

    /// The value's bytes. Only the code that writes the child's environment should call this.
    pub fn expose_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes; safe to log.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the value is empty; safe to log.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_exactly_the_bytes_it_was_given() {
        let s = Secret::from_string("hunter2".to_owned());
        assert_eq!(s.expose_bytes(), b"hunter2");
        assert_eq!(s.len(), 7);
        assert!(!s.is_empty());
        assert!(Secret::new(Vec::new()).is_empty());
    }
}
