//! Paging through a bucket's key listing (`GET /buckets/{bucket}/keys`,
//! issue 14), shared by `dynamo keys` and `dynamo export`. A [`KeyPager`]
//! holds only the continuation, so memory stays one page whatever the
//! bucket's size. A page that fails (`503`, a timeout, a dropped
//! connection) is asked again with the same continuation, which is safe
//! because a continuation is a position, not server state.

use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use dynamo_client::Connection;
use dynamo_client::encode::path_segment;
use hyper::Method;
use serde_json::Value;

/// Attempts at one page before giving up.
const PAGE_ATTEMPTS: u32 = 5;
/// Wait before asking a failed page again (doubled each time).
const RETRY_PAUSE: Duration = Duration::from_millis(300);

/// One key as the listing gives it: UTF-8 text (`keys`) or other bytes
/// (`keys_b64`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListedKey {
    /// A UTF-8 key.
    Text(String),
    /// A key that is not UTF-8, with its base64 as the node sent it.
    Binary {
        /// The key's bytes.
        bytes: Vec<u8>,
        /// Standard base64 of `bytes`.
        base64: String,
    },
}

impl ListedKey {
    /// The key's bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            ListedKey::Text(text) => text.as_bytes(),
            ListedKey::Binary { bytes, .. } => bytes,
        }
    }
}

/// Where a pass through a bucket's keys stands.
pub struct KeyPager {
    bucket: String,
    /// Keys per page asked for (`None`: the server's default).
    limit: Option<usize>,
    /// Where the next page starts (`None` before the first page).
    continuation: Option<String>,
    /// Whether the last page said there is no more.
    finished: bool,
}

impl KeyPager {
    /// A pass from the start of `bucket`, `limit` keys per page.
    pub fn new(bucket: &str, limit: Option<usize>) -> Self {
        Self { bucket: bucket.to_string(), limit, continuation: None, finished: false }
    }

    /// The next page's keys, or `None` once the pass is over. A page may be
    /// empty and still not the last (the server answers after a bounded
    /// walk with what it has).
    pub async fn next_page(&mut self, connection: &mut Connection) -> anyhow::Result<Option<Vec<ListedKey>>> {
        if self.finished {
            return Ok(None);
        }
        let mut path = format!("/buckets/{}/keys?", path_segment(self.bucket.as_bytes()));
        if let Some(limit) = self.limit {
            path.push_str(&format!("limit={limit}&"));
        }
        if let Some(token) = &self.continuation {
            path.push_str(&format!("continuation={}", path_segment(token.as_bytes())));
        }
        let page = fetch_json(connection, &path).await?;
        let mut keys: Vec<ListedKey> = page["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|key| ListedKey::Text(key.to_string()))
            .collect();
        for key in page["keys_b64"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            let bytes = STANDARD
                .decode(key)
                .with_context(|| format!("the node listed a key_b64 {key:?} that is not base64"))?;
            keys.push(ListedKey::Binary { bytes, base64: key.to_string() });
        }
        match page["continuation"].as_str() {
            Some(token) => self.continuation = Some(token.to_string()),
            None => self.finished = true,
        }
        Ok(Some(keys))
    }
}

/// A JSON GET (a listing page, bucket props), asked again after a
/// transient failure. `400` and `404` will not get better and end it.
pub async fn fetch_json(connection: &mut Connection, path: &str) -> anyhow::Result<Value> {
    let mut pause = RETRY_PAUSE;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let failure = match connection.request(Method::GET, path, &[], Bytes::new()).await {
            Ok(response) if response.status == 200 => {
                return serde_json::from_slice(&response.body)
                    .with_context(|| format!("the node answered {path} with a body that is not JSON"));
            }
            Ok(response) if response.status == 400 || response.status == 404 => {
                bail!("the node refused {path} ({}): {}", response.status, String::from_utf8_lossy(&response.body));
            }
            Ok(response) => format!("status {}: {}", response.status, String::from_utf8_lossy(&response.body)),
            Err(error) => error.to_string(),
        };
        if attempt == PAGE_ATTEMPTS {
            bail!("{path} failed after {PAGE_ATTEMPTS} attempts: {failure}");
        }
        eprintln!("{path} failed ({failure}); asking again");
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
}
