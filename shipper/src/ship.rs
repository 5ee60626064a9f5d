//! [`Shipper`]: POSTs one gzip-compressed batch to the processor's
//! `/v1/ingest` and says what the reply means for the batch.

use bitville_daemon::check::error_chain;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};

/// The processor's reply to an accepted batch, and one line it refused on
/// its own: wire types, defined once in `bitville-schemas`.
pub use bitville_schemas::{IngestReply, Rejected};

/// What a send attempt means for the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// 2xx: every line is stored, except the ones listed as rejected.
    Acked(IngestReply),
    /// The processor is down, overloaded, not ready or refuses the token:
    /// send the same batch again later (after `after` when it said so).
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// 413: the batch must be split.
    TooLarge,
    /// Another 4xx such as 400: this body will never be taken as it is; the
    /// batch is split down to single lines, which then go to quarantine.
    Refused { reason: String },
    /// 500: the processor failed on this batch. Retried like [`Retry`]; a
    /// batch that keeps failing while others are stored holds a line that
    /// the processor cannot take, which the engine isolates by splitting.
    ///
    /// [`Retry`]: SendOutcome::Retry
    Failed { reason: String },
}

/// Errors of [`Shipper::new`].
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("processor URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// How long an idle connection to the processor is kept for reuse: under
/// the processor's `header_timeout_s` (10 s by default), after which it
/// closes idle connections, so a batch is never sent on one it is closing.
const POOL_IDLE: Duration = Duration::from_secs(5);

/// The HTTP client of the engine.
#[derive(Debug, Clone)]
pub struct Shipper {
    client: reqwest::Client,
    url: reqwest::Url,
    token: String,
}

impl Shipper {
    /// A shipper posting to `processor_url` (the base URL, or the full
    /// `/v1/ingest` URL) with `token`; a request slower than `timeout` fails.
    ///
    /// # Errors
    /// The URL is not http(s), or the TLS client cannot be built.
    pub fn new(processor_url: &str, token: &str, timeout: Duration) -> Result<Shipper, ShipError> {
        let bad = |reason: &str| ShipError::Url {
            url: processor_url.to_owned(),
            reason: reason.to_owned(),
        };
        let mut url = reqwest::Url::parse(processor_url).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("scheme is not http or https"));
        }
        if !url.path().ends_with("/v1/ingest") {
            let path = format!("{}/v1/ingest", url.path().trim_end_matches('/'));
            url.set_path(&path);
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(POOL_IDLE)
            .build()?;
        Ok(Shipper {
            client,
            url,
            token: token.to_owned(),
        })
    }

    /// The ingest URL.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// Sends one gzip-compressed NDJSON body.
    pub async fn send(&self, body: Bytes) -> SendOutcome {
        let resp = self
            .client
            .post(self.url.clone())
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
            .header(CONTENT_TYPE, "application/x-ndjson")
            .header(CONTENT_ENCODING, "gzip")
            .body(body)
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                return SendOutcome::Retry {
                    reason: error_chain(&e),
                    after: None,
                };
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return SendOutcome::Retry {
                    reason: format!("reading the reply: {}", error_chain(&e)),
                    after: None,
                };
            }
        };
        let detail = || {
            let t = String::from_utf8_lossy(&text[..text.len().min(300)])
                .trim()
                .to_owned();
            format!("{status}: {t}")
        };
        match status {
            s if s.is_success() => match serde_json::from_slice::<IngestReply>(&text) {
                Ok(reply) => SendOutcome::Acked(reply),
                // The batch is stored; only the details are unknown.
                Err(_) => SendOutcome::Acked(IngestReply::default()),
            },
            StatusCode::PAYLOAD_TOO_LARGE => SendOutcome::TooLarge,
            StatusCode::TOO_MANY_REQUESTS => SendOutcome::Retry {
                reason: detail(),
                after: retry_after,
            },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::REQUEST_TIMEOUT => {
                SendOutcome::Retry {
                    reason: detail(),
                    after: None,
                }
            }
            s if s.is_client_error() => SendOutcome::Refused { reason: detail() },
            StatusCode::INTERNAL_SERVER_ERROR => SendOutcome::Failed { reason: detail() },
            _ => SendOutcome::Retry {
                reason: detail(),
                after: retry_after,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ingest_path_is_added_once() {
        let t = Duration::from_secs(1);
        assert_eq!(
            Shipper::new("http://p:8443", "t", t).unwrap().url(),
            "http://p:8443/v1/ingest"
        );
        assert_eq!(
            Shipper::new("https://p/apm/", "t", t).unwrap().url(),
            "https://p/apm/v1/ingest"
        );
        assert_eq!(
            Shipper::new("http://p/v1/ingest", "t", t).unwrap().url(),
            "http://p/v1/ingest"
        );
        assert!(
            Shipper::new("ftp://p", "t", t)
                .unwrap_err()
                .to_string()
                .contains("not http or https")
        );
        assert!(Shipper::new("nope", "t", t).is_err());
    }
}
