//! HTTP plumbing shared by the REST backends: one client with timeouts, route URLs with each path
//! segment encoded on its own (so a login cannot change the route), the retry policy for
//! idempotent reads, and transport errors that never carry a URL (its query may hold filter values).

use std::time::Duration;

use rand::Rng;
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};

use super::BackendError;

/// Whether a call may be sent again after a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// An idempotent read without side effects.
    Safe,
    /// Writes, logins, and reads that change state.
    Never,
}

/// One HTTP answer, whatever its status; bodies stay bytes until the backend decides what to show.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

pub(crate) struct Rest {
    client: reqwest::Client,
    base: url::Url,
    /// The product's name, for messages.
    product: &'static str,
    retries: u32,
}

impl Rest {
    /// `root` is the installation's URL as configured; `api_path` the API's path below it.
    pub fn new(
        product: &'static str,
        root: &str,
        api_path: &str,
        timeout: Duration,
        retries: u32,
    ) -> Result<Rest, BackendError> {
        let root = root.trim_end_matches('/');
        let base = url::Url::parse(&format!("{root}/{api_path}"))
            .map_err(|e| BackendError::Invalid(format!("invalid {product} url {root:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(BackendError::Invalid(format!("{product} url must be http(s), got {root:?}")));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| BackendError::Invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(Rest { client, base, product, retries })
    }

    pub fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Result<url::Url, BackendError> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|_| BackendError::Invalid(format!("the {} url cannot be a base", self.product)))?;
            path.pop_if_empty();
            for s in segments {
                path.push(s);
            }
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    pub fn request(&self, method: Method, url: url::Url) -> RequestBuilder {
        self.client.request(method, url).header("Accept", "application/json")
    }

    /// Sends one request; only transport failures are errors.
    pub async fn send_once(&self, req: RequestBuilder) -> Result<Answer, BackendError> {
        match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                let headers = resp.headers().clone();
                match resp.bytes().await {
                    Ok(b) => Ok(Answer { status, headers, body: b.to_vec() }),
                    Err(e) => Err(self.transport_error(&e)),
                }
            }
            Err(e) => Err(self.transport_error(&e)),
        }
    }

    /// Sends the request `build` makes from a bare one (it is called again for each attempt).
    /// GETs marked `Retry::Safe` are retried on transport failures and 502/503/504, with backoff.
    pub async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        retry: Retry,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Answer, BackendError> {
        let url = self.url(segments, query)?;
        let attempts = if retry == Retry::Safe && method == Method::GET { self.retries + 1 } else { 1 };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.send_once(build(self.request(method.clone(), url.clone()))).await;
            let transient = match &outcome {
                Ok(a) => matches!(a.status.as_u16(), 502..=504),
                Err(e) => e.is_transient(),
            };
            if !transient || attempt >= attempts {
                return outcome;
            }
            tracing::debug!(product = self.product, route = ?segments, attempt, "retrying a read");
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    fn transport_error(&self, e: &reqwest::Error) -> BackendError {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "connection failed"
        } else if e.is_body() || e.is_decode() {
            "answer interrupted"
        } else {
            "request failed"
        };
        let message = format!("{} {what}", self.product);
        if e.is_timeout() { BackendError::Timeout(message) } else { BackendError::Unavailable(message) }
    }
}

/// Exponential backoff with jitter: about 100 ms, 200 ms, 400 ms ... capped at 5 s.
fn backoff(attempt: u32) -> Duration {
    let cap = 100u64.saturating_mul(1 << attempt.min(6)).min(5_000);
    Duration::from_millis(rand::rng().random_range(cap / 2..=cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded_one_by_one() {
        let r = Rest::new("X", "http://h:1/root/", "api/", Duration::from_secs(1), 0).unwrap();
        let u = r.url(&["users", "login", "a/../b c"], &[("q", "x&y".into())]).unwrap();
        assert_eq!(u.as_str(), "http://h:1/root/api/users/login/a%2F..%2Fb%20c?q=x%26y");
        assert!(Rest::new("X", "ftp://h", "api/", Duration::from_secs(1), 0).is_err());
        assert!(Rest::new("X", "not a url", "api/", Duration::from_secs(1), 0).is_err());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) <= Duration::from_millis(200));
        assert!(backoff(3) >= Duration::from_millis(400));
        assert!(backoff(30) <= Duration::from_secs(5));
    }
}
