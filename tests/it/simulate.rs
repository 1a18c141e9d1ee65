//! `vidne simulate` against the real service on both backends: the out file it promises,
//! every IdP and every planned refusal, keys that work, a ledger that verifies and holds
//! what the summary says; the FTN clients' encryption keys, and sealed tokens that
//! decrypt with them and verify; the same seed gives the same traffic; a second run of a
//! seed stops before appending anything.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use josekit::jwe::{ECDH_ES_A256KW, RSA_OAEP_256};
use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use josekit::jwk::alg::rsa::RsaKeyPair;
use serde_json::{json, Value};
use vidne::simulate::{self, Options, Plan, Summary, MIN_SESSIONS, PLANNED_REFUSALS};
use vidne::token::{self, DbLedger, DecryptKey};

use crate::api::{cli_key, post};
use crate::both_backends;
use crate::helpers::{spawn_app, vidne, Backend, TestDb, TEST_ORIGIN};

const SESSIONS: usize = 16;

/// A running service and an admin key made on the command line.
struct Service {
    db: TestDb,
    base: String,
    admin: String,
    handle: actix_web::dev::ServerHandle,
}

impl Service {
    async fn start(backend: Backend) -> Service {
        let db = TestDb::new(backend).await;
        let admin = cli_key(&db, "admin");
        let (base, handle) = spawn_app(&db).await;
        Service {
            db,
            base,
            admin,
            handle,
        }
    }

    fn options(&self, seed: u64, out: &Path) -> Options {
        self.options_with(seed, out, SESSIONS)
    }

    fn options_with(&self, seed: u64, out: &Path, sessions: usize) -> Options {
        Options {
            url: self.base.clone(),
            admin_key: self.admin.clone(),
            sessions,
            seed,
            out: out.to_owned(),
            concurrency: 4,
            progress: false,
        }
    }

    /// Runs the simulation; expects no failure; returns the summary and the out file.
    async fn simulate(&self, seed: u64, out: &Path) -> (Summary, Value) {
        self.simulate_with(seed, out, SESSIONS).await
    }

    async fn simulate_with(&self, seed: u64, out: &Path, sessions: usize) -> (Summary, Value) {
        let summary = simulate::run(&self.options_with(seed, out, sessions))
            .await
            .unwrap();
        assert_eq!(
            summary.failure_count,
            0,
            "{:#?}",
            summary
                .failures
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
        );
        let text = std::fs::read_to_string(out).unwrap();
        (summary, serde_json::from_str(&text).unwrap())
    }

    async fn count(&self) -> u64 {
        let reader = vidne::ledger::Reader::new(self.db.pool(1).await);
        let n = reader.count().await.unwrap();
        reader.db().close().await;
        n
    }

    async fn stop(self) {
        let url = self.db.url_string();
        let (code, out, err) = vidne(&["verify", "--database", &url]);
        assert_eq!(code, 0, "{out}{err}");
        self.handle.stop(true).await;
    }
}

