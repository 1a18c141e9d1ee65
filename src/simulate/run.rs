//! Runs a [`Plan`] over HTTP: the setup (SP clients, with encryption keys made here for
//! the FTN clients; API keys), the sessions with up to `concurrency` in flight (each
//! session's steps in order), then the maintenance windows; checks every answer against
//! the plan, fetches and verifies a sample of sealed tokens as their SPs would, and writes
//! the out file.
//!
//! Every write carries the plan's `Idempotency-Key` and is retried with it on a
//! connection error, a timeout or a 503, so that a retry never appends twice. Keys are
//! scoped to the caller, and the broker key is new in every run: a second run of the same
//! seed reaches the sessions, and stops at the first `session_exists`. A client with an
//! encryption key is registered under an `Idempotency-Key` of the run's own, as its body
//! (the public key) is new in every run.
//!
//! The encryption keys are random, not drawn from the seed: the same seed gives the same
//! ids and steps, and keys of its own to each run, as the API keys are.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use josekit::jwe::{ECDH_ES_A256KW, RSA_OAEP_256};
use josekit::jwk::alg::ec::EcCurve;
use rand_core::{OsRng, RngCore};
use serde::Serialize;
use serde_json::{json, Value};

use super::plan::{Action, Expect, Plan, PlannedClient, Request, SessionPlan, TokenEncryption};
use crate::domain::client::CLIENT_ALREADY_REGISTERED;
use crate::token::{self, DecryptKey, HttpLedger, LedgerLookup};

/// `POST /v1/sessions`'s answer for a session id that has records (`http::sessions`).
const SESSION_EXISTS: &str = "session_exists";
/// Tries of one request: the first and four retries, 0.2 s apart and doubling.
const ATTEMPTS: u32 = 5;
const FIRST_RETRY: Duration = Duration::from_millis(200);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Failures described in the summary; the rest are counted.
const FAILURES_KEPT: usize = 5;
/// The public signing keys of the service's tokens.
const JWKS_PATH: &str = "/.well-known/jwks.json";

pub struct Options {
    /// Base URL of the service, `http://HOST:PORT`.
    pub url: String,
    pub admin_key: String,
    pub sessions: usize,
    pub seed: u64,
    pub out: PathBuf,
    /// Sessions in flight at once.
    pub concurrency: usize,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// The message of a run whose seed is in the ledger already.
pub fn already_simulated(seed: u64) -> String {
    format!("seed {seed} was already simulated against this ledger; pick another --seed")
}

/// An answer the plan did not expect.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Which request: session, step, action and transaction.
    pub step: String,
    /// `None`: no answer at all.
    pub status: Option<u16>,
    /// The answer's body, or why there was none.
    pub body: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body: String = self.body.chars().take(400).collect();
        match self.status {
            Some(s) => write!(f, "{}: {s} {body}", self.step),
            None => write!(f, "{}: no answer: {body}", self.step),
        }
    }
}

/// What a run did.
#[derive(Debug)]
pub struct Summary {
    pub seed: u64,
    pub url: String,
    pub out: PathBuf,
    pub clients_registered: usize,
    pub clients_present: usize,
    pub sessions: usize,
    pub transactions: usize,
    pub windows_recorded: usize,
    pub windows_cancelled: usize,
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// Records the answers (and the recorded refusals) say were appended.
    pub records: u64,
    /// The ledger's length (`/readyz`) before and after.
    pub head_before: u64,
    pub head_after: Option<u64>,
    /// Planned refusals, by `error_description`.
    pub refused: BTreeMap<String, u64>,
    /// The sealed tokens checked: the first completed transaction of each client in each
    /// environment, fetched with the client's SP key.
    pub tokens: Vec<TokenChecked>,
    pub failure_count: u64,
    /// The first few failures, in plan order.
    pub failures: Vec<Failure>,
    pub elapsed: Duration,
}

impl Summary {
    /// Tokens the service answered with.
    pub fn tokens_fetched(&self) -> usize {
        self.tokens.iter().filter(|t| t.fetched).count()
    }

    /// Tokens that passed every check.
    pub fn tokens_verified(&self) -> usize {
        self.tokens.iter().filter(|t| t.verified).count()
    }
}

