//! `vidne bench tokens`: sealing transaction tokens, next to raw Ed25519 signatures
//! measured in the same run.
//!
//! Every case runs on one thread over the same realistic claims: a MitID login, a
//! signing and a CPR match, folded by [`SessionTokens`] from real session events, so the
//! claims and the ledger binding (5 records) are what the projection signs. The
//! baseline, `ed25519_dalek::SigningKey::sign`, signs messages of the very length of
//! those tokens' JWS signing input (`base64url(header) "." base64url(claims)`), so the
//! ratio is what the JOSE layer (serialising, base64url, the claim checks, the JWE) costs
//! on top of the signature itself.
//!
//! Then what a token fetch does per request for a JWE client (the stored JWS is
//! encrypted at each fetch): the registered key parsed and the JWS encrypted, and the
//! encryption alone. Last, labelled apart, the projection end to end on a scratch SQLite
//! file: the records are appended through the real ledger first (not timed), then
//! `catch_up()` reads, decodes, folds, signs and stores every token (timed).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::Signer;
use josekit::jwe::{ECDH_ES_A256KW, RSA_OAEP_256};
use josekit::jwk::alg::ec::EcCurve;
use rand_core::OsRng;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::Scratch;
use crate::db::{self, DatabaseUrl, Db};
use crate::domain::session::{
    CprMatchCompleted, LoginCompleted, SessionEvent, TransactionCompleted, TransactionSigned,
    TransactionStarted,
};
use crate::domain::token::{RecordRef, SessionTokens, TokenContext};
use crate::domain::values::{
    ClientId, Cpr, Environment, IdentityType, Idp, NsisLevel, Pepper, SessionId, Timestamp,
    TransactionId, TransactionTextType,
};
use crate::domain::LedgerEvent;
use crate::ledger::{Ledger, LedgerOptions, NewEvent, Reader};
use crate::projection::TokenProjection;
use crate::record::{Actor, Event, StreamId};
use crate::token::{self, Alg, EncryptionKeySource, KeySealer, RecipientKey, SigningKeys};

/// The issuer and ledger origin of the bench's tokens (the service's defaults).
pub(crate) fn context() -> TokenContext {
    TokenContext {
        issuer: "https://vidne.local".into(),
        origin: "vidne.local/ledger".into(),
    }
}

/// One MitID session of transaction `i` of `run` for `client`: started, login, signing,
/// CPR match, completed. Its token seals all five records.
pub(crate) fn session_events(
    run: &str,
    i: u64,
    client: &ClientId,
    pepper: &Pepper,
) -> anyhow::Result<(SessionId, Vec<SessionEvent>)> {
    let session = SessionId::parse(format!("bench-{run}-s{i}"))?;
    let transaction_id = TransactionId::parse(format!("bench-{run}-t{i}"))?;
    let t0 = 1_795_500_000_000_000 + i64::try_from(i)? * 1_000_000;
    let at = |s: i64| Timestamp::from_micros(t0 + s * 1_000_000);
    let uuid = format!("7d1b3c1e-5a4f-4a8e-9b7e-{:012x}", i);
    let text = "QmV0YWwgMTAwIGtyIHRpbCBBY21lIEJhbms=";
    let text_sha256 = STANDARD.encode(Sha256::digest(STANDARD.decode(text)?));
    let s = Some(NsisLevel::Substantial);
    let events = vec![
        SessionEvent::TransactionStarted(TransactionStarted {
            transaction_id: transaction_id.clone(),
            client_id: client.clone(),
            environment: Environment::Prod,
            idp: Idp::Mitid,
            signed_request: true,
            at: at(0)?,
        }),
        SessionEvent::LoginCompleted(LoginCompleted {
            transaction_id: transaction_id.clone(),
            client_id: client.clone(),
            environment: Environment::Prod,
            idp: Idp::Mitid,
            identity_type: IdentityType::Private,
            loa: s,
            ial: s,
            aal: s,
            amr: vec!["code_app".into()],
            subject: BTreeMap::from([("mitid.uuid".to_owned(), uuid.clone())]),
            subject_key: format!("mitid:{uuid}"),
            psd2: Some(true),
            at: at(20)?,
        }),
        SessionEvent::TransactionSigned(TransactionSigned {
            transaction_id: transaction_id.clone(),
            transaction_text: text.into(),
            transaction_text_type: TransactionTextType::Text,
            transaction_text_sha256: text_sha256,
            reference_text: Some("RmFrdHVyYSA0MiAvIGtvbnRvIDEyMzQ=".into()),
            at: at(35)?,
        }),
        SessionEvent::CprMatchCompleted(CprMatchCompleted {
            transaction_id: transaction_id.clone(),
            cpr_ref: pepper.cpr_ref(&Cpr::parse("0101904286")?),
            matched: true,
            attempt: 1,
            at: at(40)?,
        }),
        SessionEvent::TransactionCompleted(TransactionCompleted {
            transaction_id,
            client_id: client.clone(),
            at: at(41)?,
        }),
    ];
    Ok((session, events))
}

