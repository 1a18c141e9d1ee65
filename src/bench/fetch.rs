//! `vidne bench fetch`: an SP fetching its sealed token over HTTP on loopback, next to
//! `GET /healthz` under the same load in the same run.
//!
//! The real service starts in this process (`Application::build` on `127.0.0.1:0`, as
//! `vidne serve` would, with the default worker count: one per core). The bench
//! registers three SP clients through the admin API, one sealing plain JWS (EdDSA) and
//! two sealing JWE (RSA-OAEP-256 and ECDH-ES+A256KW), completes `tokens` transactions
//! for each through the broker API (a MitID login, a signing and a CPR match: five
//! records per token), fetches every token once to know they are sealed, then runs the
//! load generator ([`super::load`]) against each client's token route (random ids among
//! its own, its own `sp:` key) and, last, against `/healthz`. `/healthz` touches neither
//! the key store nor the database: the ratio is what authentication, the token lookup
//! and, for JWE clients, the encryption per request cost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use josekit::jwe::{ECDH_ES_A256KW, RSA_OAEP_256};
use josekit::jwk::alg::ec::EcCurve;
use rand_core::{OsRng, RngCore};
use serde_json::{json, Value};

use super::load::{self, Outcome, Target};
use super::{transport, Scratch};
use crate::auth::store::KeyStore;
use crate::auth::Role;
use crate::db::{self, DatabaseUrl};
use crate::domain::values::{ClientId, Pepper};
use crate::http::{Application, ServeConfig};

/// Read pool of the service under test: `vidne serve`'s default.
const READ_CONNECTIONS: u32 = 8;
/// Sessions the setup runs at once.
const SETUP_CONCURRENCY: usize = 32;
const WARMUP: Duration = Duration::from_secs(1);

pub struct Options {
    pub connections: usize,
    pub seconds: u64,
    /// Completed transactions (tokens) per client.
    pub tokens: u64,
}

/// One SP client and how it is sealed.
struct Sp {
    label: &'static str,
    client_id: String,
    key: String,
    /// 3 for a JWS, 5 for a JWE.
    parts: usize,
}

pub async fn fetch(url: &DatabaseUrl, options: &Options) -> anyhow::Result<()> {
    anyhow::ensure!(
        options.connections > 0 && options.seconds > 0 && options.tokens > 0,
        "--connections, --seconds and --tokens must be at least 1"
    );
    db::create_if_missing(url).await?;
    let scratch = Scratch::new("fetch")?;
    let run = super::run_id();
    let mut pepper = [0u8; 32];
    OsRng.fill_bytes(&mut pepper);
    let app = Application::build(ServeConfig {
        database: url.clone(),
        listen: "127.0.0.1:0".into(),
        read_connections: READ_CONNECTIONS,
        max_body_bytes: 256 * 1024,
        cpr_pepper: Some(
            Pepper::new(hex::encode(pepper)).map_err(|e| anyhow::anyhow!("{}", e.reason))?,
        ),
        signing_keys: Some(scratch.path().join("signing-keys")),
        issuer: "https://vidne.local".into(),
        origin: "vidne.local/ledger".into(),
        checkpoint_key: Some(scratch.path().join("checkpoint-key")),
        checkpoints: Default::default(),
        public_log: false,
    })
    .await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    let server = tokio::spawn(app.run_until_stopped());
    let result = drive(url, options, &base, &run).await;
    handle.stop(true).await;
    server.await??;
    result
}

