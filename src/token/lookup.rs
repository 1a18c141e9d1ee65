//! `LedgerLookup`s for `check_binding`. Both recompute the record hash (SPEC section 2)
//! from the record's canonical bytes; neither trusts a stored or served hash.

use std::time::Duration;

use super::verify::LedgerLookup;
use crate::ledger::Reader;
use crate::spec::hash::record_hash;

/// Reads records straight from the database.
#[derive(Clone, Debug)]
pub struct DbLedger {
    reader: Reader,
}

impl DbLedger {
    pub fn new(reader: Reader) -> DbLedger {
        DbLedger { reader }
    }
}

impl LedgerLookup for DbLedger {
    async fn record_hash(&self, seq: u64) -> anyhow::Result<Option<[u8; 32]>> {
        let row = self.reader.get(seq).await?;
        Ok(row
            .filter(|r| u64::try_from(r.seq).ok() == Some(seq))
            .map(|r| record_hash(&r.canonical).0))
    }
}

/// Reads records from the service: `GET {base}/v1/log/records/{seq}` with a bearer key
/// answers the record's canonical bytes, 404 when there is no such seq.
#[derive(Clone)]
pub struct HttpLedger {
    base: String,
    key: String,
    client: reqwest::Client,
}

impl std::fmt::Debug for HttpLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpLedger")
            .field("base", &self.base)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl HttpLedger {
    pub fn new(base: &str, key: &str) -> HttpLedger {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("vidne/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("reqwest client builds");
        HttpLedger {
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
            client,
        }
    }
}

/// How many times a 503 (the service's audit index not yet at the record) is retried.
const RETRIES: u32 = 5;

impl LedgerLookup for HttpLedger {
    async fn record_hash(&self, seq: u64) -> anyhow::Result<Option<[u8; 32]>> {
        let url = format!("{}/v1/log/records/{seq}", self.base);
        let get = || async {
            self.client
                .get(&url)
                .bearer_auth(&self.key)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))
        };
        let mut resp = get().await?;
        for _ in 0..RETRIES {
            if resp.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE {
                break;
            }
            // Waits as long as Retry-After says, within 1 to 5 s.
            let wait = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .unwrap_or(1)
                .clamp(1, 5);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            resp = get().await?;
        }
        match resp.status().as_u16() {
            200 => {
                let bytes = resp
                    .bytes()
                    .await
                    .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?;
                Ok(Some(record_hash(&bytes).0))
            }
            404 => Ok(None),
            status => Err(anyhow::anyhow!("GET {url} answered HTTP {status}")),
        }
    }
}