/// One sampled transaction token, fetched with its SP's key as that SP would.
#[derive(Debug, Clone)]
pub struct TokenChecked {
    pub client_id: String,
    pub environment: &'static str,
    pub transaction_id: String,
    /// The service answered 200 with a token.
    pub fetched: bool,
    /// The JWE `alg` it came encrypted with, if it did.
    pub jwe_alg: Option<String>,
    /// The JWS `alg` it is signed with, if it got that far.
    pub jws_alg: Option<String>,
    /// It decrypted with the key this run made (for a client registered with one), came
    /// in the form the registration asked for, verified against the service's JWKS
    /// (`token::verify`), names its client as `aud` and its transaction, and its ledger
    /// binding holds against the records the service serves.
    pub verified: bool,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        writeln!(
            f,
            "vidne simulate: seed {}, {} sessions against {}",
            self.seed, self.sessions, self.url
        )?;
        writeln!(
            f,
            "clients       {} registered, {} already there",
            self.clients_registered, self.clients_present
        )?;
        writeln!(
            f,
            "sessions      {} with {} transactions; {} maintenance windows, {} cancelled",
            self.sessions, self.transactions, self.windows_recorded, self.windows_cancelled
        )?;
        writeln!(
            f,
            "requests      {} in {:.2} s: {:.0} requests/s",
            self.requests,
            secs,
            self.requests as f64 / secs.max(1e-9)
        )?;
        match self.head_after {
            Some(after) => writeln!(
                f,
                "records       {} appended (ledger length {} -> {after})",
                self.records, self.head_before
            )?,
            None => writeln!(f, "records       {} appended", self.records)?,
        }
        let refused: u64 = self.refused.values().sum();
        writeln!(f, "refused       {refused}, as planned")?;
        for (code, n) in &self.refused {
            writeln!(f, "  {code:<58} {n:>5}")?;
        }
        let encrypted = self.tokens.iter().filter(|t| t.jwe_alg.is_some()).count();
        writeln!(
            f,
            "tokens        fetched {}, verified {} ({encrypted} of them encrypted)",
            self.tokens_fetched(),
            self.tokens_verified()
        )?;
        writeln!(f, "failures      {}", self.failure_count)?;
        writeln!(
            f,
            "wrote         {} (it holds the SP and auditor keys and the FTN clients' \
             decryption keys: keep it private)",
            self.out.display()
        )
    }
}

// ---------------------------------------------------------------------------------------
// The out file

#[derive(Serialize)]
struct OutFile<'a> {
    url: &'a str,
    clients: Vec<OutClient<'a>>,
    transactions: Vec<OutTransaction>,
    auditor_key: &'a str,
    refused: &'a BTreeMap<String, u64>,
}

#[derive(Serialize)]
struct OutClient<'a> {
    client_id: &'a str,
    environment: &'a str,
    sp_key: &'a str,
    /// For a client this run registered with an encryption key.
    #[serde(skip_serializing_if = "Option::is_none")]
    encryption: Option<OutEncryption<'a>>,
}

/// How the client's tokens are encrypted, and the private key that decrypts them.
#[derive(Serialize)]
struct OutEncryption<'a> {
    alg: &'static str,
    enc: &'static str,
    private_key_pem: &'a str,
}

#[derive(Serialize)]
struct OutTransaction {
    transaction_id: String,
    session_id: String,
    client_id: String,
    idp: &'static str,
    actions: Vec<OutAction>,
    #[serde(skip)]
    environment: &'static str,
}

impl OutTransaction {
    /// Its completion was recorded: it has a sealed token.
    fn completed(&self) -> bool {
        self.actions
            .iter()
            .any(|a| a.action == Action::Complete && a.outcome == "recorded")
    }
}

/// One step's outcome: `recorded`, `refused` (with the `error_description`), `failed`
/// (with the status, if any answer came) or `skipped` (after a failure in its session).
#[derive(Serialize, Clone)]
struct OutAction {
    action: Action,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
}

impl OutAction {
    fn new(action: Action, outcome: &'static str) -> OutAction {
        OutAction {
            action,
            outcome,
            error_description: None,
            status: None,
        }
    }
}