async fn drive(url: &DatabaseUrl, o: &Options, base: &str, run: &str) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "vidne bench fetch: {url} ({}), {} build",
        transport(url),
        super::build_kind()
    );
    println!(
        "  service in this process on {base}: actix-web workers the default, one per core \
         ({cores} here); read pool {READ_CONNECTIONS} connections"
    );
    println!(
        "  load: {} connections (a task with a keep-alive connection of its own each, closed \
         loop; the connections are kept from one target to the next), {} s warm-up then {} s \
         per target; the generator runs in this process, on the same CPUs as the service",
        o.connections,
        WARMUP.as_secs(),
        o.seconds
    );

    let keys_db = db::open(url, "vidne-bench", 1).await?;
    let store = KeyStore::new(keys_db.clone());
    let now = chrono::Utc::now().timestamp_micros();
    let admin = store.create(Role::Admin, "bench admin", now).await?.key;
    let broker = store.create(Role::Broker, "bench broker", now).await?.key;
    let http = reqwest::Client::new();

    let rsa = RSA_OAEP_256.generate_key_pair(2048)?;
    let ec = ECDH_ES_A256KW.generate_ec_key_pair(EcCurve::P256)?;
    let kinds = [
        ("JWS EdDSA", "jws", None, 3),
        (
            "JWE RSA-OAEP-256 (2048), EdDSA inside",
            "rsa",
            Some(String::from_utf8(rsa.to_pem_public_key())?),
            5,
        ),
        (
            "JWE ECDH-ES+A256KW (P-256), EdDSA inside",
            "ec",
            Some(String::from_utf8(ec.to_pem_public_key())?),
            5,
        ),
    ];
    let mut sps = Vec::new();
    for (label, suffix, encryption_key, parts) in kinds {
        let client_id = format!("bench-{run}-{suffix}");
        let mut body = json!({"client_id": client_id, "environment": "PROD", "name": label});
        if let Some(k) = encryption_key {
            body["token_encryption_key"] = k.into();
        }
        post(&http, &format!("{base}/v1/clients"), admin.reveal(), &body).await?;
        let role = Role::Sp(ClientId::parse(client_id.clone())?);
        let key = store.create(role, "bench sp", now).await?.key;
        sps.push(Sp {
            label,
            client_id,
            key: key.reveal().to_owned(),
            parts,
        });
    }
    keys_db.close().await;

    let started = Instant::now();
    let sessions = sps
        .iter()
        .flat_map(|sp| (0..o.tokens).map(move |i| (sp, i)));
    let mut made = futures::stream::iter(sessions)
        .map(|(sp, i)| transaction(&http, base, broker.reveal(), &sp.client_id, i))
        .buffer_unordered(SETUP_CONCURRENCY);
    while let Some(done) = made.next().await {
        done?;
    }
    drop(made);
    let setup_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let urls: Vec<Arc<Vec<String>>> = sps
        .iter()
        .map(|sp| {
            Arc::new(
                (0..o.tokens)
                    .map(|i| token_url(base, &sp.client_id, i))
                    .collect(),
            )
        })
        .collect();
    let mut checked = futures::stream::iter(
        sps.iter()
            .zip(&urls)
            .flat_map(|(sp, urls)| urls.iter().map(move |u| (sp, u))),
    )
    .map(|(sp, u)| check(&http, sp, u))
    .buffer_unordered(SETUP_CONCURRENCY);
    while let Some(done) = checked.next().await {
        done?;
    }
    drop(checked);
    println!(
        "  setup: {} clients x {} completed transactions (5 records each) over HTTP in \
         {setup_secs:.1} s; every token fetched once and checked (sealed, JWS or JWE) in {:.1} s",
        sps.len(),
        o.tokens,
        started.elapsed().as_secs_f64()
    );

    let duration = Duration::from_secs(o.seconds);
    let clients = load::clients(o.connections).await?;
    let mut results = Vec::new();
    for (sp, urls) in sps.iter().zip(urls) {
        let target = Target {
            urls,
            bearer: Some(Arc::from(sp.key.as_str())),
        };
        let out = measure(&clients, &target, duration).await?;
        report(&format!("GET token, {} ({} ids)", sp.label, o.tokens), &out);
        results.push((sp.label, out));
    }
    let healthz = Target {
        urls: Arc::new(vec![format!("{base}/healthz")]),
        bearer: None,
    };
    let baseline = measure(&clients, &healthz, duration).await?;
    report("GET /healthz (the baseline)", &baseline);
    for (label, out) in &results {
        println!(
            "  ratio token / healthz, {label}: req/s {:.2}, p99 {:.2}",
            out.per_second() / baseline.per_second(),
            out.quantile_ms(0.99) / baseline.quantile_ms(0.99)
        );
    }
    Ok(())
}

