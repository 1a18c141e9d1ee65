//! Sealed transaction tokens end to end, on both backends: the broker completes
//! transactions over HTTP, each SP fetches its own token (signed EdDSA or ES256, or
//! nested in a JWE for a client registered with an encryption key), and the token
//! verifies with the service's JWKS, against the schema, against the ledger, and in an
//! independent JOSE implementation (Python). Other callers get 404; a rebuild from the
//! ledger gives the same claims.

use std::path::Path;

use josekit::jwe::{ECDH_ES_A256KW, RSA_OAEP_256};
use josekit::jwk::alg::ec::EcCurve;
use reqwest::Client;
use serde_json::{json, Value};
use vidne::token::{self, DbLedger, DecryptKey};

use crate::api::{cli_key, post};
use crate::both_backends;
use crate::helpers::{spawn_app, vidne, Backend, TestDb, TEST_ISSUER, TEST_ORIGIN};
use crate::interop::python;
use crate::token::write;

const UUID: &str = "7d1b3c1e-5a4f-4a8e-9b7e-2f1c3d4e5a6b";
const SUBSTANTIAL: &str = "https://data.gov.dk/concept/core/nsis/Substantial";

both_backends!(sps_fetch_their_sealed_tokens);

struct Sp {
    client_id: &'static str,
    key: String,
    /// The private key of its encryption key, if it registered one.
    decrypt_pem: Option<String>,
}

fn text(b: Vec<u8>) -> String {
    String::from_utf8(b).unwrap()
}

async fn get(http: &Client, url: &str, key: Option<&str>) -> (u16, String, String) {
    let mut req = http.get(url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, r.text().await.unwrap())
}

