//! A key given twice at the top of a record.
//!
//! JSON allows it and `serde_json::Value` keeps the last copy silently, so
//! `{"project":"b", ..., "project":"a"}` would be checked and stored as
//! project `a` while its raw line, stored beside it and forwarded to
//! Graylog, also says `b`. The envelope (`project`, `id`, `kind`, `ts`...)
//! is at the top of the record, so a line that names any top-level key
//! twice is refused, with the key named.

use std::collections::HashSet;
use std::fmt;

use serde::Deserializer;
use serde::de::{IgnoredAny, MapAccess, Visitor};

/// The first top-level key that `line` (a JSON object) names twice; `None`
/// when every key is named once, or when `line` is not a JSON object (the
/// schema check reports that).
pub fn duplicate_top_level_key(line: &[u8]) -> Option<String> {
    let mut de = serde_json::Deserializer::from_slice(line);
    de.deserialize_map(FirstDuplicate).ok().flatten()
}

/// Walks the top-level object, skipping values, and answers the first key
/// seen twice.
struct FirstDuplicate;

impl<'de> Visitor<'de> for FirstDuplicate {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // Read to the end: serde_json fails a map left part-read.
        let (mut seen, mut first) = (HashSet::new(), None);
        while let Some(key) = map.next_key::<String>()? {
            map.next_value::<IgnoredAny>()?;
            if let Some(twice) = seen.replace(key) {
                first.get_or_insert(twice);
            }
        }
        Ok(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_named_twice_is_found_and_nested_ones_are_not_top_level() {
        assert_eq!(
            duplicate_top_level_key(br#"{"project":"b","id":1,"project":"a","id":2,"x":3}"#),
            Some("project".to_owned())
        );
        assert_eq!(
            duplicate_top_level_key(br#"{"project":"a","http":{"x":1,"x":2}}"#),
            None
        );
        assert_eq!(duplicate_top_level_key(br#"{"a":1,"b":[1,{"a":2}]}"#), None);
        assert_eq!(duplicate_top_level_key(b"[1,2]"), None);
    }
}