async fn measure(
    clients: &[reqwest::Client],
    target: &Target,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let out = load::run(clients, target, WARMUP, duration).await?;
    if out.errors > 0 {
        anyhow::bail!(
            "{} of {} requests failed; the first: {}",
            out.errors,
            out.errors + out.requests,
            out.first_error.as_deref().unwrap_or("?")
        );
    }
    anyhow::ensure!(out.requests > 0, "no request was answered");
    Ok(out)
}

fn report(label: &str, out: &Outcome) {
    println!(
        "  {label:<62} {:>8.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms  max {:>7.1} ms  ({} requests in {:.2} s)",
        out.per_second(),
        out.quantile_ms(0.5),
        out.quantile_ms(0.99),
        out.max_ms(),
        out.requests,
        out.seconds
    );
}

fn token_url(base: &str, client_id: &str, i: u64) -> String {
    format!("{base}/v1/transactions/{client_id}-t{i}/token")
}

async fn post(http: &reqwest::Client, url: &str, key: &str, body: &Value) -> anyhow::Result<()> {
    let r = http.post(url).bearer_auth(key).json(body).send().await?;
    let status = r.status();
    if status != reqwest::StatusCode::CREATED {
        anyhow::bail!(
            "POST {url}: {status}: {}",
            r.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// One MitID transaction of `client_id`, start (with its login) to completion.
async fn transaction(
    http: &reqwest::Client,
    base: &str,
    broker: &str,
    client_id: &str,
    i: u64,
) -> anyhow::Result<()> {
    const SUBSTANTIAL: &str = "https://data.gov.dk/concept/core/nsis/Substantial";
    let session = format!("{client_id}-s{i}");
    let tx = format!("{client_id}-t{i}");
    let s = format!("{base}/v1/sessions/{session}");
    let steps = [
        (
            format!("{base}/v1/sessions"),
            json!({"session_id": session, "transaction_id": tx, "client_id": client_id,
                   "environment": "PROD", "idp": "mitid", "signed_request": true,
                   "identity_type": "private", "loa": SUBSTANTIAL, "ial": SUBSTANTIAL,
                   "aal": SUBSTANTIAL, "amr": ["code_app"],
                   "subject": {"mitid.uuid": format!("7d1b3c1e-5a4f-4a8e-9b7e-{i:012x}")},
                   "psd2": true}),
        ),
        (
            format!("{s}/signings"),
            json!({"transaction_id": tx, "transaction_text": "QmV0YWwgMTAwIGtyIHRpbCBBY21lIEJhbms=",
                   "transaction_text_type": "text",
                   "reference_text": "RmFrdHVyYSA0MiAvIGtvbnRvIDEyMzQ="}),
        ),
        (
            format!("{s}/cpr-matches"),
            json!({"transaction_id": tx, "cpr": "0101904286", "matched": true}),
        ),
        (format!("{s}/completions"), json!({"transaction_id": tx})),
    ];
    for (url, body) in &steps {
        post(http, url, broker, body).await?;
    }
    Ok(())
}

/// Fetches a token once: sealed, and a JWS or a JWE as its client's registration says.
async fn check(http: &reqwest::Client, sp: &Sp, url: &str) -> anyhow::Result<()> {
    let r = http.get(url).bearer_auth(&sp.key).send().await?;
    let status = r.status();
    let body = r.text().await?;
    anyhow::ensure!(
        status == reqwest::StatusCode::OK && body.split('.').count() == sp.parts,
        "GET {url}: {status}: {}",
        &body[..body.len().min(200)]
    );
    Ok(())
}