/// `<out>.partial`: written, then renamed over `out`, so that a failed run never
/// truncates the file of an earlier one.
fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Creates (or truncates) `path`, readable by its owner only: it will hold API keys.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let file = options.open(path)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        Ok(file)
    }
    #[cfg(not(unix))]
    options.open(path)
}

// ---------------------------------------------------------------------------------------
// HTTP

struct Answer {
    status: u16,
    body: Value,
    text: String,
    /// Replayed by the service for an `Idempotency-Key` it had seen.
    replayed: bool,
}

impl Answer {
    fn error_description(&self) -> Option<&str> {
        self.body["error_description"].as_str()
    }

    /// Worth the same request again: the service was unavailable and appended nothing,
    /// or the first try with this key is still running.
    fn is_transient(&self) -> bool {
        let unavailable = self.status == 503 && self.body["error"] != "commit_unknown";
        let running = self.status == 409
            && self
                .error_description()
                .is_some_and(|d| d.contains("has not finished"));
        unavailable || running
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
    requests: AtomicU64,
}

impl Api {
    fn new(url: &str) -> anyhow::Result<Api> {
        let parsed = reqwest::Url::parse(url).with_context(|| format!("--url {url}"))?;
        match parsed.scheme() {
            "http" => {}
            "https" => bail!(
                "--url {url}: https is not supported (this build's HTTP client has no TLS); \
                 use http://, e.g. on the service's host or through a tunnel"
            ),
            other => bail!("--url {url}: {other}:// is not http://"),
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("HTTP client")?;
        Ok(Api {
            http,
            base: url.trim_end_matches('/').to_owned(),
            requests: AtomicU64::new(0),
        })
    }

    async fn read(response: reqwest::Response) -> reqwest::Result<Answer> {
        let status = response.status().as_u16();
        let replayed = response.headers().contains_key("idempotent-replayed");
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Answer {
            status,
            body,
            text,
            replayed,
        })
    }

    async fn get(&self, path: &str) -> anyhow::Result<Answer> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = self.http.get(format!("{}{path}", self.base)).send().await?;
        Ok(Self::read(response).await?)
    }

