//! The reply of the processor's `POST /v1/ingest`, as the processor writes
//! it and the shipper reads it.
//!
//! A batch the processor takes at all is answered `200` with an
//! [`IngestReply`]: how many records it stored, how many it had already, and
//! the lines it refused on their own ([`Rejected`]). A batch refused whole
//! gets another status and `{"error": "..."}` instead.

use serde::{Deserialize, Serialize};

/// The processor's reply to a batch it took.
///
/// Every field defaults when missing, so a reader accepts a shorter reply
/// from an older or newer processor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestReply {
    /// Records stored by this batch.
    #[serde(default)]
    pub accepted: u64,
    /// Records already stored before (same id), not stored again.
    #[serde(default)]
    pub duplicates: u64,
    /// Lines refused on their own; the rest of the batch is stored.
    #[serde(default)]
    pub rejected: Vec<Rejected>,
}

/// One line of a batch the processor refused on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// 1-based line number in the (decompressed) body.
    pub line: usize,
    /// The record's id, when the line was JSON with one.
    #[serde(default)]
    pub id: Option<String>,
    /// Why, such as `/ts: ... is more than 300 s in the future`.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_round_trips_and_missing_fields_default() {
        let reply = IngestReply {
            accepted: 2,
            duplicates: 1,
            rejected: vec![Rejected {
                line: 3,
                id: None,
                reason: "line is not JSON".into(),
            }],
        };
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(
            text,
            r#"{"accepted":2,"duplicates":1,"rejected":[{"line":3,"id":null,"reason":"line is not JSON"}]}"#
        );
        assert_eq!(serde_json::from_str::<IngestReply>(&text).unwrap(), reply);
        assert_eq!(
            serde_json::from_str::<IngestReply>(r#"{"accepted":5}"#).unwrap(),
            IngestReply {
                accepted: 5,
                ..IngestReply::default()
            }
        );
    }
}
