//! Sealed transaction tokens end to end: keys from the key store, tokens sealed with
//! `vidne::token`, checked by the `vidne token verify` binary with the binding looked up in
//! a real ledger (PostgreSQL and SQLite, and over HTTP); and the signing key commands.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use josekit::jwe::{ECDH_ES_A256KW, RSA_OAEP_256};
use josekit::jwk::alg::ec::EcCurve;
use serde_json::{json, Map, Value};
use vidne::token::{self, Alg, RecipientKey, SigningKeys, TOKEN_TYPE};

use crate::both_backends;
use crate::helpers::{event, vidne, Backend, TestDb};

pub struct Sealed {
    pub db: TestDb,
    pub tmp: tempfile::TempDir,
    pub keys: SigningKeys,
    /// (seq, record hash hex) of the records appended.
    pub records: Vec<(u64, String)>,
    pub jwks: PathBuf,
}

impl Sealed {
    /// A ledger of 3 records, a key directory made by the key store, and its JWKS in a
    /// file.
    pub async fn new(backend: Backend) -> Sealed {
        let db = TestDb::new(backend).await;
        let (ledger, _) = db.ledger().await;
        let mut records = Vec::new();
        for i in 0..3 {
            let done = ledger
                .append(vec![event(&format!("session:tok{i}"), 1)])
                .await
                .unwrap();
            records.extend(done.iter().map(|a| (a.seq, a.hash.to_hex())));
        }
        ledger.close().await;
        let tmp = tempfile::tempdir().unwrap();
        let keys = SigningKeys::ensure(&tmp.path().join("keys"), chrono::Utc::now()).unwrap();
        let jwks = write(tmp.path(), "jwks.json", &keys.jwks().to_string());
        Sealed {
            db,
            tmp,
            keys,
            records,
            jwks,
        }
    }

    /// Claims sealing `records` (seq, hash) of this ledger.
    pub fn claims(&self, records: &[(u64, String)]) -> Map<String, Value> {
        claims(records)
    }

    pub fn sign(&self, alg: Alg, claims: &Map<String, Value>) -> String {
        token::sign(claims, self.keys.signer(alg, chrono::Utc::now()).unwrap()).unwrap()
    }

    /// Runs `vidne token verify` on `token` with the JWKS file and `extra` arguments.
    pub fn verify(&self, token: &str, extra: &[&str]) -> (i32, String, String) {
        let file = write(self.tmp.path(), "token.jwt", token);
        let mut args = vec![
            "token",
            "verify",
            file.to_str().unwrap(),
            "--jwks",
            self.jwks.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        vidne(&args)
    }

    /// `vidne token verify` with the binding checked against this ledger's database.
    pub fn verify_db(&self, token: &str, extra: &[&str]) -> (i32, String, String) {
        let url = self.db.url_string();
        let mut args = vec!["--database", url.as_str()];
        args.extend_from_slice(extra);
        self.verify(token, &args)
    }
}

pub fn claims(records: &[(u64, String)]) -> Map<String, Value> {
    let records: Vec<Value> = records
        .iter()
        .map(|(seq, hash)| json!({"seq": seq, "hash": hash}))
        .collect();
    json!({
        "iss": "https://broker.example", "sub": "3f0c8a2e", "aud": "sp-acme",
        "iat": 1_795_253_400u64, "auth_time": 1_795_253_380u64, "idp": "mitid",
        "identity_type": "private", "transaction_id": "tx-7",
        "loa": "https://data.gov.dk/concept/core/nsis/Substantial",
        "transaction_actions": "sign",
        "mitid.uuid": "7e2a4d6c-0b1f-4c55-9a51-3d3c0f6b8e21",
        "mitid.reference_text": "Betaling til Blåbær A/S",
        "mitid.transaction_text_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "ledger": {"origin": "vidne.local/ledger", "records": records}
    })
    .as_object()
    .unwrap()
    .clone()
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn header(token: &str) -> Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap()
}

both_backends!(
    valid_tokens_pass_with_the_binding_checked,
    binding_failures_name_the_seq
);

async fn valid_tokens_pass_with_the_binding_checked(backend: Backend) {
    let s = Sealed::new(backend).await;
    let claims = s.claims(&s.records[..2]);
    for alg in Alg::ALL {
        // Given a token sealing seq 0 and 1, signed with the current key
        let token = s.sign(alg, &claims);
        // When verified against the database
        let (code, out, err) = s.verify_db(&token, &[]);
        // Then it passes, naming what it checked
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.starts_with("ok: signature valid"), "{out}");
        assert!(out.contains("seq 0, 1 of vidne.local/ledger"), "{out}");
        // And --json gives the claims and header back
        let (code, out, _) = s.verify_db(&token, &["--json", "--origin", "vidne.local/ledger"]);
        assert_eq!(code, 0, "{out}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (v["ok"].as_bool(), v["result"].as_str()),
            (Some(true), Some("valid"))
        );
        assert_eq!(v["claims"], Value::Object(claims.clone()));
        assert_eq!(v["header"]["typ"], TOKEN_TYPE);
        assert_eq!(v["binding"]["checked"], true);
        // And without a ledger it is not mistaken for fully valid
        let (code, out, _) = s.verify(&token, &[]);
        assert_eq!(code, 3, "{out}");
        assert!(out.contains("binding NOT checked"), "{out}");
        let (code, out, _) = s.verify(&token, &["--json"]);
        assert_eq!(code, 3);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (v["ok"].as_bool(), v["result"].as_str()),
            (Some(false), Some("binding_not_checked"))
        );
    }
}

