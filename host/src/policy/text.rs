//! Text a policy hands the host (log lines, `err` messages, stderr in trap
//! reports) is made safe before it is stored or logged: every control or
//! line/direction-changing character is escaped, then the result is cut to a
//! bound, so a policy can neither forge host log lines nor grow a record past
//! the limit it was given.

/// Escaped: control characters (newlines, ANSI escapes, NUL), the Unicode line
/// and paragraph separators, and the bidirectional overrides and isolates.
fn escaped(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with suspicious characters escaped (`\n`, `\u{1b}`) and cut to at most
/// `max` bytes plus an ellipsis.
pub(crate) fn sanitize(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 4);
    let mut buf = [0u8; 4];
    for c in s.chars() {
        let before = out.len();
        if escaped(c) {
            out.extend(c.escape_default());
        } else {
            out.push_str(c.encode_utf8(&mut buf));
        }
        if out.len() > max {
            out.truncate(before);
            out.push('…');
            return out;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_text_cannot_forge_host_lines_or_outgrow_its_bound() {
        assert_eq!(
            sanitize("ok\n2026-01-01 ERROR forged\u{1b}[31m", 100),
            "ok\\n2026-01-01 ERROR forged\\u{1b}[31m"
        );
        assert_eq!(
            sanitize("a\u{202e}b\u{2028}c", 100),
            "a\\u{202e}b\\u{2028}c"
        );
        assert_eq!(sanitize("plain", 100), "plain");
        // Escaping happens before the cut: 1000 ESCs stay within the bound.
        let cut = sanitize(&"\u{1b}".repeat(1000), 64);
        assert!(cut.len() <= 64 + '…'.len_utf8(), "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert_eq!(sanitize("ééé", 3), "é…");
    }
}
