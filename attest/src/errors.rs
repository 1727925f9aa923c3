//! Printing an error for people: its message and the messages of its causes, once each.
//!
//! The error types of Vouch do not repeat their source in their own message (no `{source}` in
//! `#[error]` when `source()` returns it), so the chain is simply every message in order.

use std::error::Error;

/// The error and its causes, joined with ": " (`reading the key /x: No such file or directory`).
///
/// A cause whose text equals the message before it exactly is left out: some third-party errors
/// (serde_json's I/O errors, for one) print their source as their own message.
pub fn chain(e: &dyn Error) -> String {
    let mut out = e.to_string();
    let mut last = out.clone();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let text = inner.to_string();
        if text != last {
            out.push_str(": ");
            out.push_str(&text);
        }
        last = text;
        cur = inner.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[derive(Debug, thiserror::Error)]
    #[error("reading the key {path}")]
    struct Outer {
        path: &'static str,
        #[source]
        source: Middle,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("malformed TPMT_PUBLIC")]
    struct Middle(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("the same text")]
    struct Repeats(#[source] Same);

    #[derive(Debug, thiserror::Error)]
    #[error("the same text")]
    struct Same(#[source] std::io::Error);

    #[test]
    fn every_message_once_in_order() {
        let e = Outer {
            path: "/k.pem",
            source: Middle(std::io::Error::other("short read")),
        };
        let s = chain(&e);
        assert_eq!(
            s,
            "reading the key /k.pem: malformed TPMT_PUBLIC: short read"
        );
        for part in [
            "reading the key /k.pem",
            "malformed TPMT_PUBLIC",
            "short read",
        ] {
            assert_eq!(s.matches(part).count(), 1, "{s}");
        }
    }

    #[test]
    fn a_cause_repeating_its_parent_exactly_is_left_out() {
        let e = Repeats(Same(std::io::Error::other("disk on fire")));
        assert_eq!(chain(&e), "the same text: disk on fire");
    }

    #[test]
    fn an_error_without_source_is_its_message() {
        assert_eq!(chain(&std::io::Error::other("x")), "x");
    }
}