async fn binding_failures_name_the_seq(backend: Backend) {
    let s = Sealed::new(backend).await;
    // A record hash that is not the one at that seq (seq 2's hash named for seq 1)
    let mut wrong = s.records[..2].to_vec();
    wrong[1].1 = s.records[2].1.clone();
    let (code, out, _) = s.verify_db(&s.sign(Alg::EdDSA, &s.claims(&wrong)), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("INVALID (binding_record)") && out.contains("seq 1 has record hash"),
        "{out}"
    );
    assert!(
        out.contains(&s.records[1].1) && out.contains(&s.records[2].1),
        "{out}"
    );
    // A seq the ledger does not have
    let missing = vec![s.records[0].clone(), (99, s.records[1].1.clone())];
    let (code, out, _) = s.verify_db(&s.sign(Alg::ES256, &s.claims(&missing)), &["--json"]);
    assert_eq!(code, 1, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["check"], "binding_record");
    assert_eq!(v["reason"], "ledger binding: seq 99 is not in the ledger");
    // Another origin than expected
    let token = s.sign(Alg::EdDSA, &s.claims(&s.records[..1]));
    let (code, out, _) = s.verify_db(&token, &["--origin", "vidne.example/prod"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("vidne.example/prod"), "{out}");
    // A ledger that cannot be read is exit 2, not a verdict
    let (code, _, err) = s.verify(
        &token,
        &["--database", "sqlite:///nonexistent/dir/vidne.db"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no database at"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_headers_and_tampering_are_named() {
    let s = Sealed::new(Backend::Sqlite).await;
    let claims = s.claims(&s.records[..1]);
    let token = s.sign(Alg::EdDSA, &claims);
    let parts: Vec<&str> = token.split('.').collect();
    let h = header(&token);
    let kid = h["kid"].as_str().unwrap();

    // alg none, unsigned
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": TOKEN_TYPE, "kid": kid})),
        parts[1]
    );
    // HS256 keyed with the public key, the classic confusion attack
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.typ = Some(TOKEN_TYPE.into());
    hs.kid = Some(kid.into());
    let x = s.keys.get(kid).unwrap().public_jwk()["x"]
        .as_str()
        .unwrap()
        .to_owned();
    let hs256 = jsonwebtoken::encode(
        &hs,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(x.as_bytes()),
    )
    .unwrap();
    // typ JWT, signed properly (by hand, as the signer always writes its own typ)
    let key = s.keys.signer(Alg::EdDSA, chrono::Utc::now()).unwrap();
    let pem =
        std::fs::read_to_string(s.tmp.path().join("keys").join(format!("{kid}.pem"))).unwrap();
    let mut jwt = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    jwt.kid = Some(key.kid().into());
    let typ_jwt = jsonwebtoken::encode(
        &jwt,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap();
    // A kid the JWKS does not have
    let mut unknown = h.clone();
    unknown["kid"] = "not-a-published-key".into();
    let unknown_kid = format!("{}.{}.{}", b64(&unknown), parts[1], parts[2]);
    // One signature byte changed
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[31] ^= 0x80;
    let bad_sig = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&sig));
    // Another audience under the original signature
    let mut evil = claims.clone();
    evil["aud"] = "sp-evil".into();
    let bad_payload = format!("{}.{}.{}", parts[0], b64(&Value::Object(evil)), parts[2]);

    for (name, token, check, message) in [
        ("alg none", none, "alg", "JWS alg \"none\" is not allowed"),
        ("HS256", hs256, "alg", "JWS alg \"HS256\" is not allowed"),
        (
            "typ JWT",
            typ_jwt,
            "typ",
            "JWS typ is \"JWT\", not \"vidne-transaction-token+jwt\"",
        ),
        (
            "unknown kid",
            unknown_kid,
            "kid",
            "kid \"not-a-published-key\" is not in the JWKS",
        ),
        (
            "tampered signature",
            bad_sig,
            "signature",
            "signature does not verify with JWKS key",
        ),
        (
            "tampered payload",
            bad_payload,
            "signature",
            "signature does not verify with JWKS key",
        ),
    ] {
        let (code, out, err) = s.verify_db(&token, &[]);
        assert_eq!(code, 1, "{name}: {out}{err}");
        assert!(
            out.contains(&format!("INVALID ({check})")) && out.contains(message),
            "{name}: {out}"
        );
        let (_, out, _) = s.verify_db(&token, &["--json"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (v["ok"].as_bool(), v["check"].as_str()),
            (Some(false), Some(check)),
            "{name}"
        );
    }
    // Unreadable inputs are exit 2
    let (code, _, err) = vidne(&[
        "token",
        "verify",
        "/nonexistent/token",
        "--jwks",
        s.jwks.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read the token"), "{err}");
    let file = write(s.tmp.path(), "t.jwt", &token);
    let (code, _, err) = vidne(&[
        "token",
        "verify",
        file.to_str().unwrap(),
        "--jwks",
        "/nonexistent/jwks.json",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/jwks.json"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_tokens_decrypt_with_the_right_key_only() {
    let s = Sealed::new(Backend::Sqlite).await;
    let jws = s.sign(Alg::EdDSA, &s.claims(&s.records));
    let rsa = RSA_OAEP_256.generate_key_pair(2048).unwrap();
    let rsa_other = RSA_OAEP_256.generate_key_pair(2048).unwrap();
    let ec = ECDH_ES_A256KW.generate_ec_key_pair(EcCurve::P256).unwrap();
    let ec_other = ECDH_ES_A256KW.generate_ec_key_pair(EcCurve::P256).unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    let dir = s.tmp.path();
    let rsa_key = write(dir, "rsa.pem", &text(rsa.to_pem_private_key()));
    let rsa_wrong = write(dir, "rsa-other.pem", &text(rsa_other.to_pem_private_key()));
    let ec_key = write(dir, "ec.pem", &text(ec.to_pem_private_key()));
    let ec_wrong = write(dir, "ec-other.pem", &text(ec_other.to_pem_private_key()));

    let to_rsa = token::encrypt(
        &jws,
        &RecipientKey::from_pem(&text(rsa.to_pem_public_key())).unwrap(),
    )
    .unwrap();
    let mut ec_jwk = Value::Object(ec.to_jwk_public_key().into());
    ec_jwk["kid"] = "sp-acme-enc-1".into();
    let to_ec = token::encrypt(&jws, &RecipientKey::from_jwk(&ec_jwk).unwrap()).unwrap();
    assert_eq!(header(&to_ec)["kid"], "sp-acme-enc-1");

    for (jwe, right, wrong, alg) in [
        (&to_rsa, &rsa_key, &rsa_wrong, "RSA-OAEP-256"),
        (&to_ec, &ec_key, &ec_wrong, "ECDH-ES+A256KW"),
    ] {
        let (code, out, err) = s.verify_db(jwe, &["--decrypt-key", right.to_str().unwrap()]);
        assert_eq!(code, 0, "{alg}: {out}{err}");
        assert!(
            out.contains(&format!("encrypted with {alg}/A256GCM")),
            "{out}"
        );
        let (code, out, _) =
            s.verify_db(jwe, &["--decrypt-key", right.to_str().unwrap(), "--json"]);
        assert_eq!(code, 0);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (v["encrypted"].as_bool(), v["jwe_header"]["cty"].as_str()),
            (Some(true), Some("JWT"))
        );
        assert_eq!(v["claims"], Value::Object(s.claims(&s.records)));
        let (code, out, _) = s.verify_db(jwe, &["--decrypt-key", wrong.to_str().unwrap()]);
        assert_eq!(code, 1, "{alg}: {out}");
        assert!(
            out.contains("INVALID (decrypt): cannot decrypt the token with the given key"),
            "{out}"
        );
        // Without a key: an input is missing, the token is not judged
        let (code, _, err) = s.verify_db(jwe, &[]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("no decrypt key was given: give --decrypt-key"),
            "{err}"
        );
    }
    // The key of the other type says which type the token needs
    let (code, out, _) = s.verify_db(&to_ec, &["--decrypt-key", rsa_key.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        out.contains("needs an EC P-256 private key, but the decrypt key is an RSA"),
        "{out}"
    );
    let (_, out, _) = s.verify_db(&to_rsa, &["--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["result"], "error");
    assert_eq!(
        v["error"],
        "token is encrypted (a JWE) and no decrypt key was given: give --decrypt-key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_is_checked_over_http() {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    use vidne::ledger::Reader;

    // A stand-in for the service's routes: the JWKS, and each record's canonical bytes
    // behind a bearer key.
    let s = Sealed::new(Backend::Sqlite).await;
    let reader = web::Data::new(Reader::new(s.db.pool(2).await));
    let jwks = web::Data::new(s.keys.jwks());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(reader.clone())
            .app_data(jwks.clone())
            .route(
                "/.well-known/jwks.json",
                web::get()
                    .to(|j: web::Data<Value>| async move { HttpResponse::Ok().json(j.get_ref()) }),
            )
            .route(
                "/v1/log/records/{seq}",
                web::get().to(
                    |req: HttpRequest, seq: web::Path<u64>, r: web::Data<Reader>| async move {
                        if req
                            .headers()
                            .get("authorization")
                            .and_then(|h| h.to_str().ok())
                            != Some("Bearer auditor-key")
                        {
                            return HttpResponse::Unauthorized().finish();
                        }
                        match r.get(*seq).await.unwrap() {
                            Some(row) => HttpResponse::Ok()
                                .content_type("application/json")
                                .body(row.canonical),
                            None => HttpResponse::NotFound().finish(),
                        }
                    },
                ),
            )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let url = format!("http://127.0.0.1:{}", server.addrs()[0].port());
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);

    let token = s.sign(Alg::ES256, &s.claims(&s.records));
    let file = write(s.tmp.path(), "http.jwt", &token);
    let run = |extra: &[&str]| {
        let mut args = vec![
            "token",
            "verify",
            file.to_str().unwrap(),
            "--url",
            url.as_str(),
        ];
        args.extend_from_slice(extra);
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        async move {
            tokio::task::spawn_blocking(move || {
                let a: Vec<&str> = args.iter().map(String::as_str).collect();
                vidne(&a)
            })
            .await
            .unwrap()
        }
    };
    let (code, out, err) = run(&["--key", "auditor-key"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("found in {url}")), "{out}");
    // A seq the service does not have
    let missing = s.sign(Alg::ES256, &s.claims(&[(7, s.records[0].1.clone())]));
    std::fs::write(&file, &missing).unwrap();
    let (code, out, _) = run(&["--key", "auditor-key"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("seq 7 is not in the ledger"), "{out}");
    // A refused key is exit 2: the binding could not be checked, the token is not judged
    std::fs::write(&file, &token).unwrap();
    let (code, _, err) = run(&["--key", "wrong"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("HTTP 401"), "{err}");
    // No key: the JWKS still comes from the URL, the binding is not checked
    let (code, out, _) = run(&[]).await;
    assert_eq!(code, 3, "{out}");
    handle.stop(true).await;
    // The service gone: exit 2
    let (code, _, err) = run(&["--key", "auditor-key"]).await;
    assert_eq!(code, 2, "{err}");
}

#[test]
fn signing_keys_rotate_and_list_from_the_command_line() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("signing");
    let d = dir.to_str().unwrap();
    // The first rotation of an alg signs at once; later ones after the lead
    let (code, out, err) = vidne(&[
        "--log",
        "debug",
        "keys",
        "rotate-signing",
        "--keys",
        d,
        "--alg",
        "ES256",
    ]);
    assert_eq!(code, 0, "{err}");
    let field = |out: &str, name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {out}"))
            .to_owned()
    };
    let first = field(&out, "kid");
    assert_eq!(field(&out, "alg"), "ES256");
    let (code, out, err2) = vidne(&[
        "keys",
        "rotate-signing",
        "--keys",
        d,
        "--alg",
        "ES256",
        "--publish-lead",
        "48h",
    ]);
    assert_eq!(code, 0, "{err2}");
    let second = field(&out, "kid");
    assert!(out.contains(&format!("retires {first} ")), "{out}");
    // Never key material, on stdout or in the logs
    let pem = std::fs::read_to_string(dir.join(format!("{first}.pem"))).unwrap();
    let body = pem.lines().nth(1).unwrap();
    assert!(!out.contains(body) && !err.contains(body) && !err2.contains(body));
    assert!(!out.contains("PRIVATE") && !err.contains("PRIVATE"));
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    // Listed with their states
    let (code, out, _) = vidne(&["keys", "list-signing", "--keys", d, "--json"]);
    assert_eq!(code, 0);
    let list: Vec<Value> = serde_json::from_str(&out).unwrap();
    let state = |kid: &str| list.iter().find(|k| k["kid"] == kid).unwrap()["state"].clone();
    assert_eq!(
        (state(&first), state(&second)),
        ("active".into(), "pending".into())
    );
    let (code, out, _) = vidne(&["keys", "list-signing", "--keys", d]);
    assert_eq!(code, 0);
    assert!(out.contains(&second) && out.contains("pending"), "{out}");
    // A key file others can read is refused, saying how to fix it
    let pem_path = dir.join(format!("{second}.pem"));
    std::fs::set_permissions(&pem_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = vidne(&["keys", "list-signing", "--keys", d]);
    assert_eq!(code, 2);
    assert!(err.contains("chmod 600"), "{err}");
    // Bad arguments are named
    let (code, _, err) = vidne(&["keys", "rotate-signing", "--keys", d, "--alg", "RS256"]);
    assert_eq!(code, 2);
    assert!(err.contains("RS256"), "{err}");
    let (code, _, err) = vidne(&[
        "keys",
        "rotate-signing",
        "--keys",
        d,
        "--publish-lead",
        "soon",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("soon"), "{err}");
}
