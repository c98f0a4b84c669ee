//! The byte scanner.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A keyword or unquoted identifier.
    Word,
    /// A `backtick`-quoted identifier.
    QuotedIdent,
    /// A '…' or "…" literal (quotes included in `text`).
    String,
    Number,
    /// `@name`, `@'name'`, `@@name`, `@@session.name`.
    Variable,
    /// Multi-character operators such as `:=`, `<=>`, `->>`.
    Operator,
    /// One punctuation character.
    Punct,
    Semicolon,
    /// The body of a `/*vt+ … */` comment.
    Directive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    pub kind: TokenKind,
    pub text: &'a str,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// Splits `sql` into tokens, skipping whitespace and comments; the contents of executable comments
/// (`/*! … */`, `/*M! … */`) are scanned as code.
pub fn tokens(sql: &str) -> Vec<Token<'_>> {
    tokens_with(sql, true)
}

/// [`tokens`], reading a backslash in a string as an escape or (`NO_BACKSLASH_ESCAPES`, or a
/// multi-byte charset whose characters may end in 0x5C) as itself.
pub fn tokens_with(sql: &str, backslash_escapes: bool) -> Vec<Token<'_>> {
    tokens_read(
        sql,
        Reading {
            backslash_escapes,
            ..Reading::default()
        },
    )
}

/// One way the server may read a text, where its reading depends on what the gateway cannot know
/// for sure (the session's `sql_mode`, its character set, the server's version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// A backslash in a string escapes (else `NO_BACKSLASH_ESCAPES`, or a multi-byte charset whose
    /// characters may end in 0x5C).
    pub backslash_escapes: bool,
    /// A versioned executable comment (`/*!50700 … */`, `/*M!100500 … */`) is code; else a plain
    /// comment (the server runs it only when its version is at least the one written).
    pub versioned_code: bool,
    /// `--` followed by a character the server may take for a space in some charset (latin1's
    /// no-break space) opens a comment to the end of the line.
    pub odd_space_dashes: bool,
}

impl Default for Reading {
    fn default() -> Self {
        Reading {
            backslash_escapes: true,
            versioned_code: true,
            odd_space_dashes: false,
        }
    }
}

/// [`tokens`] under one [`Reading`].
pub fn tokens_read(sql: &str, reading: Reading) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    scan(sql, &mut out, reading);
    out
}

/// True when the text holds `--` followed by a character some charset takes for a space.
pub fn has_odd_space_dashes(sql: &str) -> bool {
    memchr::memmem::find_iter(sql.as_bytes(), b"--").any(|i| odd_space_at(sql, i + 2).is_some())
}

/// True when the text holds a versioned executable comment.
pub fn has_versioned_comment(sql: &str) -> bool {
    let b = sql.as_bytes();
    let digit_at = |k: usize| b.get(k).is_some_and(u8::is_ascii_digit);
    memchr::memmem::find_iter(b, b"/*").any(|i| {
        (b.get(i + 2) == Some(&b'!') && digit_at(i + 3))
            || (b.get(i + 2) == Some(&b'M') && b.get(i + 3) == Some(&b'!') && digit_at(i + 4))
    })
}

/// Characters the server may take for whitespace in some charset (latin1's no-break space, or a
/// byte that was not UTF-8 and reached the lexer replaced): they separate words here too.
const ODD_SPACES: &[&str] = &["\u{A0}", "\u{FFFD}", "\u{2000}", "\u{3000}"];

/// The length of the odd space starting at byte `i`, if one does. Each starts with a byte past
/// ASCII, so an ASCII byte (almost every byte of a query) is answered without a comparison.
fn odd_space_at(sql: &str, i: usize) -> Option<usize> {
    if sql.as_bytes().get(i).is_none_or(|c| c.is_ascii()) {
        return None;
    }
    let rest = sql.get(i..)?;
    ODD_SPACES
        .iter()
        .find(|sp| rest.starts_with(**sp))
        .map(|sp| sp.len())
}

