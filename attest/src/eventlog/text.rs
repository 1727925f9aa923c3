//! Text in event data: NUL-terminated ASCII/UTF-8 and UTF-16LE strings, decoded without panics.

/// Decodes UTF-16LE up to the first NUL (or the end), replacing invalid units; an odd trailing
/// byte is ignored.
pub fn utf16_lossy(b: &[u8]) -> String {
    let units = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0);
    char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// The data as text if it is printable UTF-8 once trailing NULs are dropped (tabs and newlines
/// allowed), else `None`.
pub fn printable_utf8(b: &[u8]) -> Option<&str> {
    let end = b.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
    let t = std::str::from_utf8(b.get(..end)?).ok()?;
    (!t.is_empty()
        && t.chars()
            .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r')))
    .then_some(t)
}

/// The data as text if it looks like UTF-16LE text: at least one character, every second byte
/// of the ASCII range zero, and printable once decoded. An odd length is accepted only with a
/// trailing zero byte (systemd-boot has logged such command lines).
pub fn printable_utf16(b: &[u8]) -> Option<String> {
    if b.len() < 2 || (b.len() % 2 != 0 && b.last() != Some(&0)) {
        return None;
    }
    let ascii_like = b
        .chunks_exact(2)
        .take_while(|c| c != &[0, 0])
        .all(|c| c[1] == 0);
    if !ascii_like {
        return None;
    }
    let t = utf16_lossy(b);
    (!t.is_empty()
        && t.chars()
            .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r')))
    .then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_strings() {
        assert_eq!(printable_utf8(b"grub_cmd: ls\0"), Some("grub_cmd: ls"));
        assert_eq!(printable_utf8(b"\x01\x02"), None);
        assert_eq!(printable_utf8(b"\0\0"), None);
        assert_eq!(printable_utf16(b"a\0b\0\0\0").as_deref(), Some("ab"));
        assert_eq!(printable_utf16(b"ab"), None);
        assert_eq!(printable_utf16(b"a\0b\0\0\0\0").as_deref(), Some("ab"));
        assert_eq!(printable_utf16(b"a\0b\0c"), None);
        assert_eq!(utf16_lossy(b"a\0b"), "a");
    }
}