/// The claims the projection would sign for transaction `i` (records at made-up `seq`s
/// with SHA-256-sized hashes).
fn claims(run: &str, i: u64, pepper: &Pepper) -> anyhow::Result<Map<String, Value>> {
    let client = ClientId::parse("sp-bench-acme-bank")?;
    let (session, events) = session_events(run, i, &client, pepper)?;
    let mut state = SessionTokens::default();
    let ctx = context();
    let mut sealed = None;
    for (k, event) in events.iter().enumerate() {
        let seq = 1_000_000 + i * 11 + k as u64;
        let record = RecordRef {
            seq,
            hash: hex::encode(Sha256::digest(seq.to_be_bytes())),
        };
        sealed = sealed.or(state.apply(&session, record, event, &ctx));
    }
    Ok(sealed
        .ok_or_else(|| anyhow::anyhow!("the session sealed no token"))?
        .claims)
}

/// Runs `f` on every item of `inputs` (after a short warm-up) and returns items/s.
fn rate<T>(inputs: &[T], mut f: impl FnMut(&T) -> anyhow::Result<usize>) -> anyhow::Result<f64> {
    let mut fold = 0usize;
    for x in inputs.iter().take((inputs.len() / 10).clamp(1, 200)) {
        fold ^= f(x)?;
    }
    let started = Instant::now();
    for x in inputs {
        fold ^= f(x)?;
    }
    let secs = started.elapsed().as_secs_f64();
    black_box(fold);
    Ok(inputs.len() as f64 / secs.max(1e-9))
}

fn line(label: &str, rate: f64, baseline: f64) {
    println!(
        "  {label:<52} {rate:>9.0} tokens/s  ratio {:.2}",
        rate / baseline
    );
}

pub async fn tokens(count: u64) -> anyhow::Result<()> {
    anyhow::ensure!(count > 0, "--tokens must be at least 1");
    let scratch = Scratch::new("tokens")?;
    let run = super::run_id();
    let pepper = Pepper::new(b"vidne bench pepper, not a secret".to_vec())
        .map_err(|e| anyhow::anyhow!("pepper: {}", e.reason))?;
    let keys = SigningKeys::ensure(&scratch.path().join("signing-keys"), chrono::Utc::now())?;
    let now = chrono::Utc::now();
    let ed = keys.signer(Alg::EdDSA, now)?;
    let es = keys.signer(Alg::ES256, now)?;
    let all: Vec<Map<String, Value>> = (0..count)
        .map(|i| claims(&run, i, &pepper))
        .collect::<anyhow::Result<_>>()?;
    let sample = token::sign(&all[0], ed)?;
    let (signing_input, _) = sample
        .rsplit_once('.')
        .ok_or_else(|| anyhow::anyhow!("the token is not a compact JWS"))?;
    let records = all[0]["ledger"]["records"].as_array().map_or(0, Vec::len);
    let rsa = RSA_OAEP_256.generate_key_pair(2048)?;
    let rsa_to = RecipientKey::from_pem(std::str::from_utf8(&rsa.to_pem_public_key())?)?;
    let ec = ECDH_ES_A256KW.generate_ec_key_pair(EcCurve::P256)?;
    let ec_to = RecipientKey::from_pem(std::str::from_utf8(&ec.to_pem_public_key())?)?;
    println!(
        "vidne bench tokens: {count} tokens per case, one thread, {} build; claims of a MitID \
         login + signing + CPR match: {} claims, ledger binding of {records} records, \
         {}-byte JWS (signing input {} bytes), {}-byte JWE (RSA), {}-byte JWE (P-256)",
        super::build_kind(),
        all[0].len(),
        sample.len(),
        signing_input.len(),
        token::encrypt(&sample, &rsa_to)?.len(),
        token::encrypt(&sample, &ec_to)?.len(),
    );

    // (a) The baseline: the Ed25519 signature alone, over inputs of the same length.
    let dalek = ed25519_dalek::SigningKey::generate(&mut OsRng);
    let inputs: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            let mut m = signing_input.as_bytes().to_vec();
            let n = m.len();
            m[n - 8..].copy_from_slice(&i.to_be_bytes());
            m
        })
        .collect();
    let raw = rate(&inputs, |m| Ok(dalek.sign(m).to_bytes()[0] as usize))?;
    println!(
        "  {:<52} {raw:>9.0} signatures/s (the baseline)",
        format!("ed25519-dalek sign, {}-byte message", signing_input.len())
    );
    drop(inputs);
    let signed = rate(&all, |c| Ok(token::sign(c, ed)?.len()))?;
    line("token::sign EdDSA (JWS)", signed, raw);
    let es256 = rate(&all, |c| Ok(token::sign(c, es)?.len()))?;
    line("token::sign ES256 (JWS)", es256, raw);
    let sealed_rsa = rate(&all, |c| {
        Ok(token::encrypt(&token::sign(c, ed)?, &rsa_to)?.len())
    })?;
    line(
        "sign EdDSA + encrypt RSA-OAEP-256/A256GCM (2048)",
        sealed_rsa,
        raw,
    );
    let sealed_ec = rate(&all, |c| {
        Ok(token::encrypt(&token::sign(c, ed)?, &ec_to)?.len())
    })?;
    line(
        "sign EdDSA + encrypt ECDH-ES+A256KW/A256GCM (P-256)",
        sealed_ec,
        raw,
    );

    // What `GET /v1/transactions/{id}/token` does for a JWE client at every request: the
    // JWS is stored, the client's registered key is parsed and the JWS encrypted.
    println!("  per fetch of a JWE client (the stored JWS encrypted at each request):");
    let stored: Vec<String> = all
        .iter()
        .map(|c| token::sign(c, ed))
        .collect::<Result<_, _>>()?;
    drop(all);
    for (name, pem, parsed) in [
        ("RSA", rsa.to_pem_public_key(), &rsa_to),
        ("P-256", ec.to_pem_public_key(), &ec_to),
    ] {
        let pem = String::from_utf8(pem)?;
        let per_fetch = rate(&stored, |jws| {
            let to = match token::parse_encryption_key(&pem)? {
                EncryptionKeySource::Key(k) => k,
                EncryptionKeySource::JwksUrl(_) => anyhow::bail!("a PEM parsed as a URL"),
            };
            Ok(token::encrypt(jws, &to)?.len())
        })?;
        line(
            &format!("  parse the registered PEM ({name}) + encrypt"),
            per_fetch,
            raw,
        );
        let encrypt_only = rate(&stored, |jws| Ok(token::encrypt(jws, parsed)?.len()))?;
        line(
            &format!("  encrypt alone ({name}, key parsed once)"),
            encrypt_only,
            raw,
        );
    }
    drop(stored);

    projection(&scratch, &run, count, &pepper, raw).await
}