fn out_file(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// Every fake CPR number of the plan, in both forms.
fn plan_cprs(seed: u64) -> Vec<String> {
    Plan::new(seed, SESSIONS)
        .sessions()
        .flat_map(|s| s.steps.into_iter().filter_map(|st| st.cpr))
        .flat_map(|c| {
            let digits: String = c.reveal().chars().filter(char::is_ascii_digit).collect();
            let hyphenated = format!("{}-{}", &digits[..6], &digits[6..]);
            [digits, hyphenated]
        })
        .collect()
}

/// Checks the `encryption` member of each client of the out file against the plan: the
/// FTN clients have one (alg, enc, a private key of the right kind that parses, the same
/// for a client in both environments), the others none.
fn check_encryption_members(seed: u64, file: &Value) {
    let plan = Plan::new(seed, 1);
    let clients = file["clients"].as_array().unwrap();
    assert_eq!(clients.len(), plan.clients.len());
    let mut pems = std::collections::BTreeMap::new();
    for (c, planned) in clients.iter().zip(&plan.clients) {
        assert_eq!(c["client_id"], planned.client_id);
        assert_eq!(c["environment"], planned.environment);
        let Some(kind) = planned.token_encryption else {
            assert!(c.get("encryption").is_none(), "{c}");
            continue;
        };
        let e = &c["encryption"];
        let members: BTreeSet<&str> = e.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(members, BTreeSet::from(["alg", "enc", "private_key_pem"]));
        assert_eq!(e["alg"], kind.alg());
        assert_eq!(e["enc"], "A256GCM");
        let pem = e["private_key_pem"].as_str().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
        DecryptKey::from_pem(pem).unwrap();
        match kind.alg() {
            "RSA-OAEP-256" => {
                RSA_OAEP_256.decrypter_from_pem(pem).unwrap();
                assert_eq!(RsaKeyPair::from_pem(pem).unwrap().key_len() * 8, 2048);
            }
            "ECDH-ES+A256KW" => {
                ECDH_ES_A256KW.decrypter_from_pem(pem).unwrap();
                let pair = EcKeyPair::from_pem(pem, None).unwrap();
                assert_eq!(pair.curve(), EcCurve::P256);
            }
            other => panic!("{other}"),
        }
        // One key per client, whichever environment.
        let first = pems.entry(planned.client_id.clone()).or_insert(pem);
        assert_eq!(*first, pem);
    }
    assert_eq!(pems.len(), 2, "two FTN clients with encryption keys");
}

/// The summary's sample: one token per client and environment with a completed
/// transaction, every one fetched and verified, encrypted as the client's registration
/// asked and signed with its algorithm; and the summary's line says so.
fn check_token_sample(seed: u64, summary: &Summary, file: &Value) {
    let plan = Plan::new(seed, 1);
    assert!(!summary.tokens.is_empty());
    assert_eq!(summary.tokens_fetched(), summary.tokens.len());
    assert_eq!(summary.tokens_verified(), summary.tokens.len());
    let shown = summary.to_string();
    let n = summary.tokens.len();
    assert!(
        shown.contains(&format!("tokens        fetched {n}, verified {n}")),
        "{shown}"
    );
    let mut seen = BTreeSet::new();
    for t in &summary.tokens {
        assert!(t.fetched && t.verified, "{t:?}");
        assert!(seen.insert((t.client_id.clone(), t.environment)), "{t:?}");
        let planned = plan
            .clients
            .iter()
            .find(|c| c.client_id == t.client_id && c.environment == t.environment)
            .unwrap();
        assert_eq!(
            t.jwe_alg.as_deref(),
            planned.token_encryption.map(|e| e.alg()),
            "{t:?}"
        );
        assert_eq!(t.jws_alg.as_deref(), Some(planned.signing_alg()), "{t:?}");
        let tx = file["transactions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["transaction_id"] == t.transaction_id.as_str())
            .unwrap();
        assert_eq!(tx["client_id"], t.client_id.as_str());
    }
    // Every client with a completed transaction is in the sample; the FTN ones are.
    let completed: BTreeSet<&str> = file["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| {
            t["actions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["action"] == "complete" && a["outcome"] == "recorded")
        })
        .map(|t| t["client_id"].as_str().unwrap())
        .collect();
    let sampled: BTreeSet<&str> = summary
        .tokens
        .iter()
        .map(|t| t.client_id.as_str())
        .collect();
    assert_eq!(sampled, completed);
    for c in plan.clients.iter().filter(|c| c.token_encryption.is_some()) {
        assert!(sampled.contains(c.client_id.as_str()), "{}", c.client_id);
    }
}

both_backends!(
    simulate_covers_every_idp_and_refusal,
    ftn_tokens_decrypt_with_the_keys_in_the_file,
    same_seed_same_traffic,
    a_seed_runs_once_per_ledger,
);

async fn simulate_covers_every_idp_and_refusal(backend: Backend) {
    let s = Service::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let out = out_file(&dir, "sim.json");
    let before = s.count().await;
    let (summary, file) = s.simulate(1, &out).await;

    let members: BTreeSet<&str> = file
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        members,
        BTreeSet::from(["url", "clients", "transactions", "auditor_key", "refused"])
    );
    assert_eq!(file["url"], s.base);
    let clients = file["clients"].as_array().unwrap();
    let environments: BTreeSet<&str> = clients
        .iter()
        .map(|c| c["environment"].as_str().unwrap())
        .collect();
    assert_eq!(environments, BTreeSet::from(["CURRENT", "PROD"]));
    let transactions = file["transactions"].as_array().unwrap();
    let idps: BTreeSet<&str> = transactions
        .iter()
        .map(|t| t["idp"].as_str().unwrap())
        .collect();
    assert_eq!(idps.len(), 8, "{idps:?}");
    for t in transactions {
        for member in [
            "transaction_id",
            "session_id",
            "client_id",
            "idp",
            "actions",
        ] {
            assert!(!t[member].is_null(), "{t}");
        }
        for a in t["actions"].as_array().unwrap() {
            let outcome = a["outcome"].as_str().unwrap();
            assert!(["recorded", "refused"].contains(&outcome), "{t}");
            assert_eq!(
                outcome == "refused",
                a["error_description"].is_string(),
                "{t}"
            );
        }
    }
    // Session 0 alone takes every kind of step.
    let actions: BTreeSet<&str> = transactions
        .iter()
        .flat_map(|t| t["actions"].as_array().unwrap())
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.len(), 12, "{actions:?}");
    for code in PLANNED_REFUSALS {
        assert!(file["refused"][code].as_u64() >= Some(1), "{code}: {file}");
    }
    assert_eq!(summary.transactions, transactions.len());
    check_encryption_members(1, &file);
    check_token_sample(1, &summary, &file);
    assert_eq!(summary.sessions, SESSIONS);
    assert_eq!(summary.windows_recorded, 2);
    assert_eq!(summary.windows_cancelled, 1);

    // The ledger holds what the summary says: the client registrations and the records.
    let after = s.count().await;
    assert_eq!(summary.head_before, before);
    assert_eq!(summary.head_after, Some(after));
    assert_eq!(
        after - before,
        summary.records + summary.clients_registered as u64
    );
    assert_eq!(summary.clients_registered, clients.len());

    // Each key authenticates: an SP or auditor key gets 403 from a broker route, not 401.
    let http = reqwest::Client::new();
    let url = format!("{}/v1/sessions", s.base);
    let mut keys: Vec<&str> = clients
        .iter()
        .map(|c| c["sp_key"].as_str().unwrap())
        .collect();
    keys.push(file["auditor_key"].as_str().unwrap());
    for key in keys {
        assert!(key.starts_with("vk_"), "{key}");
        let (status, body) = post(&http, &url, Some(key), json!({})).await;
        assert_eq!(status, 403, "{body}");
    }

    // No CPR number in the file or the summary.
    let text = std::fs::read_to_string(&out).unwrap();
    let shown = summary.to_string();
    let cprs = plan_cprs(1);
    assert!(!cprs.is_empty());
    for cpr in &cprs {
        assert!(!text.contains(cpr.as_str()) && !shown.contains(cpr.as_str()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the file holds keys");
    }
    s.stop().await;
}

/// The parts of an out file that only depend on the seed: not the keys, which are new in
/// every run (`sp_key`, `auditor_key`, `encryption.private_key_pem`).
fn traffic(file: &Value) -> (Value, Value, Vec<Value>) {
    let clients = file["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            json!([
                c["client_id"],
                c["environment"],
                c["encryption"]["alg"],
                c["encryption"]["enc"]
            ])
        })
        .collect();
    (
        file["transactions"].clone(),
        file["refused"].clone(),
        clients,
    )
}

