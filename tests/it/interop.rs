//! Interoperability: tokens sealed here are verified and decrypted by an independent JOSE
//! implementation (`tests/interop/jose_check.py`, Python with only the `cryptography`
//! package), and tokens it signs are accepted by Vidne's verifier. The verifiable log,
//! served by a running service, is mirrored and checked by an independent C2SP
//! tlog-tiles client (`tests/interop/tlog_check.py`, written from the C2SP specs and
//! RFC 6962 alone). Without python3 and `cryptography` these tests fail: they never skip.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use josekit::jwe::{ECDH_ES_A256KW, RSA_OAEP_256};
use josekit::jwk::alg::ec::EcCurve;
use serde_json::{Map, Value};
use vidne::token::{self, Alg, RecipientKey, SigningKeys, TOKEN_TYPE};

use crate::api::cli_key;
use crate::both_backends;
use crate::helpers::{append_more, fill, spawn_app, Backend, TestDb, TEST_ORIGIN};
use crate::token::{claims, write};

both_backends!(python_mirrors_and_checks_the_tlog);

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

/// Runs the Python JOSE checker with `args`, `input` on stdin: (exit code, stdout,
/// stderr).
pub fn python(args: &[&str], input: &str) -> (i32, String, String) {
    run_python("jose_check.py", args, &[], input)
}

