//! Clients' JWKS documents fetched by URL, kept for a TTL (10 minutes by default; HTTP
//! cache headers are not consulted). When a refresh fails, a copy younger than the stale
//! limit (24 hours by default) is used and the failure logged; past that it is an error.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::seal::{RecipientKey, SealError};

/// Largest JWKS document accepted.
const MAX_BYTES: usize = 256 * 1024;

#[derive(Debug)]
pub struct JwksCache {
    client: reqwest::Client,
    ttl: Duration,
    stale_limit: Duration,
    entries: Mutex<HashMap<String, (Value, Instant)>>,
}

impl Default for JwksCache {
    fn default() -> Self {
        JwksCache::new(Duration::from_secs(600), Duration::from_secs(24 * 3600))
    }
}

impl JwksCache {
    /// A cache that refetches after `ttl` and falls back on a copy younger than
    /// `stale_limit` when a fetch fails.
    pub fn new(ttl: Duration, stale_limit: Duration) -> JwksCache {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("vidne/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("reqwest client builds");
        JwksCache {
            client,
            ttl,
            stale_limit,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The JWKS at `url`: cached if younger than the TTL, else fetched; on a failed fetch,
    /// the cached copy if younger than the stale limit.
    pub async fn get(&self, url: &str) -> Result<Value, SealError> {
        let cached = self.entries.lock().expect("lock").get(url).cloned();
        if let Some((jwks, at)) = &cached {
            if at.elapsed() < self.ttl {
                return Ok(jwks.clone());
            }
        }
        match self.fetch(url).await {
            Ok(jwks) => {
                self.entries
                    .lock()
                    .expect("lock")
                    .insert(url.to_owned(), (jwks.clone(), Instant::now()));
                Ok(jwks)
            }
            Err(reason) => match cached {
                Some((jwks, at)) if at.elapsed() < self.stale_limit => {
                    tracing::warn!(%url, %reason, age_s = at.elapsed().as_secs(),
                        "JWKS refresh failed; using the cached copy");
                    Ok(jwks)
                }
                _ => Err(SealError::Jwks {
                    url: url.to_owned(),
                    reason,
                }),
            },
        }
    }

    /// The encryption key in the JWKS at `url` (see `RecipientKey::from_jwks`).
    pub async fn recipient(&self, url: &str) -> Result<RecipientKey, SealError> {
        RecipientKey::from_jwks(&self.get(url).await?)
    }

    async fn fetch(&self, url: &str) -> Result<Value, String> {
        let mut resp = self
            .client
            .get(url)
            .header("accept", "application/json, application/jwk-set+json")
            .send()
            .await
            .map_err(|e| format!("cannot fetch: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("answered HTTP {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("cannot read: {e}"))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BYTES {
                return Err(format!("larger than {MAX_BYTES} bytes"));
            }
        }
        let jwks: Value = serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))?;
        if !jwks.get("keys").is_some_and(Value::is_array) {
            return Err("not a JWKS (no \"keys\" array)".into());
        }
        Ok(jwks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use actix_web::{web, App, HttpResponse, HttpServer};
    use josekit::jwe::ECDH_ES_A256KW;
    use josekit::jwk::alg::ec::EcCurve;

    struct Served {
        hits: AtomicUsize,
        jwks: Mutex<Value>,
        status: Mutex<u16>,
    }

    /// A real HTTP server on 127.0.0.1:0 serving `state`'s JWKS at /jwks.json.
    async fn serve(state: Arc<Served>) -> (String, actix_web::dev::ServerHandle) {
        let data = web::Data::from(state);
        let server = HttpServer::new(move || {
            App::new().app_data(data.clone()).route(
                "/jwks.json",
                web::get().to(|s: web::Data<Served>| async move {
                    s.hits.fetch_add(1, Ordering::SeqCst);
                    let status = *s.status.lock().unwrap();
                    let body = s.jwks.lock().unwrap().clone();
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                        .json(body)
                }),
            )
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        (format!("http://127.0.0.1:{port}/jwks.json"), handle)
    }

    fn enc_jwks(kid: &str) -> Value {
        let ec = ECDH_ES_A256KW.generate_ec_key_pair(EcCurve::P256).unwrap();
        let mut jwk = Value::Object(ec.to_jwk_public_key().into());
        jwk["kid"] = kid.into();
        serde_json::json!({ "keys": [jwk] })
    }

    #[actix_web::test]
    async fn fetches_once_per_ttl_and_refreshes_after() {
        let state = Arc::new(Served {
            hits: AtomicUsize::new(0),
            jwks: Mutex::new(enc_jwks("k1")),
            status: Mutex::new(200),
        });
        let (url, handle) = serve(state.clone()).await;
        // Given a cache with a long TTL
        let cache = JwksCache::default();
        // When the key is asked for twice
        assert_eq!(cache.recipient(&url).await.unwrap().kid(), Some("k1"));
        *state.jwks.lock().unwrap() = enc_jwks("k2");
        assert_eq!(cache.recipient(&url).await.unwrap().kid(), Some("k1"));
        // Then the server was asked once
        assert_eq!(state.hits.load(Ordering::SeqCst), 1);
        // And a cache whose TTL has passed fetches the new key
        let short = JwksCache::new(Duration::ZERO, Duration::from_secs(3600));
        assert_eq!(short.recipient(&url).await.unwrap().kid(), Some("k2"));
        assert_eq!(short.recipient(&url).await.unwrap().kid(), Some("k2"));
        assert_eq!(state.hits.load(Ordering::SeqCst), 3);
        handle.stop(true).await;
    }

    #[actix_web::test]
    async fn a_failed_refresh_uses_a_copy_younger_than_the_stale_limit() {
        let state = Arc::new(Served {
            hits: AtomicUsize::new(0),
            jwks: Mutex::new(enc_jwks("k1")),
            status: Mutex::new(200),
        });
        let (url, handle) = serve(state.clone()).await;
        let cache = JwksCache::new(Duration::ZERO, Duration::from_secs(3600));
        let strict = JwksCache::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(cache.recipient(&url).await.unwrap().kid(), Some("k1"));
        assert_eq!(strict.recipient(&url).await.unwrap().kid(), Some("k1"));
        // When the server answers 500
        *state.status.lock().unwrap() = 500;
        // Then the cached copy serves, unless it is older than the stale limit
        assert_eq!(cache.recipient(&url).await.unwrap().kid(), Some("k1"));
        let err = strict.recipient(&url).await.unwrap_err().to_string();
        assert!(err.contains("500"), "{err}");
        // And once the server is gone the same holds
        handle.stop(true).await;
        assert_eq!(cache.recipient(&url).await.unwrap().kid(), Some("k1"));
        let err = strict.recipient(&url).await.unwrap_err().to_string();
        assert!(err.contains("cannot fetch"), "{err}");
        // And with no copy at all a failure is an error naming the URL
        let fresh = JwksCache::default();
        let err = fresh.get(&url).await.unwrap_err().to_string();
        assert!(err.contains(&url), "{err}");
    }

    #[actix_web::test]
    async fn a_document_without_keys_is_refused() {
        let state = Arc::new(Served {
            hits: AtomicUsize::new(0),
            jwks: Mutex::new(serde_json::json!({"hello": "world"})),
            status: Mutex::new(200),
        });
        let (url, handle) = serve(state).await;
        let err = JwksCache::default()
            .get(&url)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no \"keys\" array"), "{err}");
        handle.stop(true).await;
    }
}
