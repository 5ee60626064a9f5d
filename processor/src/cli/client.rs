//! The processor's read API (`/v1/...`) over HTTP or HTTPS, with a token.
//!
//! reqwest does the HTTP (TLS with rustls, chunked bodies, redirects); the
//! command line is synchronous, so each call runs on a small runtime of the
//! client's own.

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::header::AUTHORIZATION;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// An analysis can take a while on a big store; the server bounds its own work.
const TIMEOUT: Duration = Duration::from_secs(300);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The processor's URL as given (`http://host:port`, `https://...`, or a
/// bare `host:port`, taken as plain HTTP).
///
/// # Errors
/// The text is not a URL, or its scheme is not http or https.
pub fn base_url(text: &str) -> anyhow::Result<reqwest::Url> {
    let full = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let url = reqwest::Url::parse(&full)
        .with_context(|| format!("processor address {text:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("processor address {text:?}: the scheme is not http or https");
    }
    Ok(url)
}

/// A client of one processor's read API.
pub struct Client {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: reqwest::Url,
    token: String,
}

impl Client {
    /// A client for the processor at `base`, sending `token` as the bearer.
    ///
    /// # Errors
    /// The runtime or the TLS client cannot be built.
    pub fn new(base: reqwest::Url, token: String) -> anyhow::Result<Client> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the HTTP client's runtime")?;
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client {
            runtime,
            http,
            base,
            token,
        })
    }

    /// `GET path` (with its query string), the answer read as JSON.
    ///
    /// # Errors
    /// The processor cannot be reached, answers an error, or not the expected JSON.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = self.url(path)?;
        self.send(path, self.http.get(url))
    }

    /// `POST path` with a JSON body, the answer read as JSON.
    ///
    /// # Errors
    /// The processor cannot be reached, answers an error, or not the expected JSON.
    pub fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        let url = self.url(path)?;
        self.send(path, self.http.post(url).json(body))
    }

    fn url(&self, path: &str) -> anyhow::Result<reqwest::Url> {
        self.base
            .join(path)
            .with_context(|| format!("{path} does not make a URL with {}", self.base))
    }

    /// Sends a request; the body on 2xx, the server's `{"error"}` as the error otherwise.
    fn send<T: DeserializeOwned>(
        &self,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let request = request.header(AUTHORIZATION, format!("Bearer {}", self.token));
        let (status, body) = self.runtime.block_on(async {
            let response = request
                .send()
                .await
                .with_context(|| format!("cannot ask {}{path}", self.base))?;
            let status = response.status();
            let body = response
                .bytes()
                .await
                .with_context(|| format!("reading the answer of {path}"))?;
            anyhow::Ok((status, body))
        })?;
        if !status.is_success() {
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            bail!("{path}: HTTP {}: {message}", status.as_u16());
        }
        serde_json::from_slice(&body)
            .with_context(|| format!("answer of {path} is not the expected JSON"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_address_is_plain_http_and_other_schemes_are_refused() {
        assert_eq!(
            base_url("127.0.0.1:8443").unwrap().as_str(),
            "http://127.0.0.1:8443/"
        );
        assert_eq!(
            base_url("https://apm.example:8443/").unwrap().scheme(),
            "https"
        );
        assert!(base_url("ftp://apm.example/").is_err());
    }
}