/// (f) The token projection end to end on a scratch SQLite file.
async fn projection(
    scratch: &Scratch,
    run: &str,
    count: u64,
    pepper: &Pepper,
    raw: f64,
) -> anyhow::Result<()> {
    let url = DatabaseUrl::Sqlite(scratch.path().join("projection.db"));
    let read_db = db::open(&url, "vidne-bench", 4).await?;
    let reader = Reader::new(read_db.clone());
    let ledger = Ledger::start(
        Db::connect(&url, "vidne-writer", 1).await?,
        LedgerOptions::default(),
    );
    let actor = Actor::parse("broker:bench")?;
    let client = ClientId::parse("sp-bench-acme-bank")?;
    let started = Instant::now();
    let mut sessions = Vec::new();
    for i in 0..count {
        let (session, events) = session_events(run, i, &client, pepper)?;
        let stream = StreamId::parse(format!("session:{}", session.as_str()))?;
        let batch = events
            .iter()
            .enumerate()
            .map(|(k, e)| {
                let (event_type, version, data) = e.to_record_parts()?;
                Ok(NewEvent {
                    stream_seq: k as u64 + 1,
                    event: Event {
                        stream: stream.clone(),
                        event_type,
                        version,
                        actor: actor.clone(),
                        data,
                    },
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        sessions.push(batch);
    }
    let appenders = 64;
    let mut lanes: Vec<Vec<Vec<NewEvent>>> = (0..appenders).map(|_| Vec::new()).collect();
    for (i, batch) in sessions.into_iter().enumerate() {
        lanes[i % appenders].push(batch);
    }
    let tasks: Vec<_> = lanes
        .into_iter()
        .map(|lane| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                for batch in lane {
                    ledger.append(batch).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    ledger.close().await;
    let append_secs = started.elapsed().as_secs_f64();
    let records = reader.head().await?.next_seq;

    let clients = crate::http::registry::ClientsView::load(&reader).await?;
    let keys = SigningKeys::ensure(&scratch.path().join("signing-keys"), chrono::Utc::now())?;
    let sealer = KeySealer::new(keys, clients.clients());
    let projection_db = Db::connect(&url, "vidne-projection", 1).await?;
    let projection = TokenProjection::new(
        projection_db.clone(),
        reader.clone(),
        context(),
        Arc::new(sealer),
    );
    let started = Instant::now();
    let position = projection.catch_up().await?;
    let secs = started.elapsed().as_secs_f64();
    let sealed = projection.count().await?;
    anyhow::ensure!(
        position == records && sealed == count,
        "the projection sealed {sealed} of {count} tokens (position {position} of {records})"
    );
    let per_s = sealed as f64 / secs.max(1e-9);
    println!(
        "  projection end to end, SQLite (WAL, synchronous=FULL), EdDSA: catch_up() reads, \
         decodes, folds, signs and stores"
    );
    line(
        &format!("  {sealed} tokens from {records} records in {secs:.2} s"),
        per_s,
        raw,
    );
    println!("    (records appended first through the ledger, not timed: {append_secs:.2} s)");
    projection_db.close().await;
    read_db.close().await;
    Ok(())
}
