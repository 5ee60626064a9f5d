//! Join keys between the parts: normalized SQL and correlation IDs.
//!
//! The same statement reaches the processor three ways: as PHP sent it (with
//! bound parameters or literals), as pg_stat_statements normalized it, and as
//! the PostgreSQL log printed it. [`normalize`] maps all three to one text, in
//! the spirit of pg_stat_statements: constants become `$n`, comments and
//! white space runs go, and `IN (...)` lists of constants collapse to one, so
//! `WHERE id IN (1, 2, 3)` and `WHERE id IN ($1)` meet.

/// The prefix of `application_name` that carries a request's correlation ID.
pub const APPLICATION_NAME_PREFIX: &str = "bitville:";

/// Normalizes SQL text into its fingerprint.
///
/// Literals (strings, numbers, `$n` and `?` placeholders, Phalcon's `:name`
/// placeholders) become `$1`, `$2`, ... in order; keywords are left as written
/// apart from white space, which is folded to single spaces. A trailing
/// semicolon is dropped.
pub fn normalize(sql: &str) -> String {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut params = 0u32;
    let mut i = 0;
    let mut pending_space = false;

    let mut push_param = |out: &mut String, pending_space: &mut bool| {
        flush_space(out, pending_space);
        params += 1;
        out.push('$');
        out.push_str(&params.to_string());
    };

    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => {
                pending_space = !out.is_empty();
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                pending_space = !out.is_empty();
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = skip_block_comment(bytes, i);
                pending_space = !out.is_empty();
            }
            b'\'' => {
                i = skip_quoted(bytes, i + 1, b'\'');
                push_param(&mut out, &mut pending_space);
            }
            b'"' => {
                let end = skip_quoted(bytes, i + 1, b'"');
                flush_space(&mut out, &mut pending_space);
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'$' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                push_param(&mut out, &mut pending_space);
            }
            b'$' => {
                // Dollar quoting: $$...$$ or $tag$...$tag$.
                match dollar_quote_end(sql, i) {
                    Some(end) => {
                        i = end;
                        push_param(&mut out, &mut pending_space);
                    }
                    None => {
                        flush_space(&mut out, &mut pending_space);
                        out.push('$');
                        i += 1;
                    }
                }
            }
            b'?' => {
                i += 1;
                push_param(&mut out, &mut pending_space);
            }
            b':' if bytes.get(i + 1) == Some(&b':') => {
                // A cast (`::int`) stays as written.
                flush_space(&mut out, &mut pending_space);
                out.push_str("::");
                i += 2;
            }
            b':' if bytes
                .get(i + 1)
                .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_') =>
            {
                i += 1;
                while i < bytes.len() && is_ident_byte(bytes[i]) {
                    i += 1;
                }
                // Phalcon's named placeholders, `:name:` or `:name`.
                if bytes.get(i) == Some(&b':') && bytes.get(i + 1) != Some(&b':') {
                    i += 1;
                }
                push_param(&mut out, &mut pending_space);
            }
            b'0'..=b'9' if !prev_is_ident(&out, pending_space) => {
                i = skip_number(bytes, i);
                push_param(&mut out, &mut pending_space);
            }
            b'-' | b'+' if is_signed_number(bytes, i) && !prev_is_operand(&out) => {
                i = skip_number(bytes, i + 1);
                push_param(&mut out, &mut pending_space);
            }
            b';' if sql[i + 1..].trim().is_empty() => {
                i = bytes.len();
            }
            _ => {
                flush_space(&mut out, &mut pending_space);
                let ch_len = utf8_len(c);
                out.push_str(&sql[i..i + ch_len]);
                i += ch_len;
            }
        }
    }
    collapse_in_lists(&out)
}