async fn same_seed_same_traffic(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let a = Service::start(backend).await;
    let b = Service::start(backend).await;
    let (_, first) = a.simulate(7, &out_file(&dir, "a.json")).await;
    let (_, second) = b.simulate(7, &out_file(&dir, "b.json")).await;
    assert_eq!(traffic(&first), traffic(&second));
    assert_ne!(first["auditor_key"], second["auditor_key"]);
    let private_keys = |file: &Value| -> Vec<Value> {
        file["clients"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["encryption"].get("private_key_pem").cloned())
            .collect()
    };
    let (k1, k2) = (private_keys(&first), private_keys(&second));
    assert_eq!(k1.len(), 4);
    assert!(
        k1.iter().all(|k| !k2.contains(k)),
        "encryption keys are new in every run"
    );
    // Another seed, on the same ledger: other clients, other traffic.
    let (_, other) = a.simulate(8, &out_file(&dir, "c.json")).await;
    let (t1, _, c1) = traffic(&first);
    let (t2, _, c2) = traffic(&other);
    assert_ne!(t1, t2);
    assert_ne!(c1, c2);
    a.stop().await;
    b.stop().await;
}

/// From `MIN_SESSIONS` sessions on, each FTN client's token is in the sample; and,
/// checked here independently of the run: an encrypted client's transaction from the
/// file, fetched with its `sp_key`, decrypts with the file's `private_key_pem`, verifies
/// against the JWKS, names the client and the transaction, and is bound to the ledger.
async fn ftn_tokens_decrypt_with_the_keys_in_the_file(backend: Backend) {
    let s = Service::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let out = out_file(&dir, "sim.json");
    let seed = 21;
    let (summary, file) = s.simulate_with(seed, &out, MIN_SESSIONS).await;
    check_encryption_members(seed, &file);
    check_token_sample(seed, &summary, &file);
    let encrypted: BTreeSet<&str> = summary
        .tokens
        .iter()
        .filter(|t| t.jwe_alg.is_some())
        .map(|t| t.client_id.as_str())
        .collect();
    assert_eq!(encrypted.len(), 2, "{:?}", summary.tokens);

    let http = reqwest::Client::new();
    let jwks: Value = http
        .get(format!("{}/.well-known/jwks.json", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reader = vidne::ledger::Reader::new(s.db.pool(1).await);
    let clients = file["clients"].as_array().unwrap();
    let mut checked = BTreeSet::new();
    for c in clients.iter().filter(|c| c.get("encryption").is_some()) {
        let client_id = c["client_id"].as_str().unwrap();
        if !checked.insert(client_id) {
            continue;
        }
        let tx = file["transactions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["client_id"] == client_id)
            .find(|t| {
                t["actions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a["action"] == "complete" && a["outcome"] == "recorded")
            })
            .unwrap_or_else(|| panic!("{client_id}: no completed transaction"));
        let transaction_id = tx["transaction_id"].as_str().unwrap();
        assert_eq!(tx["idp"], "ftn");
        let response = http
            .get(format!("{}/v1/transactions/{transaction_id}/token", s.base))
            .bearer_auth(c["sp_key"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/jwt");
        let jwt = response.text().await.unwrap();
        assert_eq!(jwt.split('.').count(), 5, "a JWE");
        let pem = c["encryption"]["private_key_pem"].as_str().unwrap();
        let key = DecryptKey::from_pem(pem).unwrap();
        // Without the key it does not open.
        assert!(token::verify(&jwt, &jwks, None).is_err());
        let verified =
            token::verify(&jwt, &jwks, Some(&key)).unwrap_or_else(|e| panic!("{client_id}: {e}"));
        assert!(verified.encrypted);
        let jwe = verified.jwe_header.as_ref().unwrap();
        assert_eq!(jwe["alg"], c["encryption"]["alg"]);
        assert_eq!(jwe["enc"], c["encryption"]["enc"]);
        let signing = if client_id.ends_with("-kaupunki") {
            "ES256"
        } else {
            "EdDSA"
        };
        assert_eq!(verified.header["alg"], signing);
        assert_eq!(verified.claims["aud"], client_id);
        assert_eq!(verified.claims["transaction_id"], transaction_id);
        token::check_binding(
            &verified.claims,
            &DbLedger::new(reader.clone()),
            Some(TEST_ORIGIN),
        )
        .await
        .unwrap();
    }
    assert_eq!(checked.len(), 2);
    reader.db().close().await;
    s.stop().await;
}

/// A client of the seed registered before the run, with an encryption key the run did
/// not make: its tokens cannot be decrypted, which the run reports as a failure naming
/// why, and the file gives it no `encryption`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_run_cannot_decrypt_is_a_failure() {
    let s = Service::start(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let out = out_file(&dir, "sim.json");
    let seed = 4;
    let client_id = format!("sim-{seed}-vakuutus");
    let other = RSA_OAEP_256.generate_key_pair(2048).unwrap();
    let public = String::from_utf8(other.to_pem_public_key()).unwrap();
    let http = reqwest::Client::new();
    for environment in ["CURRENT", "PROD"] {
        let body = json!({"client_id": client_id, "environment": environment,
                          "name": "Simula Vakuutus Oy", "token_encryption_key": public});
        let (status, out) = post(
            &http,
            &format!("{}/v1/clients", s.base),
            Some(&s.admin),
            body,
        )
        .await;
        assert_eq!(status, 201, "{out}");
    }
    let summary = simulate::run(&s.options_with(seed, &out, MIN_SESSIONS))
        .await
        .unwrap();
    assert_eq!(summary.clients_present, 2);
    assert_eq!(summary.failure_count, 1, "{:?}", summary.failures);
    let f = &summary.failures[0];
    assert!(f.step.contains(&client_id), "{f}");
    assert!(f.to_string().contains("pick another --seed"), "{f}");
    let t = summary
        .tokens
        .iter()
        .find(|t| t.client_id == client_id)
        .unwrap();
    assert!(!t.fetched && !t.verified);
    assert_eq!(summary.tokens_verified(), summary.tokens.len() - 1);
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    for c in file["clients"].as_array().unwrap() {
        assert_eq!(
            c.get("encryption").is_some(),
            c["client_id"].as_str().unwrap().ends_with("-kaupunki"),
            "{c}"
        );
    }
    s.stop().await;
}

async fn a_seed_runs_once_per_ledger(backend: Backend) {
    let s = Service::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let out = out_file(&dir, "sim.json");
    s.simulate(3, &out).await;
    let kept = std::fs::read_to_string(&out).unwrap();
    let before = s.count().await;
    let err = simulate::run(&s.options(3, &out)).await.unwrap_err();
    assert_eq!(err.to_string(), simulate::already_simulated(3));
    assert!(err.to_string().contains("pick another --seed"));
    assert_eq!(s.count().await, before, "nothing appended");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        kept,
        "the earlier run's file is kept"
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() == 1,
        "no partial file left"
    );
    s.stop().await;
}

/// The command line: a run, its summary, a second run of the seed (exit 2), and help
/// that names the settings but never shows the admin key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_runs_and_refuses_a_second_run() {
    let s = Service::start(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let out = out_file(&dir, "cli.json");
    let run = {
        let (base, admin, out) = (s.base.clone(), s.admin.clone(), out.clone());
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_vidne"))
                .args(["simulate", "--url", &base, "--seed", "5", "--out"])
                .arg(&out)
                .args(["--sessions", &MIN_SESSIONS.to_string()])
                .env("VIDNE_ADMIN_KEY", &admin)
                .output()
                .unwrap()
        }
    };
    let first = tokio::task::spawn_blocking(run.clone()).await.unwrap();
    let stdout = String::from_utf8_lossy(&first.stdout);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("failures      0"), "{stdout}");
    let tokens = stdout
        .lines()
        .find(|l| l.starts_with("tokens "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let n: usize = tokens
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("{tokens}"));
    assert!(n >= 2, "{tokens}");
    assert!(
        tokens.contains(&format!("fetched {n}, verified {n}")),
        "{tokens}"
    );
    assert!(!stdout.contains("PRIVATE KEY") && !stderr.contains("PRIVATE KEY"));
    assert!(stdout.contains("mitid_cpr_match_failed"), "{stdout}");
    assert!(!stdout.contains(&s.admin) && !stderr.contains(&s.admin));
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(!stdout.contains(file["auditor_key"].as_str().unwrap()));

    let second = tokio::task::spawn_blocking(run).await.unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&simulate::already_simulated(5)), "{stderr}");

    let help = std::process::Command::new(env!("CARGO_BIN_EXE_vidne"))
        .args(["simulate", "--help"])
        .env("VIDNE_ADMIN_KEY", "vk_a-secret-admin-key")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for word in [
        "VIDNE_URL",
        "VIDNE_ADMIN_KEY",
        "--sessions",
        "--seed",
        "--out",
        "https",
    ] {
        assert!(text.contains(word), "{word}: {text}");
    }
    assert!(!text.contains("a-secret-admin-key"), "{text}");
    s.stop().await;
}

/// https needs TLS, which this build leaves out: said before any request.
#[tokio::test]
async fn https_is_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        url: "https://vidne.example".into(),
        admin_key: "vk_x".into(),
        sessions: 1,
        seed: 1,
        out: out_file(&dir, "x.json"),
        concurrency: 1,
        progress: false,
    };
    let err = simulate::run(&options).await.unwrap_err();
    assert!(err.to_string().contains("https is not supported"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