fn schema() -> jsonschema::Validator {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/tokens/transaction-token.v1.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

async fn sps_fetch_their_sealed_tokens(backend: Backend) {
    let db = TestDb::new(backend).await;
    let admin = cli_key(&db, "admin");
    let broker = cli_key(&db, "broker");
    let auditor = cli_key(&db, "auditor");
    let (base, handle) = spawn_app(&db).await;
    let http = Client::new();

    // Five SPs: EdDSA, ES256, and three that encrypt (RSA PEM, P-256 JWK, and an RSA key
    // in a JWKS the SP serves at its own URL).
    let rsa = RSA_OAEP_256.generate_key_pair(2048).unwrap();
    let ec = ECDH_ES_A256KW.generate_ec_key_pair(EcCurve::P256).unwrap();
    let mut ec_jwk = ec.to_jwk_public_key();
    ec_jwk.set_key_id("sp-ec-enc-1");
    let served = RSA_OAEP_256.generate_key_pair(2048).unwrap();
    let mut served_jwk = served.to_jwk_public_key();
    served_jwk.set_key_use("enc");
    served_jwk.set_key_id("sp-url-enc-1");
    let (jwks_url, jwks_server) =
        serve_jwks(json!({"keys": [serde_json::to_value(&served_jwk).unwrap()]})).await;
    let sps = [
        ("sp-ed", json!({}), None),
        ("sp-es", json!({"token_signing_alg": "ES256"}), None),
        (
            "sp-rsa",
            json!({"token_encryption_key": text(rsa.to_pem_public_key())}),
            Some(text(rsa.to_pem_private_key())),
        ),
        (
            "sp-ec",
            json!({"token_signing_alg": "ES256",
                   "token_encryption_key": serde_json::to_string(&ec_jwk).unwrap()}),
            Some(text(ec.to_pem_private_key())),
        ),
        (
            "sp-url",
            json!({"token_encryption_key": jwks_url}),
            Some(text(served.to_pem_private_key())),
        ),
    ];
    let mut registered = Vec::new();
    for (client_id, settings, decrypt_pem) in sps {
        let mut body = json!({"client_id": client_id, "environment": "PROD", "name": client_id});
        body.as_object_mut()
            .unwrap()
            .extend(settings.as_object().unwrap().clone());
        let (status, out) = post(&http, &format!("{base}/v1/clients"), Some(&admin), body).await;
        assert_eq!(status, 201, "{out}");
        registered.push(Sp {
            client_id,
            key: cli_key(&db, &format!("sp:{client_id}")),
            decrypt_pem,
        });
    }
    // A key that is no encryption key is refused at registration, naming the member.
    let bad = json!({"client_id": "sp-bad", "environment": "PROD", "name": "x",
                     "token_encryption_key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"});
    let (status, out) = post(&http, &format!("{base}/v1/clients"), Some(&admin), bad).await;
    assert_eq!(status, 400, "{out}");
    assert_eq!(out["field"], "token_encryption_key");

    let broker_post = |path: String, body: Value| {
        let http = http.clone();
        let base = base.clone();
        let broker = broker.clone();
        async move {
            let (status, out) = post(&http, &format!("{base}{path}"), Some(&broker), body).await;
            assert_eq!(status, 201, "{path}: {out}");
            out
        }
    };
    let jwks: Value = serde_json::from_str(
        &get(&http, &format!("{base}/.well-known/jwks.json"), None)
            .await
            .2,
    )
    .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "{jwks}");
    let tmp = tempfile::tempdir().unwrap();
    let jwks_file = write(tmp.path(), "jwks.json", &jwks.to_string());
    let reader = vidne::ledger::Reader::new(db.pool(1).await);
    let validator = schema();
    let mut first_claims = Vec::new();

    for (i, sp) in registered.iter().enumerate() {
        let session = format!("s-{i}");
        let tx = format!("tx-{i}");
        let url = format!("{base}/v1/transactions/{tx}/token");
        let start = broker_post(
            "/v1/sessions".into(),
            json!({"session_id": session, "transaction_id": tx, "client_id": sp.client_id,
                   "environment": "PROD", "idp": "mitid", "signed_request": true,
                   "identity_type": "private", "loa": SUBSTANTIAL, "ial": SUBSTANTIAL,
                   "aal": SUBSTANTIAL, "amr": ["code_app"], "subject": {"mitid.uuid": UUID},
                   "psd2": true}),
        )
        .await;
        let s = format!("/v1/sessions/{session}");
        let signed = broker_post(
            format!("{s}/signings"),
            json!({"transaction_id": tx, "transaction_text": "QmV0YWwgMTAwIGty",
                   "transaction_text_type": "text", "reference_text": "RmFrdHVyYSA0Mg=="}),
        )
        .await;
        // Not completed yet: the same 404 as for anything unknown.
        let (status, _, before) = get(&http, &url, Some(&sp.key)).await;
        assert_eq!(status, 404, "{before}");
        let completed =
            broker_post(format!("{s}/completions"), json!({"transaction_id": tx})).await;

        // The SP fetches it at once.
        let (status, ct, jwt) = get(&http, &url, Some(&sp.key)).await;
        assert_eq!(status, 200, "{}: {jwt}", sp.client_id);
        assert_eq!(ct, "application/jwt");
        let decrypt = sp
            .decrypt_pem
            .as_ref()
            .map(|pem| DecryptKey::from_pem(pem).unwrap());
        assert_eq!(
            jwt.split('.').count(),
            if decrypt.is_some() { 5 } else { 3 }
        );
        let verified = token::verify(&jwt, &jwks, decrypt.as_ref())
            .unwrap_or_else(|e| panic!("{}: {e}", sp.client_id));
        assert_eq!(verified.encrypted, decrypt.is_some());
        let alg = if sp.client_id.ends_with("es") || sp.client_id == "sp-ec" {
            "ES256"
        } else {
            "EdDSA"
        };
        assert_eq!(verified.header["alg"], alg);
        assert_eq!(verified.header["typ"], token::TOKEN_TYPE);
        let claims = Value::Object(verified.claims.clone());
        assert!(validator.is_valid(&claims), "{claims}");
        assert_eq!(claims["iss"], TEST_ISSUER);
        assert_eq!(claims["aud"], sp.client_id);
        assert_eq!(claims["transaction_id"], tx);
        assert_eq!(claims["sub"], format!("mitid:{UUID}"));
        assert_eq!(claims["mitid.uuid"], UUID);
        assert_eq!(claims["mitid.psd2"], true);
        assert_eq!(claims["mitid.reference_text"], "RmFrdHVyYSA0Mg==");
        assert_eq!(
            claims["transaction_actions"],
            json!(["mitid.login", "mitid.transaction_signing"])
        );
        // The binding names exactly the transaction's records, as appended.
        let mut appended: Vec<Value> = [&start, &signed, &completed]
            .iter()
            .flat_map(|out| out["records"].as_array().unwrap().clone())
            .map(|r| json!({"seq": r["seq"], "hash": r["hash"]}))
            .collect();
        appended.sort_by_key(|r| r["seq"].as_u64());
        assert_eq!(claims["ledger"]["records"], Value::Array(appended));
        assert_eq!(claims["ledger"]["origin"], TEST_ORIGIN);
        token::check_binding(
            &verified.claims,
            &DbLedger::new(reader.clone()),
            Some(TEST_ORIGIN),
        )
        .await
        .unwrap();

        // An independent JOSE implementation agrees.
        let mut args = vec!["verify", "--jwks", jwks_file.to_str().unwrap()];
        let pem_file;
        if let Some(pem) = &sp.decrypt_pem {
            pem_file = write(tmp.path(), &format!("{}.pem", sp.client_id), pem);
            args.extend(["--decrypt-key", pem_file.to_str().unwrap()]);
        }
        let (code, out, err) = python(&args, &jwt);
        assert_eq!(code, 0, "{}: {err}", sp.client_id);
        let py: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(py["claims"], claims);

        // No one else gets it: other SPs see what an unknown id gives; other roles 403.
        for other in registered.iter().filter(|o| o.client_id != sp.client_id) {
            let (status, _, body) = get(&http, &url, Some(&other.key)).await;
            assert_eq!(
                (status, body.clone()),
                (404, before.clone()),
                "{}",
                other.client_id
            );
        }
        let (status, _, unknown) = get(
            &http,
            &format!("{base}/v1/transactions/nope/token"),
            Some(&sp.key),
        )
        .await;
        assert_eq!((status, unknown), (404, before.clone()));
        for key in [&admin, &broker, &auditor] {
            assert_eq!(get(&http, &url, Some(key)).await.0, 403);
        }
        assert_eq!(get(&http, &url, None).await.0, 401);
        first_claims.push((sp.client_id, tx, claims));
    }
    reader.db().close().await;
    handle.stop(true).await;

    // Rebuilt from nothing by the command line, the tokens hold the same claims.
    let url = db.url_string();
    let keys = db.key_dir();
    let (code, out, err) = vidne(&[
        "projections",
        "rebuild",
        "--database",
        &url,
        "--signing-keys",
        keys.to_str().unwrap(),
        "--issuer",
        TEST_ISSUER,
        "--origin",
        TEST_ORIGIN,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("rebuilt: 5 tokens"), "{out}");
    let (base, handle) = spawn_app(&db).await;
    for (sp, (client_id, tx, claims)) in registered.iter().zip(&first_claims) {
        assert_eq!(sp.client_id, *client_id);
        let (status, _, jwt) = get(
            &http,
            &format!("{base}/v1/transactions/{tx}/token"),
            Some(&sp.key),
        )
        .await;
        assert_eq!(status, 200);
        let decrypt = sp
            .decrypt_pem
            .as_ref()
            .map(|p| DecryptKey::from_pem(p).unwrap());
        let again = token::verify(&jwt, &jwks, decrypt.as_ref()).unwrap();
        assert_eq!(Value::Object(again.claims), *claims);
    }
    handle.stop(true).await;
    jwks_server.stop(true).await;
}

/// An SP's own JWKS endpoint on 127.0.0.1:0.
async fn serve_jwks(jwks: Value) -> (String, actix_web::dev::ServerHandle) {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let server = HttpServer::new(move || {
        let jwks = jwks.clone();
        App::new().route(
            "/jwks.json",
            web::get().to(move || {
                let jwks = jwks.clone();
                async move { HttpResponse::Ok().json(jwks) }
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

both_backends!(the_projection_survives_restarts_and_shared_databases);

/// Completes `n` MitID transactions of `client` over HTTP, named `{prefix}{i}`.
async fn complete_transactions(
    http: &Client,
    base: &str,
    broker: &str,
    client: &str,
    prefix: &str,
    n: usize,
) {
    for i in 0..n {
        let (session, tx) = (format!("{prefix}s{i}"), format!("{prefix}{i}"));
        let body = json!({"session_id": session, "transaction_id": tx, "client_id": client,
                          "environment": "PROD", "idp": "mitid", "identity_type": "private",
                          "loa": SUBSTANTIAL, "ial": SUBSTANTIAL, "aal": SUBSTANTIAL,
                          "amr": ["code_app"], "subject": {"mitid.uuid": UUID}});
        let (status, out) = post(http, &format!("{base}/v1/sessions"), Some(broker), body).await;
        assert_eq!(status, 201, "{out}");
        let url = format!("{base}/v1/sessions/{session}/completions");
        let (status, out) = post(http, &url, Some(broker), json!({"transaction_id": tx})).await;
        assert_eq!(status, 201, "{out}");
    }
}

/// The position is kept: a restarted service seals what came after it and nothing twice;
/// rebuilt by two projections at once (two processes on one database), every token is
/// sealed once, with the claims it had.
async fn the_projection_survives_restarts_and_shared_databases(backend: Backend) {
    use std::sync::Arc;
    use vidne::domain::token::TokenContext;
    use vidne::domain::values::ClientId;
    use vidne::projection::TokenProjection;
    use vidne::token::{KeySealer, SigningKeys};

    let db = TestDb::new(backend).await;
    let admin = cli_key(&db, "admin");
    let broker = cli_key(&db, "broker");
    let sp = cli_key(&db, "sp:sp-acme");
    let http = Client::new();
    let (base, handle) = spawn_app(&db).await;
    let body = json!({"client_id": "sp-acme", "environment": "PROD", "name": "Acme"});
    assert_eq!(
        post(&http, &format!("{base}/v1/clients"), Some(&admin), body)
            .await
            .0,
        201
    );
    complete_transactions(&http, &base, &broker, "sp-acme", "a", 5).await;
    assert_eq!(
        get(
            &http,
            &format!("{base}/v1/transactions/a4/token"),
            Some(&sp)
        )
        .await
        .0,
        200
    );
    handle.stop(true).await;

    // A second start: the earlier tokens are not sealed again (that would break their
    // uniqueness and stop the projection), the new ones are.
    let (base, handle) = spawn_app(&db).await;
    complete_transactions(&http, &base, &broker, "sp-acme", "b", 5).await;
    for tx in ["a0", "a4", "b0", "b4"] {
        let (status, _, body) = get(
            &http,
            &format!("{base}/v1/transactions/{tx}/token"),
            Some(&sp),
        )
        .await;
        assert_eq!(status, 200, "{tx}: {body}");
    }
    handle.stop(true).await;

    let projection = || async {
        let pool = db.pool(2).await;
        let reader = vidne::ledger::Reader::new(pool.clone());
        let clients = vidne::http::registry::ClientsView::load(&reader)
            .await
            .unwrap();
        let keys = SigningKeys::ensure(&db.key_dir(), chrono::Utc::now()).unwrap();
        let context = TokenContext {
            issuer: TEST_ISSUER.into(),
            origin: TEST_ORIGIN.into(),
        };
        TokenProjection::new(
            pool,
            reader,
            context,
            Arc::new(KeySealer::new(keys, clients.clients())),
        )
    };
    let (one, two) = (projection().await, projection().await);
    assert_eq!(one.count().await.unwrap(), 10);
    let acme = ClientId::parse("sp-acme").unwrap();
    let before = one.tokens(&acme, "b3").await.unwrap();
    let head = one.position().await.unwrap();
    one.reset().await.unwrap();
    assert_eq!(
        (one.count().await.unwrap(), one.position().await.unwrap()),
        (0, 0)
    );
    let (a, b) = tokio::join!(one.catch_up(), two.catch_up());
    assert_eq!((a.unwrap(), b.unwrap()), (head, head));
    assert_eq!(one.count().await.unwrap(), 10);
    let after = one.tokens(&acme, "b3").await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].claims, before[0].claims);
    assert_eq!(after[0].completed_seq, before[0].completed_seq);
}
