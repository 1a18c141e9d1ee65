//! Interoperability: tokens sealed here are verified and decrypted by an independent JOSE
//! implementation (`tests/interop/jose_check.py`, Python with only the `cryptography`
//! package), and tokens it signs are accepted by Vidne's verifier. Without python3 and
//! `cryptography` these tests fail: they never skip.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use josekit::jwe::{ECDH_ES_A256KW, RSA_OAEP_256};
use josekit::jwk::alg::ec::EcCurve;
use serde_json::{Map, Value};
use vidne::token::{self, Alg, RecipientKey, SigningKeys, TOKEN_TYPE};

use crate::token::{claims, write};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/jose_check.py")
}

/// Runs the Python checker with `args`, `input` on stdin: (exit code, stdout, stderr).
pub fn python(args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = Command::new("python3")
        .arg(script())
        .args(args)
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
