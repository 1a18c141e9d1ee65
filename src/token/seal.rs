//! Sealing: claims signed as a compact JWS with jsonwebtoken (header `alg`, `kid`, `typ`),
//! and, for a client registered with an encryption key, that JWS nested in a compact JWE
//! with josekit (`RSA-OAEP-256` for RSA keys, `ECDH-ES+A256KW` for P-256 keys; `enc`
//! `A256GCM`; `cty` `JWT`; the recipient key's `kid` when it has one).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use josekit::jwe::{JweHeader, ECDH_ES_A256KW, RSA_OAEP_256};
use josekit::jwk::Jwk;
use p256::pkcs8::der::pem;
use p256::pkcs8::spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};
use p256::pkcs8::DecodePublicKey;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Map, Value};

use super::keys::SigningKey;
use super::{Alg, JwksCache, TOKEN_TYPE};

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The claims cannot go into a token.
    #[error("claims: {0}")]
    Claims(String),
    #[error("cannot sign: {0}")]
    Sign(String),
    /// A client's encryption key cannot be used.
    #[error("encryption key: {0}")]
    Key(String),
    #[error("cannot encrypt: {0}")]
    Encrypt(String),
    /// A client's JWKS URL could not be fetched (and no copy was fresh enough).
    #[error("JWKS {url}: {reason}")]
    Jwks { url: String, reason: String },
}

/// Claims every token must carry (the verifier checks them independently).
const REQUIRED: [&str; 5] = ["iss", "aud", "transaction_id", "iat", "ledger"];

/// Signs `claims` with `key` as a compact JWS whose header is
/// `{"typ":"vidne-transaction-token+jwt","alg":…,"kid":…}`.
///
/// Refuses claims that lack `iss`, `aud`, `transaction_id`, `iat` or `ledger`, and any
/// member, at any depth, whose name contains `cpr`: a token never carries a CPR number.
pub fn sign(claims: &Map<String, Value>, key: &SigningKey) -> Result<String, SealError> {
    if let Some(missing) = REQUIRED.iter().find(|c| !claims.contains_key(**c)) {
        return Err(SealError::Claims(format!("{missing} is required")));
    }
    if let Some(path) = cpr_member(&Value::Object(claims.clone()), "") {
        return Err(SealError::Claims(format!(
            "{path}: a token never carries a CPR number or reference"
        )));
    }
    let mut header = jsonwebtoken::Header::new(match key.alg() {
        Alg::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        Alg::ES256 => jsonwebtoken::Algorithm::ES256,
    });
    header.typ = Some(TOKEN_TYPE.to_owned());
    header.kid = Some(key.kid().to_owned());
    jsonwebtoken::encode(&header, claims, key.encoding_key())
        .map_err(|e| SealError::Sign(format!("{} key {}: {e}", key.alg(), key.kid())))
}

fn cpr_member(v: &Value, at: &str) -> Option<String> {
    match v {
        Value::Object(m) => m.iter().find_map(|(k, v)| {
            let path = format!("{at}/{k}");
            if k.to_ascii_lowercase().contains("cpr") {
                Some(path)
            } else {
                cpr_member(v, &path)
            }
        }),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, v)| cpr_member(v, &format!("{at}/{i}"))),
        _ => None,
    }
}

