//! Ingest tokens: which project a bearer token belongs to.
//!
//! Tokens are compared in constant time, and every configured token is
//! compared on every lookup, so neither the position of the first differing
//! byte nor which token matched shows in the response time.

use crate::config::TokenConfig;

/// The tokens of the current config; replaced whole on SIGHUP.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<TokenConfig>,
}

impl Tokens {
    pub fn new(entries: Vec<TokenConfig>) -> Self {
        Tokens { entries }
    }

    /// The project of a token, if the token is known.
    pub fn project_of(&self, token: &[u8]) -> Option<&str> {
        let mut found: Option<&str> = None;
        for entry in &self.entries {
            // No early exit: look at every token whatever matched before.
            if constant_time_eq(entry.token.as_bytes(), token) {
                found = Some(entry.project.as_str());
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer_token(header: &[u8]) -> Option<&[u8]> {
    let rest = header
        .strip_prefix(b"Bearer ")
        .or_else(|| header.strip_prefix(b"bearer "))?;
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Compares two byte strings in time that depends only on their lengths'
/// maximum, never on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// A random token for the development default: 32 hex digits from a UUID v4.
pub fn random_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(vec![
            TokenConfig {
                token: "aaaaaaaaaaaaaaaa".into(),
                project: "shop".into(),
            },
            TokenConfig {
                token: "bbbbbbbbbbbbbbbb".into(),
                project: "blog".into(),
            },
        ])
    }

    #[test]
    fn known_tokens_map_to_their_project() {
        assert_eq!(tokens().project_of(b"bbbbbbbbbbbbbbbb"), Some("blog"));
        assert_eq!(tokens().project_of(b"aaaaaaaaaaaaaaaa"), Some("shop"));
    }

    #[test]
    fn prefixes_extensions_and_empty_tokens_are_unknown() {
        let t = tokens();
        assert_eq!(t.project_of(b"aaaaaaaaaaaaaaa"), None);
        assert_eq!(t.project_of(b"aaaaaaaaaaaaaaaaa"), None);
        assert_eq!(t.project_of(b""), None);
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer_token(b"Bearer abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
    }
}
