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

/// True for a character allowed in printable text: anything but a control character (Unicode
/// general category Cc), except tab, LF and CR.
fn printable_char(c: char) -> bool {
    !c.is_control() || matches!(c, '\t' | '\n' | '\r')
}

/// [`printable_char`] for every character of `t`, checked on the UTF-8 bytes: the C0 controls
/// and DEL are single bytes, the C1 controls U+0080..=U+009F are 0xC2 followed by 0x80..=0x9F.
fn printable_str(t: &str) -> bool {
    let mut prev = 0u8;
    t.bytes().all(|b| {
        let ok = match b {
            b'\t' | b'\n' | b'\r' => true,
            0x00..=0x1F | 0x7F => false,
            0x80..=0x9F => prev != 0xC2,
            _ => true,
        };
        prev = b;
        ok
    })
}

/// The data as text if it is printable UTF-8 once trailing NULs are dropped (tabs and newlines
/// allowed), else `None`.
pub fn printable_utf8(b: &[u8]) -> Option<&str> {
    let end = b.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
    let t = std::str::from_utf8(b.get(..end)?).ok()?;
    (!t.is_empty() && printable_str(t)).then_some(t)
}

/// True when the UTF-16LE data up to its first NUL unit is exactly the ASCII `name` (how
/// [`utf16_lossy`] would decode it, without building the string).
pub fn utf16_is(b: &[u8], name: &str) -> bool {
    let mut units = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0);
    name.bytes().all(|n| units.next() == Some(u16::from(n))) && units.next().is_none()
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
    (!t.is_empty() && t.chars().all(printable_char)).then_some(t)
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

    #[test]
    fn byte_check_equals_char_check_for_every_character() {
        let mut buf = [0u8; 4];
        for c in (0..=0x10_FFFFu32).filter_map(char::from_u32) {
            let one = c.encode_utf8(&mut buf);
            assert_eq!(printable_str(one), printable_char(c), "{:#x}", u32::from(c));
            let text = format!("a{c}\u{85}b{c}");
            assert_eq!(
                printable_str(&text),
                text.chars().all(printable_char),
                "{:#x}",
                u32::from(c)
            );
        }
    }

    #[test]
    fn utf16_names_compare_like_their_decoding() {
        let enc = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
        for (data, name) in [
            (enc("PK"), "PK"),
            (enc("PK\0"), "PK"),
            (enc("PK\0junk"), "PK"),
            (enc("PKX"), "PK"),
            (enc("P"), "PK"),
            (enc("db"), "dbx"),
            (enc("dbx"), "dbx"),
            (enc(""), "PK"),
            (vec![0x50, 0x00, 0x00, 0xD8], "P"),
        ] {
            assert_eq!(
                utf16_is(&data, name),
                utf16_lossy(&data) == name,
                "{data:?} {name}"
            );
        }
        let mut odd = enc("KEK");
        odd.push(0x41);
        assert!(utf16_is(&odd, "KEK"));
    }
}