    /// GETs `path` with `key`, retrying on a connection error or a 503, and once after a
    /// 404: a token whose completion was acknowledged just now may not be sealed yet.
    async fn get_as(&self, key: &str, path: &str) -> anyhow::Result<Answer> {
        let url = format!("{}{path}", self.base);
        let mut delay = FIRST_RETRY;
        let mut retried_not_found = false;
        for attempt in 1..=ATTEMPTS {
            self.requests.fetch_add(1, Ordering::Relaxed);
            let answer = match self.http.get(&url).bearer_auth(key).send().await {
                Ok(response) => Self::read(response).await,
                Err(e) => Err(e),
            };
            match answer {
                Ok(a) if a.status == 404 && !retried_not_found && attempt < ATTEMPTS => {
                    retried_not_found = true;
                }
                Ok(a) if a.status == 503 && attempt < ATTEMPTS => {}
                Ok(a) => return Ok(a),
                Err(e) if e.is_builder() || attempt == ATTEMPTS => {
                    return Err(anyhow::Error::new(e).context(format!("GET {path}")))
                }
                Err(_) => {}
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        bail!("GET {path}: no answer after {ATTEMPTS} tries")
    }

    /// POSTs `body` with `key`, retrying with the same `Idempotency-Key`.
    async fn post(
        &self,
        key: &str,
        path: &str,
        body: &Value,
        idempotency_key: &str,
    ) -> anyhow::Result<Answer> {
        let url = format!("{}{path}", self.base);
        let mut delay = FIRST_RETRY;
        for attempt in 1..=ATTEMPTS {
            self.requests.fetch_add(1, Ordering::Relaxed);
            let sent = self
                .http
                .post(&url)
                .bearer_auth(key)
                .header("Idempotency-Key", idempotency_key)
                .json(body)
                .send()
                .await;
            let answer = match sent {
                Ok(response) => Self::read(response).await,
                Err(e) => Err(e),
            };
            match answer {
                Ok(a) if a.is_transient() && attempt < ATTEMPTS => {}
                Ok(a) => return Ok(a),
                Err(e) if e.is_builder() || attempt == ATTEMPTS => {
                    return Err(anyhow::Error::new(e).context(format!("POST {path}")))
                }
                Err(_) => {}
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        bail!("POST {path}: no answer after {ATTEMPTS} tries")
    }
}

/// The error of a setup request the admin key should have made.
fn setup_error(what: &str, a: &Answer) -> anyhow::Error {
    match a.status {
        401 => anyhow::anyhow!("{what}: the admin key was refused (401): check --admin-key"),
        403 => anyhow::anyhow!("{what}: --admin-key is not an admin key (403)"),
        s => anyhow::anyhow!("{what}: {s} {}", a.text),
    }
}

// ---------------------------------------------------------------------------------------
// Running

/// Runs the whole simulation and writes `options.out`. Refusals the plan expected are
/// counted; anything else is a failure, in the summary. Errors: the service cannot be
/// reached, the admin key is refused, or the seed was simulated against this ledger
/// already ([`already_simulated`]).
pub async fn run(options: &Options) -> anyhow::Result<Summary> {
    let started = Instant::now();
    anyhow::ensure!(options.sessions > 0, "--sessions must be at least 1");
    let api = Api::new(&options.url)?;
    let partial = partial_path(&options.out);
    let file =
        create_private(&partial).with_context(|| format!("cannot write {}", partial.display()))?;
    let result = run_with(options, &api, started, file, &partial).await;
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

async fn run_with(
    options: &Options,
    api: &Api,
    started: Instant,
    mut file: std::fs::File,
    partial: &Path,
) -> anyhow::Result<Summary> {
    let ready = api.get("/readyz").await.with_context(|| {
        format!(
            "cannot reach {} (is `vidne serve` running there?)",
            options.url
        )
    })?;
    anyhow::ensure!(
        ready.status == 200,
        "{}/readyz: {} {}",
        api.base,
        ready.status,
        ready.text
    );
    let head_before = ready.body["records"].as_u64().unwrap_or(0);
    let plan = Plan::new(options.seed, options.sessions);
    let seed = options.seed;
    let admin = options.admin_key.as_str();

    let run_id = {
        let mut bytes = [0u8; 8];
        OsRng.fill_bytes(&mut bytes);
        hex::encode(bytes)
    };

    // Encryption keys, one per client that asks for one (the same in each environment).
    let mut encryption_keys: BTreeMap<&str, EncryptionKey> = BTreeMap::new();
    for c in &plan.clients {
        if let Some(kind) = c.token_encryption {
            if !encryption_keys.contains_key(c.client_id.as_str()) {
                encryption_keys.insert(&c.client_id, EncryptionKey::generate(kind)?);
            }
        }
    }

    // SP clients: registered, or there from an earlier run. One with an encryption key
    // is registered under this run's Idempotency-Key (its public key is new), so a
    // replay is this run's own registration; one there from an earlier run has a key
    // this run does not hold.
    let (mut clients_registered, mut clients_present) = (0, 0);
    let mut keys_held: BTreeSet<(&str, &str)> = BTreeSet::new();
    for c in &plan.clients {
        let mut body =
            json!({"client_id": c.client_id, "environment": c.environment, "name": c.name});
        if let Some(alg) = c.token_signing_alg {
            body["token_signing_alg"] = alg.into();
        }
        let encryption = encryption_keys.get(c.client_id.as_str());
        let mut key = format!("sim-{seed}-client-{}-{}", c.client_id, c.environment);
        if let Some(k) = encryption {
            body["token_encryption_key"] = k.public_pem.as_str().into();
            key = format!("{key}-{run_id}");
        }
        let a = api.post(admin, "/v1/clients", &body, &key).await?;
        match a.status {
            201 if !a.replayed || encryption.is_some() => {
                clients_registered += 1;
                if encryption.is_some() {
                    keys_held.insert((&c.client_id, c.environment));
                }
            }
            201 => clients_present += 1,
            400 if a.error_description() == Some(CLIENT_ALREADY_REGISTERED) => clients_present += 1,
            _ => return Err(setup_error("POST /v1/clients", &a)),
        }
    }

    // Keys, new in every run. Their Idempotency-Keys are the run's own: a key's answer
    // is shown once, so a key reused by a later run would get no key back.
    let make_key = |role: String| {
        let body = json!({"role": role, "name": format!("vidne simulate, seed {seed}")});
        let key = format!("sim-{seed}-key-{role}-{run_id}");
        async move {
            let a = api.post(admin, "/v1/keys", &body, &key).await?;
            if a.status != 201 {
                return Err(setup_error("POST /v1/keys", &a));
            }
            a.body["key"]
                .as_str()
                .map(str::to_owned)
                .context("POST /v1/keys answered without a key")
        }
    };
    let mut sp_keys = BTreeMap::new();
    for id in plan.client_ids() {
        sp_keys.insert(id, make_key(format!("sp:{id}")).await?);
    }
    let broker = make_key("broker".into()).await?;
    let auditor = make_key("auditor".into()).await?;

    // Sessions, answered in plan order whatever order they finish in.
    let bar = if options.progress {
        let bar = ProgressBar::new(options.sessions as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} sessions  {per_sec}  eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let ctx = Ctx {
        api,
        broker: &broker,
        abort: AtomicBool::new(false),
    };
    let done: Vec<SessionDone> = futures::stream::iter(0..options.sessions)
        .map(|i| run_session(&ctx, plan.session(i)))
        .buffered(options.concurrency.max(1))
        .inspect(|_| bar.inc(1))
        .collect()
        .await;
    bar.finish_and_clear();
    if ctx.abort.load(Ordering::Relaxed) {
        bail!(already_simulated(seed));
    }

    let mut records = 0;
    let mut refused: BTreeMap<String, u64> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut transactions = Vec::new();
    for d in done {
        records += d.records;
        for (code, n) in d.refused {
            *refused.entry(code.to_owned()).or_default() += n;
        }
        failures.extend(d.failures);
        transactions.extend(d.transactions);
    }

    // A sample of the sealed tokens, as their SPs fetch them.
    let samples = token_samples(&plan.clients, &transactions);
    let (tokens, token_failures) =
        check_tokens(api, &samples, &sp_keys, &encryption_keys, &keys_held).await;
    failures.extend(token_failures);

    // IdP maintenance windows, after the sessions: a second run of the seed stops before.
    let (mut windows_recorded, mut windows_cancelled) = (0, 0);
    for (i, w) in plan.windows.iter().enumerate() {
        let what = format!("maintenance window request {} ({})", i + 1, w.path);
        match post_request(api, &broker, w, &w.body).await {
            Ok(a) => match judge(w.expect, &a) {
                Judged::Recorded(n) => {
                    records += n;
                    if w.path.ends_with("/cancel") {
                        windows_cancelled += 1;
                    } else {
                        windows_recorded += 1;
                    }
                }
                _ => failures.push(failure(what, &a)),
            },
            Err(e) => failures.push(no_answer(what, &e)),
        }
    }
    let failure_count = failures.len() as u64;
    failures.truncate(FAILURES_KEPT);

    let head_after = match api.get("/readyz").await {
        Ok(a) => a.body["records"].as_u64(),
        Err(_) => None,
    };

    let clients = plan
        .clients
        .iter()
        .map(|c| OutClient {
            client_id: &c.client_id,
            environment: c.environment,
            sp_key: sp_keys.get(c.client_id.as_str()).map_or("", String::as_str),
            encryption: encryption_keys
                .get(c.client_id.as_str())
                .filter(|_| keys_held.contains(&(c.client_id.as_str(), c.environment)))
                .map(|k| OutEncryption {
                    alg: k.kind.alg(),
                    enc: TokenEncryption::ENC,
                    private_key_pem: &k.private_pem,
                }),
        })
        .collect();
    let transactions_count = transactions.len();
    let out = OutFile {
        url: &api.base,
        clients,
        transactions,
        auditor_key: &auditor,
        refused: &refused,
    };
    let mut text = serde_json::to_vec_pretty(&out)?;
    text.push(b'\n');
    file.write_all(&text)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", partial.display()))?;
    drop(file);
    std::fs::rename(partial, &options.out)
        .with_context(|| format!("cannot write {}", options.out.display()))?;

    Ok(Summary {
        seed,
        url: api.base.clone(),
        out: options.out.clone(),
        clients_registered,
        clients_present,
        sessions: options.sessions,
        transactions: transactions_count,
        windows_recorded,
        windows_cancelled,
        requests: api.requests.load(Ordering::Relaxed),
        records,
        head_before,
        head_after,
        refused,
        tokens,
        failure_count,
        failures,
        elapsed: started.elapsed(),
    })
}

struct Ctx<'a> {
    api: &'a Api,
    broker: &'a str,
    /// Set by the first `session_exists`: the seed is in the ledger already.
    abort: AtomicBool,
}

#[derive(Default)]
struct SessionDone {
    transactions: Vec<OutTransaction>,
    records: u64,
    refused: BTreeMap<&'static str, u64>,
    failures: Vec<Failure>,
}

enum Judged {
    Recorded(u64),
    Refused(&'static str, bool),
    Unexpected,
}

fn judge(expect: Expect, a: &Answer) -> Judged {
    match (expect, a.status) {
        (Expect::Recorded, 201) => {
            Judged::Recorded(a.body["records"].as_array().map_or(0, |r| r.len() as u64))
        }
        (
            Expect::Refused {
                error_description,
                recorded,
            },
            400,
        ) if a.error_description() == Some(error_description) => {
            Judged::Refused(error_description, recorded)
        }
        _ => Judged::Unexpected,
    }
}

async fn post_request(
    api: &Api,
    key: &str,
    request: &Request,
    body: &Value,
) -> anyhow::Result<Answer> {
    api.post(key, &request.path, body, &request.idempotency_key)
        .await
}

fn failure(step: String, a: &Answer) -> Failure {
    Failure {
        step,
        status: Some(a.status),
        body: a.text.clone(),
    }
}

fn no_answer(step: String, e: &anyhow::Error) -> Failure {
    Failure {
        step,
        status: None,
        body: format!("{e:#}"),
    }
}

/// Runs one session's steps in order. After a failure the rest of the session is
/// skipped: its state is no longer what the plan assumes.
async fn run_session(ctx: &Ctx<'_>, plan: SessionPlan) -> SessionDone {
    let mut done = SessionDone::default();
    let mut outcomes = Vec::with_capacity(plan.steps.len());
    let mut broken = false;
    for (k, step) in plan.steps.iter().enumerate() {
        if broken || ctx.abort.load(Ordering::Relaxed) {
            outcomes.push(OutAction::new(step.action, "skipped"));
            continue;
        }
        let what = format!(
            "session {} step {} ({} in {})",
            plan.session_id,
            k + 1,
            step.action.as_str(),
            step.transaction_id
        );
        let body = step.body_at(chrono::Utc::now());
        let answer = post_request(ctx.api, ctx.broker, &step.request, &body).await;
        let a = match answer {
            Ok(a) => a,
            Err(e) => {
                done.failures.push(no_answer(what, &e));
                outcomes.push(OutAction::new(step.action, "failed"));
                broken = true;
                continue;
            }
        };
        if k == 0 && a.status == 400 && a.error_description() == Some(SESSION_EXISTS) {
            ctx.abort.store(true, Ordering::Relaxed);
            outcomes.push(OutAction::new(step.action, "skipped"));
            broken = true;
            continue;
        }
        match judge(step.request.expect, &a) {
            Judged::Recorded(n) => {
                done.records += n;
                outcomes.push(OutAction::new(step.action, "recorded"));
            }
            Judged::Refused(code, recorded) => {
                done.records += u64::from(recorded);
                *done.refused.entry(code).or_default() += 1;
                outcomes.push(OutAction {
                    error_description: Some(code.to_owned()),
                    ..OutAction::new(step.action, "refused")
                });
            }
            Judged::Unexpected => {
                outcomes.push(OutAction {
                    error_description: a.error_description().map(str::to_owned),
                    status: Some(a.status),
                    ..OutAction::new(step.action, "failed")
                });
                done.failures.push(failure(what, &a));
                broken = true;
            }
        }
    }
    done.transactions = plan
        .transactions
        .iter()
        .map(|t| OutTransaction {
            transaction_id: t.transaction_id.clone(),
            session_id: plan.session_id.clone(),
            client_id: t.client_id.clone(),
            idp: plan.idp.as_str(),
            environment: plan.environment,
            actions: plan
                .steps
                .iter()
                .zip(&outcomes)
                .filter(|(s, _)| s.transaction_id == t.transaction_id)
                .map(|(_, o)| o.clone())
                .collect(),
        })
        .collect();
    done
}

// ---------------------------------------------------------------------------------------
// Sealed tokens

/// A client's encryption key pair, made for this run.
struct EncryptionKey {
    kind: TokenEncryption,
    public_pem: String,
    private_pem: String,
}

impl EncryptionKey {
    fn generate(kind: TokenEncryption) -> anyhow::Result<EncryptionKey> {
        let pem = |b: Vec<u8>| String::from_utf8(b).context("PEM is not UTF-8");
        let (public_pem, private_pem) = match kind {
            TokenEncryption::Rsa2048 => {
                let pair = RSA_OAEP_256
                    .generate_key_pair(2048)
                    .context("cannot make an RSA key")?;
                (
                    pem(pair.to_pem_public_key())?,
                    pem(pair.to_pem_private_key())?,
                )
            }
            TokenEncryption::P256 => {
                let pair = ECDH_ES_A256KW
                    .generate_ec_key_pair(EcCurve::P256)
                    .context("cannot make a P-256 key")?;
                (
                    pem(pair.to_pem_public_key())?,
                    pem(pair.to_pem_private_key())?,
                )
            }
        };
        Ok(EncryptionKey {
            kind,
            public_pem,
            private_pem,
        })
    }
}

/// A token to check: a client (in one environment) and its transaction.
struct TokenSample<'a> {
    client: &'a PlannedClient,
    transaction_id: &'a str,
}

/// The first completed transaction of each client in each environment, in plan order.
fn token_samples<'a>(
    clients: &'a [PlannedClient],
    transactions: &'a [OutTransaction],
) -> Vec<TokenSample<'a>> {
    clients
        .iter()
        .filter_map(|client| {
            let t = transactions.iter().find(|t| {
                t.client_id == client.client_id
                    && t.environment == client.environment
                    && t.completed()
            })?;
            Some(TokenSample {
                client,
                transaction_id: &t.transaction_id,
            })
        })
        .collect()
}

/// Counts the requests of a `LedgerLookup` with the run's.
struct Counted<'a, L> {
    inner: L,
    requests: &'a AtomicU64,
}

impl<L: LedgerLookup + Sync> LedgerLookup for Counted<'_, L> {
    async fn record_hash(&self, seq: u64) -> anyhow::Result<Option<[u8; 32]>> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.inner.record_hash(seq).await
    }
}