fn scan<'a>(sql: &'a str, out: &mut Vec<Token<'a>>, reading: Reading) {
    let Reading {
        backslash_escapes,
        versioned_code,
        odd_space_dashes,
    } = reading;
    let b = sql.as_bytes();
    let n = b.len();
    let mut i = 0;
    // Executable comments (`/*!…`, `/*M!…`) open, whose contents are code: the server ends one at
    // the first `*/` outside a string, not at the first `*/` of the text.
    let mut executable = 0usize;
    // Slicing only ever happens at ASCII bytes, so every slice is valid UTF-8.
    let push = |kind: TokenKind, start: usize, end: usize, out: &mut Vec<Token<'a>>| {
        if let Some(text) = sql.get(start..end) {
            out.push(Token { kind, text });
        }
    };
    while i < n {
        let c = b[i];
        if let Some(sp) = odd_space_at(sql, i) {
            i += sp;
        } else if executable > 0 && c == b'*' && b.get(i + 1) == Some(&b'/') {
            executable -= 1;
            i += 2;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'#'
            || (c == b'-'
                && b.get(i + 1) == Some(&b'-')
                && (b
                    .get(i + 2)
                    .is_none_or(|x| x.is_ascii_whitespace() || x.is_ascii_control())
                    || (odd_space_dashes
                        && ODD_SPACES
                            .iter()
                            .any(|sp| sql.get(i + 2..).is_some_and(|r| r.starts_with(sp))))))
        {
            while i < n && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let body_start = i + 2;
            let body = &b[body_start..];
            if body.first() == Some(&b'!') || body.starts_with(b"M!") {
                let digits_start = body_start + if body[0] == b'!' { 1 } else { 2 };
                let mut s = digits_start;
                while s < n && b[s].is_ascii_digit() {
                    s += 1;
                }
                if versioned_code || s == digits_start {
                    executable += 1;
                    i = s;
                    continue;
                }
            }
            let end = find(b, body_start, b"*/").unwrap_or(n);
            let body = &b[body_start..end];
            if body.len() >= 3 && body[..3].eq_ignore_ascii_case(b"vt+") {
                push(TokenKind::Directive, body_start + 3, end, out);
            }
            i = (end + 2).min(n);
        } else if c == b'\'' || c == b'"' || c == b'`' {
            // Strings allow backslash escapes; identifiers do not; both double their quote.
            let start = i;
            i = end_of_quoted(b, i, c, c != b'`' && backslash_escapes);
            let kind = if c == b'`' {
                TokenKind::QuotedIdent
            } else {
                TokenKind::String
            };
            push(kind, start, i, out);
        } else if c == b'@' {
            let start = i;
            i += 1;
            if b.get(i) == Some(&b'@') {
                i += 1;
            }
            match b.get(i) {
                Some(&q) if q == b'\'' || q == b'"' || q == b'`' => {
                    i += 1;
                    while i < n && b[i] != q {
                        i += 1;
                    }
                    i = (i + 1).min(n);
                }
                _ => {
                    while i < n && (is_word_byte(b[i]) || b[i] == b'.') {
                        i += 1;
                    }
                }
            }
            push(TokenKind::Variable, start, i, out);
        } else if c.is_ascii_digit() {
            let start = i;
            while i < n && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
            push(TokenKind::Number, start, i, out);
        } else if is_word_byte(c) {
            let start = i;
            while i < n && is_word_byte(b[i]) && odd_space_at(sql, i).is_none() {
                i += 1;
            }
            // Never split inside a multi-byte character.
            while i < n && !sql.is_char_boundary(i) {
                i += 1;
            }
            push(TokenKind::Word, start, i, out);
        } else if c == b';' {
            push(TokenKind::Semicolon, i, i + 1, out);
            i += 1;
        } else {
            let start = i;
            const OPS: &[&[u8]] = &[
                b"<=>", b"->>", b":=", b"<=", b">=", b"<>", b"!=", b"||", b"&&", b"->", b"<<",
                b">>",
            ];
            if let Some(op) = OPS.iter().find(|op| b[i..].starts_with(op)) {
                i += op.len();
                push(TokenKind::Operator, start, i, out);
            } else {
                i += 1;
                while i < n && !sql.is_char_boundary(i) {
                    i += 1;
                }
                push(TokenKind::Punct, start, i, out);
            }
        }
    }
}

/// The index just past a quoted token starting at `start` (or the end of input if unterminated).
fn end_of_quoted(b: &[u8], start: usize, quote: u8, backslash_escapes: bool) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        if backslash_escapes && b[i] == b'\\' {
            i += 2;
        } else if b[i] == quote {
            if b.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay.get(from..)?, needle).map(|p| p + from)
}

#[cfg(test)]
mod odd_space_tests {
    use super::*;

    #[test]
    fn every_odd_space_starts_past_ascii() {
        // `odd_space_at` answers an ASCII byte without looking further.
        for sp in ODD_SPACES {
            assert!(!sp.as_bytes()[0].is_ascii(), "{sp:?}");
        }
        assert_eq!(odd_space_at("a\u{A0}b", 1), Some(2));
        assert_eq!(odd_space_at("a\u{A0}b", 0), None);
        assert_eq!(odd_space_at("é", 0), None);
    }
}