/// The correlation ID carried by an `application_name` of `bitville:<uuid>`:
/// only a UUID v4, as the schemas require of every correlation ID (the
/// agent makes nothing else), lowercased. Any other text after the prefix,
/// another UUID version among them, carries none; it stays in
/// `application_name`.
pub fn parse_correlation_id(application_name: &str) -> Option<String> {
    let id = application_name
        .strip_prefix(APPLICATION_NAME_PREFIX)?
        .get(..36)?
        .to_ascii_lowercase();
    crate::read::is_uuid_v4(&id).then_some(id)
}

fn flush_space(out: &mut String, pending_space: &mut bool) {
    if *pending_space {
        let glue = matches!(out.as_bytes().last(), Some(b'(') | Some(b'.'));
        if !glue {
            out.push(' ');
        }
        *pending_space = false;
    }
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

/// A digit right after an identifier character belongs to the identifier (`t1`).
fn prev_is_ident(out: &str, pending_space: bool) -> bool {
    !pending_space
        && out
            .as_bytes()
            .last()
            .is_some_and(|b| is_ident_byte(*b) || *b == b'$')
}

/// A sign after an operand is an operator (`a - 1`), otherwise part of a literal (`= -1`).
fn prev_is_operand(out: &str) -> bool {
    let trimmed = out.trim_end();
    if match trimmed.as_bytes().last() {
        None => false,
        Some(b) => is_ident_byte(*b) || *b == b')' || *b == b'"' || *b == b']',
    } {
        {
            // Keywords before a sign still take a literal: `WHERE x = 1 AND -1 < y` is rare,
            // `SELECT -1` is common.
            let word = trimmed
                .rsplit(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .next();
            !matches!(
                word.map(str::to_ascii_uppercase).as_deref(),
                Some(
                    "SELECT" | "AND" | "OR" | "WHERE" | "THEN" | "ELSE" | "WHEN" | "RETURN" | "BY"
                )
            )
        }
    } else {
        false
    }
}

fn is_signed_number(bytes: &[u8], i: usize) -> bool {
    bytes.get(i + 1).is_some_and(u8::is_ascii_digit)
}

fn skip_number(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len()
        && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.' || bytes[i] == b'_')
    {
        // Exponent signs: 1e-5.
        if (bytes[i] == b'e' || bytes[i] == b'E')
            && matches!(bytes.get(i + 1), Some(b'-') | Some(b'+'))
        {
            i += 1;
        }
        i += 1;
    }
    i
}

fn skip_quoted(bytes: &[u8], mut i: usize, quote: u8) -> usize {
    while i < bytes.len() {
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        if bytes[i] == b'\\' && quote == b'\'' {
            i += 1;
        }
        i += 1;
    }
    bytes.len()
}

fn skip_block_comment(bytes: &[u8], mut i: usize) -> usize {
    let mut depth = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'/' && bytes[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

fn dollar_quote_end(sql: &str, start: usize) -> Option<usize> {
    let rest = &sql[start + 1..];
    let tag_len = rest.find('$')?;
    let tag = &rest[..tag_len];
    if !tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    let delimiter = &sql[start..start + tag_len + 2];
    let body_start = start + tag_len + 2;
    let end = sql[body_start..].find(delimiter)?;
    Some(body_start + end + delimiter.len())
}

/// Collapses `IN ($1, $2, $3)` to `IN ($1)` and renumbers the parameters, so
/// lists of any length share one fingerprint.
fn collapse_in_lists(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(pos) = find_param_list(rest) {
        let (head, tail) = rest.split_at(pos.0);
        out.push_str(head);
        out.push_str("($0)");
        rest = &tail[pos.1 - pos.0..];
    }
    out.push_str(rest);
    renumber(&out)
}

/// The byte range of the next parenthesized list of two or more parameters.
fn find_param_list(sql: &str) -> Option<(usize, usize)> {
    let bytes = sql.as_bytes();
    let mut from = 0;
    while let Some(open) = sql[from..].find("($").map(|p| p + from) {
        let mut i = open + 1;
        let mut count = 0;
        loop {
            if bytes.get(i) != Some(&b'$') {
                break;
            }
            i += 1;
            let digits = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i == digits {
                break;
            }
            count += 1;
            match bytes.get(i) {
                Some(b')') => {
                    if count >= 2 {
                        return Some((open, i + 1));
                    }
                    break;
                }
                Some(b',') => {
                    i += 1;
                    if bytes.get(i) == Some(&b' ') {
                        i += 1;
                    }
                }
                _ => break,
            }
        }
        from = open + 1;
    }
    None
}

fn renumber(sql: &str) -> String {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut n = 0;
    let mut i = 0;
    let mut last = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            out.push_str(&sql[last..i]);
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
            last = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&sql[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_placeholders_become_numbered_parameters() {
        assert_eq!(
            normalize("SELECT * FROM orders WHERE id = 42 AND status = 'paid'"),
            "SELECT * FROM orders WHERE id = $1 AND status = $2"
        );
        assert_eq!(
            normalize("SELECT * FROM orders WHERE id = ? AND status = :status"),
            "SELECT * FROM orders WHERE id = $1 AND status = $2"
        );
        assert_eq!(
            normalize("SELECT * FROM orders WHERE id = $1 AND status = $2"),
            "SELECT * FROM orders WHERE id = $1 AND status = $2"
        );
    }

    #[test]
    fn php_text_pg_stat_statements_text_and_log_text_meet() {
        let from_php = "SELECT name\n  FROM users\n WHERE id IN (:a, :b, :c) -- lookup";
        let from_statements = "SELECT name FROM users WHERE id IN ($1, $2)";
        let from_log = "/* bitville:1b4e28ba */ SELECT name FROM users WHERE id IN (7,8,9,10);";
        assert_eq!(
            normalize(from_php),
            "SELECT name FROM users WHERE id IN ($1)"
        );
        assert_eq!(normalize(from_statements), normalize(from_php));
        assert_eq!(normalize(from_log), normalize(from_php));
    }

    #[test]
    fn identifiers_casts_and_quoted_names_are_kept() {
        assert_eq!(
            normalize(r#"SELECT t1.a::int, "Weird 1" FROM t1 WHERE b = 'it''s' -- x"#),
            r#"SELECT t1.a::int, "Weird 1" FROM t1 WHERE b = $1"#
        );
        assert_eq!(
            normalize("SELECT $tag$ a 'b' $tag$, 1.5e-3"),
            "SELECT $1, $2"
        );
    }

    #[test]
    fn signs_are_literals_after_operators_and_operators_after_operands() {
        assert_eq!(
            normalize("SELECT -1, a - 1 FROM t"),
            "SELECT $1, a - $2 FROM t"
        );
        assert_eq!(
            normalize("UPDATE t SET n = n + 1"),
            "UPDATE t SET n = n + $1"
        );
    }

    #[test]
    fn correlation_ids_come_only_from_the_bitville_prefix() {
        let id = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";
        assert_eq!(
            parse_correlation_id(&format!("bitville:{id}")),
            Some(id.to_owned())
        );
        assert_eq!(
            parse_correlation_id(&format!("bitville:{}", id.to_uppercase())),
            Some(id.to_owned())
        );
        assert_eq!(parse_correlation_id(&format!("psql {id}")), None);
        assert_eq!(parse_correlation_id("bitville:not-a-uuid"), None);
        // Another UUID version, or the wrong variant bits, is no correlation
        // ID of ours: pg-watch would send it and the processor refuse the
        // whole sample (found by pg-watch's csvlog and jsonlog fuzz targets).
        for other in [
            "bitville:1b4e28ba-2fa1-11d2-883f-0016d3cca427", // version 1
            "bitville:7c9e6679-7424-de05-944b-e07fc1f90ae7", // no version digit
            "bitville:7c9e6679-7425-40de-719b-e07fc1f90ae7", // variant bits wrong
        ] {
            assert_eq!(parse_correlation_id(other), None, "{other}");
        }
    }
}