/// Runs `tests/interop/<name>` with `args` and `env`, `input` on stdin.
fn run_python(
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
    input: &str,
) -> (i32, String, String) {
    let mut child = Command::new("python3")
        .arg(script(name))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("the interoperability tests need python3 with the `cryptography` package: {e}")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "the interoperability tests need the Python `cryptography` package \
         (python3 -c 'import cryptography'): {stderr}"
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

#[test]
fn python_has_cryptography() {
    let out = Command::new("python3")
        .args(["-c", "import cryptography; print(cryptography.__version__)"])
        .output()
        .expect("the interoperability tests need python3");
    assert!(
        out.status.success(),
        "the interoperability tests need the Python `cryptography` package: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Keys {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    keys: SigningKeys,
    jwks: PathBuf,
}

fn keys() -> Keys {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let keys = SigningKeys::ensure(&dir, chrono::Utc::now()).unwrap();
    let jwks = write(tmp.path(), "jwks.json", &keys.jwks().to_string());
    Keys {
        dir: tmp.path().to_path_buf(),
        _tmp: tmp,
        keys,
        jwks,
    }
}

fn sample_claims() -> Map<String, Value> {
    claims(&[(4, "1f".repeat(32)), (9, "e0".repeat(32))])
}

#[test]
fn python_verifies_our_signed_tokens() {
    let k = keys();
    for alg in Alg::ALL {
        let key = k.keys.signer(alg, chrono::Utc::now()).unwrap();
        let jws = token::sign(&sample_claims(), key).unwrap();
        // When the independent implementation verifies it
        let (code, out, err) = python(&["verify", "--jwks", k.jwks.to_str().unwrap()], &jws);
        // Then it accepts it and reads the same claims and header
        assert_eq!(code, 0, "{alg}: {err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["claims"], Value::Object(sample_claims()), "{alg}");
        assert_eq!(v["header"]["typ"], TOKEN_TYPE);
        assert_eq!(v["header"]["kid"], key.kid());
        assert_eq!(v["header"]["alg"], alg.as_str());
        // And it refuses the token with one payload byte changed
        let mut parts: Vec<String> = jws.split('.').map(str::to_owned).collect();
        let mut claims = sample_claims();
        claims["aud"] = "sp-evil".into();
        parts[1] = base64_url(&serde_json::to_vec(&claims).unwrap());
        let (code, _, err) = python(
            &["verify", "--jwks", k.jwks.to_str().unwrap()],
            &parts.join("."),
        );
        assert_eq!(code, 1, "{alg}: a tampered token was accepted");
        assert!(err.contains("signature does not verify"), "{err}");
    }
}

fn base64_url(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[test]
fn python_decrypts_our_encrypted_tokens() {
    let k = keys();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    let rsa = RSA_OAEP_256.generate_key_pair(2048).unwrap();
    let ec = ECDH_ES_A256KW.generate_ec_key_pair(EcCurve::P256).unwrap();
    let rsa_pem = write(&k.dir, "rsa.pem", &text(rsa.to_pem_private_key()));
    let ec_pem = write(&k.dir, "ec.pem", &text(ec.to_pem_private_key()));
    let rsa_to = RecipientKey::from_pem(&text(rsa.to_pem_public_key())).unwrap();
    let ec_to = RecipientKey::from_pem(&text(ec.to_pem_public_key())).unwrap();
    for alg in Alg::ALL {
        let jws = token::sign(
            &sample_claims(),
            k.keys.signer(alg, chrono::Utc::now()).unwrap(),
        )
        .unwrap();
        for (to, pem, other, jwe_alg) in [
            (&rsa_to, &rsa_pem, &ec_pem, "RSA-OAEP-256"),
            (&ec_to, &ec_pem, &rsa_pem, "ECDH-ES+A256KW"),
        ] {
            let jwe = token::encrypt(&jws, to).unwrap();
            let args = [
                "verify",
                "--jwks",
                k.jwks.to_str().unwrap(),
                "--decrypt-key",
            ];
            let (code, out, err) = python(&[&args[..], &[pem.to_str().unwrap()]].concat(), &jwe);
            assert_eq!(code, 0, "{alg} in {jwe_alg}: {err}");
            let v: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["claims"], Value::Object(sample_claims()));
            assert_eq!(v["jwe_header"]["alg"], jwe_alg);
            assert_eq!(v["jwe_header"]["enc"], "A256GCM");
            assert_eq!(v["jwe_header"]["cty"], "JWT");
            assert_eq!(v["header"]["alg"], alg.as_str());
            // The other key cannot open it
            let (code, _, err) = python(&[&args[..], &[other.to_str().unwrap()]].concat(), &jwe);
            assert_eq!(code, 1, "{jwe_alg} opened with the wrong key: {err}");
        }
    }
}

#[test]
fn our_verifier_accepts_tokens_python_signs() {
    let k = keys();
    let claims = sample_claims();
    for alg in Alg::ALL {
        let key = k.keys.signer(alg, chrono::Utc::now()).unwrap();
        let pem = k.dir.join("keys").join(format!("{}.pem", key.kid()));
        let (code, out, err) = python(
            &["sign", "--key", pem.to_str().unwrap(), "--kid", key.kid()],
            &Value::Object(claims.clone()).to_string(),
        );
        assert_eq!(code, 0, "{err}");
        let verified = token::verify(out.trim(), &k.keys.jwks(), None).unwrap();
        assert_eq!(verified.claims, claims);
        assert_eq!(verified.header["alg"], alg.as_str());
        // A Python token with another typ is refused by ours
        let (_, out, _) = python(
            &[
                "sign",
                "--key",
                pem.to_str().unwrap(),
                "--kid",
                key.kid(),
                "--typ",
                "JWT",
            ],
            &Value::Object(claims.clone()).to_string(),
        );
        let err = token::verify(out.trim(), &k.keys.jwks(), None).unwrap_err();
        assert_eq!(err.check(), "typ");
    }
}

/// Runs `tlog_check.py` on the log at `base` with the verifier key `vkey`, reading it
/// with `bearer` (passed in the environment, not the command line): (exit code, the
/// summary if it printed one, stderr).
fn tlog_check(base: &str, bearer: &str, vkey: &str, more: &[&str]) -> (i32, Value, String) {
    let args = [&["--vkey", vkey][..], more, &[base]].concat();
    let (code, out, err) = run_python("tlog_check.py", &args, &[("TLOG_BEARER", bearer)], "");
    let summary = if code == 0 {
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("summary {out:?}: {e}"))
    } else {
        Value::Null
    };
    (code, summary, err)
}

/// The (tree size, base64 root) lines of a checkpoint.
fn size_and_root(note: &str) -> (u64, String) {
    let lines: Vec<&str> = note.lines().collect();
    assert_eq!(lines[0], TEST_ORIGIN);
    (lines[1].parse().unwrap(), lines[2].to_owned())
}

/// Stores `canonical` and `hash` as record `seq`'s, as someone with write access to the
/// database could: the guard triggers are dropped.
async fn tamper(db: &TestDb, backend: Backend, seq: u64, canonical: &[u8], hash: &[u8]) {
    let (canonical, hash) = (hex::encode(canonical), hex::encode(hash));
    db.exec(&match backend {
        Backend::Postgres => format!(
            "ALTER TABLE ledger_records DISABLE TRIGGER USER; \
             UPDATE ledger_records SET canonical = decode('{canonical}', 'hex'), \
             hash = decode('{hash}', 'hex') WHERE seq = {seq}"
        ),
        Backend::Sqlite => format!(
            "DROP TRIGGER IF EXISTS ledger_records_no_update; \
             UPDATE ledger_records SET canonical = X'{canonical}', hash = X'{hash}' \
             WHERE seq = {seq}"
        ),
    })
    .await;
}

/// A log of two full level-0 tiles, a partial one and a partial level-1 tile (600
/// records), then of 900: the independent client mirrors it from the service, checks
/// every tile, entry and the signed checkpoints, and sees that it only grew. It refuses
/// another key's verifier key, checkpoints of a fork or of a larger log, and a record
/// changed in the database.
async fn python_mirrors_and_checks_the_tlog(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (base, handle) = spawn_app(&db).await;
    let http = reqwest::Client::new();
    let admin = cli_key(&db, "admin");
    let auditor = cli_key(&db, "auditor");
    let (ledger, reader) = db.ledger().await;
    fill(&ledger, 600).await;
    let cp600 = crate::log::sign_now(&http, &base, &admin).await;
    let (size, root600) = size_and_root(&cp600);
    assert_eq!(size, 600);
    let vkey = http
        .get(format!("{base}/v1/log/key"))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let vkey = vkey.trim();

    // When the independent client mirrors and checks the log of 600 records
    let (code, summary, err) = tlog_check(&base, &auditor, vkey, &[]);
    // Then every check holds, on tiles 0/000, 0/001, 0/002.p/88 and 1/000.p/2
    assert_eq!(code, 0, "{err}");
    assert_eq!(summary["ok"], true);
    assert_eq!(summary["origin"], TEST_ORIGIN);
    assert_eq!(summary["tree_size"], 600);
    assert_eq!(summary["root"], root600.as_str());
    assert_eq!(summary["tiles"], 4);
    assert_eq!(summary["bundles"], 3);
    assert_eq!(summary["entries"], 600);

    // When the log grows to 900 and the client checks it against the 600 checkpoint
    append_more(&ledger, "more", 300).await;
    let cp900 = crate::log::sign_now(&http, &base, &admin).await;
    let (size, root900) = size_and_root(&cp900);
    assert_eq!(size, 900);
    let dir = db.dir.path();
    let old = write(dir, "cp600", &cp600);
    let (code, summary, err) = tlog_check(
        &base,
        &auditor,
        vkey,
        &["--old-checkpoint", old.to_str().unwrap()],
    );
    // Then the log only grew
    assert_eq!(code, 0, "{err}");
    assert_eq!(summary["tree_size"], 900);
    assert_eq!(summary["root"], root900.as_str());
    assert_eq!(summary["old_tree_size"], 600);
    assert_eq!(summary["tiles"], 5, "0/000..002, 0/003.p/132, 1/000.p/3");
    assert_eq!(summary["entries"], 900);

    // A verifier key of another key (same origin) verifies no signature
    let stranger = vidne::checkpoint::LogKey::new(
        TEST_ORIGIN,
        ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng),
    )
    .unwrap();
    let (code, _, err) = tlog_check(&base, &auditor, &stranger.verifier_key(), &[]);
    assert_eq!(code, 1, "another key's verifier key was accepted: {err}");
    assert!(err.contains("signature"), "{err}");

    // Checkpoints the log's own key signed that this log does not extend: a fork at
    // 600, and a larger tree than the log serves
    let key = vidne::checkpoint::LogKey::load_or_create(&db.checkpoint_key(), TEST_ORIGIN).unwrap();
    assert_eq!(key.verifier_key(), vkey);
    let other_root = vidne::spec::hash::Hash32([7; 32]);
    for (name, note, reason) in [
        ("fork", key.sign_checkpoint(600, &other_root), "fork"),
        ("larger", key.sign_checkpoint(901, &other_root), "shrank"),
    ] {
        let path = write(dir, name, &note);
        let (code, _, err) = tlog_check(
            &base,
            &auditor,
            vkey,
            &["--old-checkpoint", path.to_str().unwrap()],
        );
        assert_eq!(code, 1, "{name}: {err}");
        assert!(err.contains(reason), "{name}: {err}");
    }

    // A record changed in the database no longer hashes to its level-0 tile hash; with
    // its level-0 hash changed too, the level-1 tile above gives it away
    ledger.close().await;
    let row = reader.get(700).await.unwrap().unwrap();
    let text = String::from_utf8(row.canonical).unwrap();
    assert!(text.contains("mitid"), "{text}");
    let forged = text.replace("mitid", "mitiD").into_bytes();
    tamper(&db, backend, 700, &forged, &row.hash).await;
    let (code, _, err) = tlog_check(&base, &auditor, vkey, &[]);
    assert_eq!(code, 1, "a changed record was accepted: {err}");
    assert!(
        err.contains("entry 700") && err.contains("level-0"),
        "{err}"
    );
    let rehashed = vidne::spec::hash::record_hash(&forged);
    tamper(&db, backend, 700, &forged, &rehashed.0).await;
    let (code, _, err) = tlog_check(&base, &auditor, vkey, &[]);
    assert_eq!(code, 1, "a changed record and hash were accepted: {err}");
    assert!(err.contains("level 1 tile 0 hash 2"), "{err}");

    handle.stop(true).await;
}