/// Nests the compact JWS `jws` in a compact JWE for `to`.
pub fn encrypt(jws: &str, to: &RecipientKey) -> Result<String, SealError> {
    if jws.split('.').count() != 3 {
        return Err(SealError::Encrypt(
            "the content is not a compact JWS".into(),
        ));
    }
    let mut header = JweHeader::new();
    header.set_content_encryption("A256GCM");
    header.set_content_type("JWT");
    if let Some(kid) = &to.kid {
        header.set_key_id(kid.clone());
    }
    let jwk = Jwk::from_map(to.jwk.clone()).map_err(|e| SealError::Encrypt(e.to_string()))?;
    let out = match to.kind {
        RecipientKind::Rsa { .. } => RSA_OAEP_256
            .encrypter_from_jwk(&jwk)
            .and_then(|e| josekit::jwe::serialize_compact(jws.as_bytes(), &header, &e)),
        RecipientKind::P256 => ECDH_ES_A256KW
            .encrypter_from_jwk(&jwk)
            .and_then(|e| josekit::jwe::serialize_compact(jws.as_bytes(), &header, &e)),
    };
    out.map_err(|e| SealError::Encrypt(e.to_string()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecipientKind {
    Rsa { bits: usize },
    P256,
}

/// A client's public encryption key: RSA of at least 2048 bits, or EC on P-256.
#[derive(Clone, Debug)]
pub struct RecipientKey {
    kind: RecipientKind,
    /// Public members only (`kty`, `n`, `e` or `kty`, `crv`, `x`, `y`).
    jwk: Map<String, Value>,
    kid: Option<String>,
}

const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

fn key_err(reason: impl Into<String>) -> SealError {
    SealError::Key(reason.into())
}

fn oid_name(oid: &ObjectIdentifier) -> String {
    match oid.to_string().as_str() {
        "1.3.132.0.34" => "P-384".into(),
        "1.3.132.0.35" => "P-521".into(),
        "1.3.132.0.10" => "secp256k1".into(),
        "1.3.101.110" => "X25519".into(),
        "1.3.101.111" => "X448".into(),
        "1.3.101.112" => "Ed25519".into(),
        "1.3.101.113" => "Ed448".into(),
        "1.2.840.10040.4.1" => "DSA".into(),
        other => format!("OID {other}"),
    }
}

impl RecipientKey {
    /// `RSA-OAEP-256` or `ECDH-ES+A256KW`: the JWE `alg` tokens for this key use.
    pub fn algorithm(&self) -> &'static str {
        match self.kind {
            RecipientKind::Rsa { .. } => "RSA-OAEP-256",
            RecipientKind::P256 => "ECDH-ES+A256KW",
        }
    }

    pub fn kind(&self) -> RecipientKind {
        self.kind
    }

    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// A public key in PEM: `PUBLIC KEY` (SPKI; RSA or EC P-256) or `RSA PUBLIC KEY`
    /// (PKCS#1).
    pub fn from_pem(text: &str) -> Result<RecipientKey, SealError> {
        let (label, der) = pem::decode_vec(text.trim().as_bytes())
            .map_err(|e| key_err(format!("not a PEM document: {e}")))?;
        match label {
            "PUBLIC KEY" => {
                let spki = SubjectPublicKeyInfoRef::try_from(der.as_slice())
                    .map_err(|e| key_err(format!("PEM PUBLIC KEY is not a valid SPKI: {e}")))?;
                let oid = spki.algorithm.oid;
                if oid == OID_RSA {
                    let key = rsa::RsaPublicKey::from_public_key_der(&der)
                        .map_err(|e| key_err(format!("invalid RSA public key: {e}")))?;
                    RecipientKey::rsa(&key, None)
                } else if oid == OID_EC {
                    let curve = spki
                        .algorithm
                        .parameters_oid()
                        .map_err(|_| key_err("EC public key names no named curve"))?;
                    if curve != OID_P256 {
                        return Err(key_err(format!(
                            "EC keys on {} are not supported: use P-256 or RSA",
                            oid_name(&curve)
                        )));
                    }
                    let key = p256::PublicKey::from_public_key_der(&der)
                        .map_err(|e| key_err(format!("invalid P-256 public key: {e}")))?;
                    RecipientKey::p256(&key, None)
                } else {
                    Err(key_err(format!(
                        "{} keys cannot be used to encrypt tokens: use RSA (2048 bits or \
                         more) or EC P-256",
                        oid_name(&oid)
                    )))
                }
            }
            "RSA PUBLIC KEY" => {
                let key = rsa::RsaPublicKey::from_pkcs1_der(&der)
                    .map_err(|e| key_err(format!("invalid RSA public key: {e}")))?;
                RecipientKey::rsa(&key, None)
            }
            "CERTIFICATE" => Err(key_err(
                "an X.509 certificate: register its public key (PEM PUBLIC KEY) or a JWK",
            )),
            l if l.contains("PRIVATE KEY") => Err(key_err(format!(
                "PEM {l} is a private key: register only the public key"
            ))),
            l => Err(key_err(format!(
                "PEM {l} is not a public key (expected PUBLIC KEY or RSA PUBLIC KEY)"
            ))),
        }
    }

    /// A public JWK: `kty` `RSA` (at least 2048 bits) or `EC` with `crv` `P-256`. A `use`
    /// other than `enc`, an `alg` other than the one this service would use, and private
    /// members are refused.
    pub fn from_jwk(jwk: &Value) -> Result<RecipientKey, SealError> {
        let obj = jwk
            .as_object()
            .ok_or_else(|| key_err("a JWK must be a JSON object"))?;
        let kid = match obj.get("kid") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(key_err("JWK kid must be a string")),
        };
        let named = |reason: String| match &kid {
            Some(k) => key_err(format!("JWK {k:?}: {reason}")),
            None => key_err(format!("JWK: {reason}")),
        };
        let kty = obj
            .get("kty")
            .and_then(Value::as_str)
            .ok_or_else(|| named("kty is required".into()))?;
        if let Some(private) = ["d", "p", "q", "dp", "dq", "qi", "k"]
            .iter()
            .find(|m| obj.contains_key(**m))
        {
            return Err(named(format!(
                "holds private member {private:?}: register only the public key"
            )));
        }
        match obj.get("use") {
            None => {}
            Some(Value::String(u)) if u == "enc" => {}
            Some(u) => return Err(named(format!("use is {u}, not \"enc\""))),
        }
        let bytes = |m: &str| -> Result<Vec<u8>, SealError> {
            let s = obj
                .get(m)
                .and_then(Value::as_str)
                .ok_or_else(|| named(format!("{m} is required")))?;
            URL_SAFE_NO_PAD
                .decode(s)
                .map_err(|_| named(format!("{m} is not base64url without padding")))
        };
        let key = match kty {
            "RSA" => {
                let n = rsa::BigUint::from_bytes_be(&bytes("n")?);
                let e = rsa::BigUint::from_bytes_be(&bytes("e")?);
                let key = rsa::RsaPublicKey::new(n, e)
                    .map_err(|e| named(format!("invalid RSA public key: {e}")))?;
                RecipientKey::rsa(&key, kid.clone())?
            }
            "EC" => {
                let crv = obj.get("crv").and_then(Value::as_str).unwrap_or("(none)");
                if crv != "P-256" {
                    return Err(named(format!(
                        "EC keys on {crv} are not supported: use P-256 or RSA"
                    )));
                }
                let (x, y) = (bytes("x")?, bytes("y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(named("P-256 x and y must be 32 bytes each".into()));
                }
                let mut sec1 = vec![4u8];
                sec1.extend_from_slice(&x);
                sec1.extend_from_slice(&y);
                let key = p256::PublicKey::from_sec1_bytes(&sec1)
                    .map_err(|_| named("x, y is not a point on P-256".into()))?;
                RecipientKey::p256(&key, kid.clone())?
            }
            other => {
                return Err(named(format!(
                    "kty {other} cannot be used to encrypt tokens: use RSA (2048 bits or \
                     more) or EC P-256"
                )))
            }
        };
        match obj.get("alg").map(|a| a.as_str()) {
            None => Ok(key),
            Some(Some(a)) if a == key.algorithm() => Ok(key),
            Some(a) => Err(named(format!(
                "alg is {}, but this service encrypts to {kty} keys with {}",
                a.unwrap_or("not a string"),
                key.algorithm()
            ))),
        }
    }

    /// The one key of `jwks` (`{"keys": [...]}`) meant for encryption: `use` `enc` or no
    /// `use`, of a supported type. None, or more than one, is an error.
    pub fn from_jwks(jwks: &Value) -> Result<RecipientKey, SealError> {
        let keys = jwks
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| key_err("a JWKS must be an object with a \"keys\" array"))?;
        let mut usable = Vec::new();
        let mut skipped = Vec::new();
        for k in keys {
            if k.get("use").is_some_and(|u| u != "enc") {
                continue;
            }
            match RecipientKey::from_jwk(k) {
                Ok(key) => usable.push(key),
                Err(e) => skipped.push(e.to_string()),
            }
        }
        match usable.len() {
            1 => Ok(usable.remove(0)),
            0 if skipped.is_empty() => {
                Err(key_err("the JWKS has no key with use \"enc\" (or no use)"))
            }
            0 => Err(key_err(format!(
                "the JWKS has no usable encryption key ({})",
                skipped.join("; ")
            ))),
            n => Err(key_err(format!(
                "the JWKS has {n} encryption keys ({}): it must have exactly one",
                usable
                    .iter()
                    .map(|k| k.kid.as_deref().unwrap_or("no kid"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    fn rsa(key: &rsa::RsaPublicKey, kid: Option<String>) -> Result<RecipientKey, SealError> {
        let bits = key.n().bits();
        if bits < 2048 {
            return Err(key_err(format!(
                "RSA key of {bits} bits: at least 2048 bits are required"
            )));
        }
        let b64 = |n: &rsa::BigUint| Value::String(URL_SAFE_NO_PAD.encode(n.to_bytes_be()));
        let jwk = Map::from_iter([
            ("kty".to_owned(), Value::from("RSA")),
            ("n".to_owned(), b64(key.n())),
            ("e".to_owned(), b64(key.e())),
        ]);
        Ok(RecipientKey {
            kind: RecipientKind::Rsa { bits },
            jwk,
            kid,
        })
    }

    fn p256(key: &p256::PublicKey, kid: Option<String>) -> Result<RecipientKey, SealError> {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let point = key.to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err(key_err("P-256 key is the identity point"));
        };
        let jwk = Map::from_iter([
            ("kty".to_owned(), Value::from("EC")),
            ("crv".to_owned(), Value::from("P-256")),
            ("x".to_owned(), URL_SAFE_NO_PAD.encode(x).into()),
            ("y".to_owned(), URL_SAFE_NO_PAD.encode(y).into()),
        ]);
        Ok(RecipientKey {
            kind: RecipientKind::P256,
            jwk,
            kid,
        })
    }
}

/// Where a client's encryption key comes from, as its registration gives it.
#[derive(Clone, Debug)]
pub enum EncryptionKeySource {
    /// A key given inline (PEM, JWK, or a JWKS document).
    Key(RecipientKey),
    /// A JWKS URL that the service fetches (through `JwksCache`).
    JwksUrl(String),
}

impl EncryptionKeySource {
    /// The key to encrypt to now, fetching a JWKS URL through `cache`.
    pub async fn resolve(&self, cache: &JwksCache) -> Result<RecipientKey, SealError> {
        match self {
            EncryptionKeySource::Key(k) => Ok(k.clone()),
            EncryptionKeySource::JwksUrl(url) => cache.recipient(url).await,
        }
    }
}

/// Classifies a client registration's encryption key: PEM (`-----BEGIN`), JSON (a JWK, or
/// a JWKS with `keys`), or an `https://` / `http://` JWKS URL. Inline keys are parsed and
/// checked now; a URL only for its form.
pub fn parse_encryption_key(s: &str) -> Result<EncryptionKeySource, SealError> {
    let s = s.trim();
    if s.starts_with("-----BEGIN") {
        return RecipientKey::from_pem(s).map(EncryptionKeySource::Key);
    }
    if s.starts_with('{') {
        let v: Value =
            serde_json::from_str(s).map_err(|e| key_err(format!("not valid JSON: {e}")))?;
        let key = if v.get("keys").is_some() {
            RecipientKey::from_jwks(&v)?
        } else {
            RecipientKey::from_jwk(&v)?
        };
        return Ok(EncryptionKeySource::Key(key));
    }
    if s.starts_with("https://") || s.starts_with("http://") {
        let url = reqwest::Url::parse(s).map_err(|e| key_err(format!("JWKS URL: {e}")))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(key_err("JWKS URL names no host"));
        }
        return Ok(EncryptionKeySource::JwksUrl(url.to_string()));
    }
    Err(key_err(
        "expected a PEM public key, a JWK or JWKS (JSON), or an https:// JWKS URL",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::keys::SigningKeys;
    use josekit::jwk::alg::ec::EcCurve;
    use serde_json::json;

    fn claims() -> Map<String, Value> {
        json!({
            "iss": "https://broker.example", "sub": "u-1", "aud": "sp-acme",
            "iat": 1_795_253_400, "transaction_id": "tx-1",
            "transaction_actions": "login",
            "ledger": {"origin": "vidne.local/ledger",
                       "records": [{"seq": 0, "hash": "ab".repeat(32)}]}
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn keys() -> (tempfile::TempDir, SigningKeys) {
        let tmp = tempfile::tempdir().unwrap();
        let keys = SigningKeys::ensure(&tmp.path().join("k"), chrono::Utc::now()).unwrap();
        (tmp, keys)
    }

    fn part(token: &str, i: usize) -> Value {
        let b = URL_SAFE_NO_PAD
            .decode(token.split('.').nth(i).unwrap())
            .unwrap();
        serde_json::from_slice(&b).unwrap()
    }

    #[test]
    fn signed_header_has_alg_kid_and_explicit_typ_and_verifies() {
        let (_tmp, keys) = keys();
        for alg in Alg::ALL {
            let key = keys.signer(alg, chrono::Utc::now()).unwrap();
            let jws = sign(&claims(), key).unwrap();
            let header = part(&jws, 0);
            assert_eq!(header["alg"], alg.as_str());
            assert_eq!(header["kid"], key.kid());
            assert_eq!(header["typ"], TOKEN_TYPE);
            assert_eq!(part(&jws, 1), Value::Object(claims()));
            // The signature checks with the published key (through josekit).
            let jwk = Jwk::from_map(key.public_jwk().as_object().unwrap().clone()).unwrap();
            let res = match alg {
                Alg::EdDSA => josekit::jws::EdDSA
                    .verifier_from_jwk(&jwk)
                    .and_then(|v| josekit::jws::deserialize_compact(&jws, &v)),
                Alg::ES256 => josekit::jws::ES256
                    .verifier_from_jwk(&jwk)
                    .and_then(|v| josekit::jws::deserialize_compact(&jws, &v)),
            };
            assert_eq!(res.unwrap().0, serde_json::to_vec(&claims()).unwrap());
        }
    }

    #[test]
    fn sign_refuses_missing_claims_and_cpr() {
        let (_tmp, keys) = keys();
        let key = keys.signer(Alg::EdDSA, chrono::Utc::now()).unwrap();
        let mut c = claims();
        c.remove("ledger");
        assert!(sign(&c, key)
            .unwrap_err()
            .to_string()
            .contains("ledger is required"));
        let mut c = claims();
        c.insert("mitid".into(), json!({"uuid": "u", "CPR": "0101701234"}));
        let err = sign(&c, key).unwrap_err().to_string();
        assert!(err.contains("/mitid/CPR"), "{err}");
    }

    #[test]
    fn encrypts_to_rsa_and_p256_with_the_right_header() {
        let rsa = RSA_OAEP_256.generate_key_pair(2048).unwrap();
        let ec = ECDH_ES_A256KW.generate_ec_key_pair(EcCurve::P256).unwrap();
        let cases = [
            (
                RecipientKey::from_pem(std::str::from_utf8(&rsa.to_pem_public_key()).unwrap())
                    .unwrap(),
                "RSA-OAEP-256",
            ),
            (
                RecipientKey::from_pem(std::str::from_utf8(&ec.to_pem_public_key()).unwrap())
                    .unwrap(),
                "ECDH-ES+A256KW",
            ),
        ];
        let (_tmp, keys) = keys();
        let jws = sign(
            &claims(),
            keys.signer(Alg::EdDSA, chrono::Utc::now()).unwrap(),
        )
        .unwrap();
        for (i, (to, alg)) in cases.iter().enumerate() {
            let jwe = encrypt(&jws, to).unwrap();
            assert_eq!(jwe.split('.').count(), 5);
            let header = part(&jwe, 0);
            assert_eq!(
                (
                    header["alg"].as_str(),
                    header["enc"].as_str(),
                    header["cty"].as_str()
                ),
                (Some(*alg), Some("A256GCM"), Some("JWT"))
            );
            assert!(header.get("kid").is_none(), "a PEM key has no kid");
            let (plain, _) = if i == 0 {
                let d = RSA_OAEP_256
                    .decrypter_from_pem(rsa.to_pem_private_key())
                    .unwrap();
                josekit::jwe::deserialize_compact(&jwe, &d).unwrap()
            } else {
                let d = ECDH_ES_A256KW
                    .decrypter_from_pem(ec.to_pem_private_key())
                    .unwrap();
                josekit::jwe::deserialize_compact(&jwe, &d).unwrap()
            };
            assert_eq!(plain, jws.as_bytes());
        }
    }

    #[test]
    fn a_jwk_kid_goes_into_the_jwe_header() {
        let ec = ECDH_ES_A256KW.generate_ec_key_pair(EcCurve::P256).unwrap();
        let mut jwk: Value = Value::Object(ec.to_jwk_public_key().into());
        jwk["kid"] = "client-enc-1".into();
        jwk["use"] = "enc".into();
        let to = RecipientKey::from_jwk(&jwk).unwrap();
        let jwe = encrypt("a.b.c", &to).unwrap();
        assert_eq!(part(&jwe, 0)["kid"], "client-enc-1");
        assert!(encrypt("not-a-jws", &to).is_err());
    }

    #[test]
    fn refuses_weak_and_unsupported_keys_by_name() {
        // josekit will not even make a 1024-bit key: RustCrypto's rsa does
        use rsa::pkcs8::EncodePublicKey;
        let small = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 1024)
            .unwrap()
            .to_public_key();
        let pem = small
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap();
        let err = RecipientKey::from_pem(&pem).unwrap_err().to_string();
        assert!(err.contains("1024 bits") && err.contains("2048"), "{err}");
        let jwk = json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(small.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(small.e().to_bytes_be())});
        assert!(RecipientKey::from_jwk(&jwk)
            .unwrap_err()
            .to_string()
            .contains("1024 bits"));

        let p384 = ECDH_ES_A256KW.generate_ec_key_pair(EcCurve::P384).unwrap();
        let err = RecipientKey::from_pem(std::str::from_utf8(&p384.to_pem_public_key()).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("P-384"), "{err}");
        let jwk: Value = Value::Object(p384.to_jwk_public_key().into());
        assert!(RecipientKey::from_jwk(&jwk)
            .unwrap_err()
            .to_string()
            .contains("P-384"));

        let ed = josekit::jws::EdDSA
            .generate_key_pair(josekit::jwk::alg::ed::EdCurve::Ed25519)
            .unwrap();
        let err = RecipientKey::from_pem(std::str::from_utf8(&ed.to_pem_public_key()).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("Ed25519"), "{err}");
        let mut jwk: Value = Value::Object(ed.to_jwk_public_key().into());
        let err = RecipientKey::from_jwk(&jwk).unwrap_err().to_string();
        assert!(err.contains("use is \"sig\""), "{err}");
        jwk.as_object_mut()
            .unwrap()
            .retain(|k, _| k != "use" && k != "alg");
        let err = RecipientKey::from_jwk(&jwk).unwrap_err().to_string();
        assert!(err.contains("kty OKP"), "{jwk}: {err}");

        let rsa = RSA_OAEP_256.generate_key_pair(2048).unwrap();
        let err = RecipientKey::from_pem(std::str::from_utf8(&rsa.to_pem_private_key()).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("private key"), "{err}");
        let jwk: Value = Value::Object(rsa.to_jwk_private_key().into());
        assert!(RecipientKey::from_jwk(&jwk)
            .unwrap_err()
            .to_string()
            .contains("private member"));
        let mut jwk: Value = Value::Object(rsa.to_jwk_public_key().into());
        jwk["use"] = "sig".into();
        assert!(RecipientKey::from_jwk(&jwk)
            .unwrap_err()
            .to_string()
            .contains("not \"enc\""));
        jwk["use"] = "enc".into();
        jwk["alg"] = "RSA-OAEP".into();
        assert!(RecipientKey::from_jwk(&jwk)
            .unwrap_err()
            .to_string()
            .contains("RSA-OAEP-256"));
        // PKCS#1 RSA PUBLIC KEY is accepted
        let pkcs1 = rsa.to_traditional_pem_public_key();
        let k = RecipientKey::from_pem(std::str::from_utf8(&pkcs1).unwrap()).unwrap();
        assert_eq!(k.kind(), RecipientKind::Rsa { bits: 2048 });
    }

    #[test]
    fn jwks_picks_the_one_encryption_key() {
        let rsa = RSA_OAEP_256.generate_key_pair(2048).unwrap();
        let ec = ECDH_ES_A256KW.generate_ec_key_pair(EcCurve::P256).unwrap();
        let with = |kp: Map<String, Value>, kid: &str, usage: Option<&str>| {
            let mut v = Value::Object(kp);
            v["kid"] = kid.into();
            if let Some(u) = usage {
                v["use"] = u.into();
            }
            v
        };
        let rsa_sig = with(rsa.to_jwk_public_key().into(), "r-sig", Some("sig"));
        let ec_enc = with(ec.to_jwk_public_key().into(), "e-enc", Some("enc"));
        let rsa_none = with(rsa.to_jwk_public_key().into(), "r-none", None);
        let picked = RecipientKey::from_jwks(&json!({"keys": [rsa_sig, ec_enc]})).unwrap();
        assert_eq!(
            (picked.kid(), picked.algorithm()),
            (Some("e-enc"), "ECDH-ES+A256KW")
        );
        let err = RecipientKey::from_jwks(&json!({"keys": [ec_enc, rsa_none]}))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("2 encryption keys") && err.contains("r-none"),
            "{err}"
        );
        let err = RecipientKey::from_jwks(&json!({"keys": [rsa_sig]}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no key with use"), "{err}");
        assert!(RecipientKey::from_jwks(&json!([])).is_err());
    }

    #[test]
    fn classifies_registration_values() {
        let ec = ECDH_ES_A256KW.generate_ec_key_pair(EcCurve::P256).unwrap();
        let pem = String::from_utf8(ec.to_pem_public_key()).unwrap();
        assert!(matches!(
            parse_encryption_key(&pem),
            Ok(EncryptionKeySource::Key(_))
        ));
        let jwk = Value::Object(ec.to_jwk_public_key().into()).to_string();
        assert!(matches!(
            parse_encryption_key(&jwk),
            Ok(EncryptionKeySource::Key(_))
        ));
        let jwks = json!({"keys": [Value::Object(ec.to_jwk_public_key().into())]}).to_string();
        assert!(matches!(
            parse_encryption_key(&jwks),
            Ok(EncryptionKeySource::Key(_))
        ));
        match parse_encryption_key(" https://sp.example/jwks.json ").unwrap() {
            EncryptionKeySource::JwksUrl(u) => assert_eq!(u, "https://sp.example/jwks.json"),
            other => panic!("{other:?}"),
        }
        for bad in [
            "ftp://x/jwks",
            "https://",
            "hello",
            "{not json",
            "-----BEGIN nonsense",
        ] {
            assert!(parse_encryption_key(bad).is_err(), "{bad}");
        }
    }
}