/// Fetches each sample's token with its client's SP key and checks it as the SP would:
/// decrypted with the key this run made, verified against the service's JWKS, and bound
/// to records the service serves. Returns the checks and a failure for each that failed.
async fn check_tokens(
    api: &Api,
    samples: &[TokenSample<'_>],
    sp_keys: &BTreeMap<&str, String>,
    encryption_keys: &BTreeMap<&str, EncryptionKey>,
    keys_held: &BTreeSet<(&str, &str)>,
) -> (Vec<TokenChecked>, Vec<Failure>) {
    let mut failures = Vec::new();
    if samples.is_empty() {
        return (Vec::new(), failures);
    }
    let jwks = match api.get(JWKS_PATH).await {
        Ok(a) if a.status == 200 && a.body["keys"].is_array() => a.body,
        Ok(a) => {
            failures.push(failure(format!("GET {JWKS_PATH}"), &a));
            return (Vec::new(), failures);
        }
        Err(e) => {
            failures.push(no_answer(format!("GET {JWKS_PATH}"), &e));
            return (Vec::new(), failures);
        }
    };
    let mut decrypt_keys: BTreeMap<&str, DecryptKey> = BTreeMap::new();
    for (id, k) in encryption_keys {
        match DecryptKey::from_pem(&k.private_pem) {
            Ok(d) => {
                decrypt_keys.insert(id, d);
            }
            Err(e) => failures.push(Failure {
                step: format!("the decryption key made for {id}"),
                status: None,
                body: e.to_string(),
            }),
        }
    }
    let mut checked = Vec::with_capacity(samples.len());
    for sample in samples {
        let c = sample.client;
        let tx = sample.transaction_id;
        let what = format!("token of {tx} ({}, {})", c.client_id, c.environment);
        let mut check = TokenChecked {
            client_id: c.client_id.clone(),
            environment: c.environment,
            transaction_id: tx.to_owned(),
            fetched: false,
            jwe_alg: None,
            jws_alg: None,
            verified: false,
        };
        let sp_key = sp_keys.get(c.client_id.as_str()).map_or("", String::as_str);
        let decrypt = match c.token_encryption {
            None => None,
            Some(_) if !keys_held.contains(&(c.client_id.as_str(), c.environment)) => {
                failures.push(Failure {
                    step: what,
                    status: None,
                    body: "the client was registered by an earlier run, with an encryption \
                           key whose private key this run does not hold; pick another --seed"
                        .into(),
                });
                checked.push(check);
                continue;
            }
            Some(_) => match decrypt_keys.get(c.client_id.as_str()) {
                Some(d) => Some(d),
                None => {
                    checked.push(check);
                    continue;
                }
            },
        };
        let path = format!("/v1/transactions/{tx}/token");
        let answer = match api.get_as(sp_key, &path).await {
            Ok(a) if a.status == 200 => a,
            Ok(a) => {
                failures.push(failure(what, &a));
                checked.push(check);
                continue;
            }
            Err(e) => {
                failures.push(no_answer(what, &e));
                checked.push(check);
                continue;
            }
        };
        check.fetched = true;
        let lookup = Counted {
            inner: HttpLedger::new(&api.base, sp_key),
            requests: &api.requests,
        };
        match check_token(&answer.text, &jwks, decrypt, c, tx, &lookup, &mut check).await {
            Ok(()) => check.verified = true,
            Err(reason) => failures.push(Failure {
                step: what,
                status: Some(answer.status),
                body: format!("the token does not verify: {reason}"),
            }),
        }
        checked.push(check);
    }
    (checked, failures)
}

/// The checks of one token; `check` gets the algorithms as they are found.
async fn check_token(
    jwt: &str,
    jwks: &Value,
    decrypt: Option<&DecryptKey>,
    client: &PlannedClient,
    transaction_id: &str,
    lookup: &impl LedgerLookup,
    check: &mut TokenChecked,
) -> Result<(), String> {
    let expected_jwe = client.token_encryption.map(TokenEncryption::alg);
    if expected_jwe.is_none() && jwt.trim().split('.').count() == 5 {
        return Err("encrypted, though the client registered no encryption key".into());
    }
    let verified = token::verify(jwt, jwks, decrypt).map_err(|e| e.to_string())?;
    let header_alg = |h: &serde_json::Map<String, Value>| h.get("alg")?.as_str().map(str::to_owned);
    check.jwe_alg = verified.jwe_header.as_ref().and_then(header_alg);
    check.jws_alg = header_alg(&verified.header);
    if check.jwe_alg.as_deref() != expected_jwe {
        return Err(match expected_jwe {
            Some(alg) => format!("not encrypted with {alg}, which the client's key asks for"),
            None => "encrypted, though the client registered no encryption key".into(),
        });
    }
    if check.jws_alg.as_deref() != Some(client.signing_alg()) {
        return Err(format!(
            "signed with {}, not {} as the client registered",
            check.jws_alg.as_deref().unwrap_or("no alg"),
            client.signing_alg()
        ));
    }
    let claims = &verified.claims;
    if claims.get("aud").and_then(Value::as_str) != Some(client.client_id.as_str()) {
        return Err(format!("aud is {:?}, not the client", claims.get("aud")));
    }
    if claims.get("transaction_id").and_then(Value::as_str) != Some(transaction_id) {
        return Err(format!(
            "transaction_id is {:?}, not the one fetched",
            claims.get("transaction_id")
        ));
    }
    // A transaction completes only once authenticated (a login or an SSO reuse).
    if claims.get("sub").and_then(Value::as_str).is_none() {
        return Err(
            "no sub: the token names nobody, though its transaction was \
                    authenticated"
                .into(),
        );
    }
    token::check_binding(claims, lookup, None)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}
