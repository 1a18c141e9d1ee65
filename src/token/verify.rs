//! The independent token verifier. It shares no code with the signer: josekit (OpenSSL)
//! decrypts and checks signatures, where the signer uses jsonwebtoken (RustCrypto), and the
//! header, claims and binding checks are written here afresh. Checks run in a fixed order
//! and the first that fails is reported, with what it found:
//!
//! 1. JWE (5 parts): a decrypt key is given; `alg` is `RSA-OAEP-256` or `ECDH-ES+A256KW`
//!    (and matches the key's type); `enc` is `A256GCM`; `cty` is `JWT`; no `zip`, no
//!    `crit`; it decrypts to a compact JWS.
//! 2. JWS: `alg` is `EdDSA` or `ES256` (`none`, `HS*`, `RS*` and all else refused by
//!    name); `typ` is `vidne-transaction-token+jwt`; no `crit`; `kid` is present and names
//!    one JWKS key of the same `alg`; the signature verifies.
//! 3. Claims: `iss`, `aud`, `transaction_id`, `iat`, and a well-formed `ledger` binding.
//! 4. `check_binding`: the binding's records are in the ledger, hash for hash.

use std::future::Future;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use josekit::jwe::{JweDecrypter, ECDH_ES_A256KW, RSA_OAEP_256};
use josekit::jwk::alg::ec::EcCurve;
use josekit::jwk::Jwk;
use josekit::jws::JwsVerifier;
use serde_json::{Map, Value};

use super::TOKEN_TYPE;
use crate::spec::hash::Hash32;
use crate::spec::MAX_SAFE_INTEGER;

type JsonObject = Map<String, Value>;

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;
/// The JWS algorithms accepted.
pub const JWS_ALGS: [&str; 2] = ["EdDSA", "ES256"];
/// The JWE key management algorithms accepted.
pub const JWE_ALGS: [&str; 2] = ["RSA-OAEP-256", "ECDH-ES+A256KW"];

/// Why a token was refused. Each variant is one check; the message says what was found.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed: {0}")]
    Malformed(String),
    #[error("token is encrypted (a JWE) and no decrypt key was given")]
    DecryptKeyRequired,
    #[error("JWE alg {0} is not allowed (only RSA-OAEP-256 and ECDH-ES+A256KW)")]
    JweAlg(String),
    #[error("JWE enc {0} is not allowed (only A256GCM)")]
    JweEnc(String),
    #[error("JWE cty is {0}, not \"JWT\"")]
    JweCty(String),
    #[error("JWE header: {0}")]
    JweHeader(String),
    #[error("the token is encrypted with {alg}, which needs {needs} private key, but the decrypt key is {have}")]
    DecryptKeyType {
        alg: String,
        needs: &'static str,
        have: &'static str,
    },
    #[error(
        "cannot decrypt the token with the given key ({0}): wrong key, or the token was altered"
    )]
    Decrypt(String),
    #[error("JWS alg {0} is not allowed (only EdDSA and ES256)")]
    Alg(String),
    #[error("JWS typ is {0}, not \"vidne-transaction-token+jwt\"")]
    Typ(String),
    #[error("JWS header: {0}")]
    JwsHeader(String),
    #[error("JWS header has no kid")]
    KidMissing,
    #[error("kid {0:?} is not in the JWKS")]
    UnknownKid(String),
    #[error("JWKS key {kid:?} is {key}, but the token is signed with {alg}")]
    KeyAlg {
        kid: String,
        key: String,
        alg: String,
    },
    #[error("JWKS: {0}")]
    Jwks(String),
    #[error("signature does not verify with JWKS key {kid:?} ({alg})")]
    Signature { kid: String, alg: String },
    #[error("claims: {0}")]
    Claims(String),
    #[error("ledger binding: {0}")]
    Binding(String),
    #[error("ledger binding names origin {token:?}, expected {expected:?}")]
    Origin { token: String, expected: String },
    #[error("ledger binding: seq {seq} is not in the ledger")]
    RecordMissing { seq: u64 },
    #[error("ledger binding: seq {seq} has record hash {actual} in the ledger, but the token names {token}")]
    RecordMismatch {
        seq: u64,
        token: String,
        actual: String,
    },
    /// The ledger could not be read: not a verdict on the token.
    #[error("cannot read the ledger: {0}")]
    Lookup(String),
}

impl TokenError {
    /// A short name of the check that failed, for machine-readable output.
    pub fn check(&self) -> &'static str {
        use TokenError::*;
        match self {
            Malformed(_) => "format",
            DecryptKeyRequired | DecryptKeyType { .. } => "decrypt_key",
            JweAlg(_) => "jwe_alg",
            JweEnc(_) => "jwe_enc",
            JweCty(_) => "jwe_cty",
            JweHeader(_) => "jwe_header",
            Decrypt(_) => "decrypt",
            Alg(_) => "alg",
            Typ(_) => "typ",
            JwsHeader(_) => "jws_header",
            KidMissing | UnknownKid(_) | KeyAlg { .. } => "kid",
            Jwks(_) => "jwks",
            Signature { .. } => "signature",
            Claims(_) => "claims",
            Binding(_) => "binding",
            Origin { .. } => "binding_origin",
            RecordMissing { .. } | RecordMismatch { .. } => "binding_record",
            Lookup(_) => "ledger_unavailable",
        }
    }
}

/// A token that passed every check up to the binding lookup.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The JWS protected header.
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    /// Whether the JWS came nested in a JWE.
    pub encrypted: bool,
    /// The JWE protected header, if it was encrypted.
    pub jwe_header: Option<Map<String, Value>>,
    pub binding: Binding,
}

/// The `ledger` claim: which ledger, and which records (seq, record hash) the token seals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub origin: String,
    pub records: Vec<(u64, Hash32)>,
}

/// A private key that decrypts JWEs: RSA (RSA-OAEP-256) or EC P-256 (ECDH-ES+A256KW).
/// `Debug` never shows the key.
pub struct DecryptKey {
    kind: DecryptKind,
    decrypter: Box<dyn JweDecrypter>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DecryptKind {
    Rsa,
    P256,
}

impl DecryptKind {
    fn name(self) -> &'static str {
        match self {
            DecryptKind::Rsa => "an RSA",
            DecryptKind::P256 => "an EC P-256",
        }
    }
}

impl std::fmt::Debug for DecryptKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DecryptKey({:?}, [redacted])", self.kind)
    }
}

impl DecryptKey {
    /// A PEM private key: PKCS#8 `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`.
    pub fn from_pem(pem: &str) -> Result<DecryptKey, TokenError> {
        if let Ok(d) = RSA_OAEP_256.decrypter_from_pem(pem) {
            return Ok(DecryptKey {
                kind: DecryptKind::Rsa,
                decrypter: Box::new(d),
            });
        }
        match ECDH_ES_A256KW.key_pair_from_ec_pem(pem) {
            Ok(kp) if kp.curve() == EcCurve::P256 => {
                let d = ECDH_ES_A256KW
                    .decrypter_from_pem(pem)
                    .map_err(|e| TokenError::Malformed(format!("decrypt key: {e}")))?;
                Ok(DecryptKey {
                    kind: DecryptKind::P256,
                    decrypter: Box::new(d),
                })
            }
            Ok(kp) => Err(TokenError::DecryptKeyType {
                alg: "ECDH-ES+A256KW".into(),
                needs: "a P-256",
                have: match kp.curve() {
                    EcCurve::P384 => "on P-384",
                    EcCurve::P521 => "on P-521",
                    _ => "on another curve",
                },
            }),
            Err(_) => Err(TokenError::Malformed(
                "decrypt key is not an RSA or EC P-256 private key in PEM".into(),
            )),
        }
    }
}

/// Where `check_binding` finds record hashes: the ledger, read independently.
pub trait LedgerLookup {
    /// The record hash (SPEC section 2) of the record at `seq`, recomputed from its
    /// canonical bytes; `None` if there is no record at `seq`.
    fn record_hash(
        &self,
        seq: u64,
    ) -> impl Future<Output = anyhow::Result<Option<[u8; 32]>>> + Send;
}

fn b64_json(part: &str, what: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed(format!("{what} is not base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(TokenError::Malformed(format!(
            "{what} is not a JSON object"
        ))),
    }
}

/// How a header member is shown in an error: its JSON, or `missing`.
fn shown(v: Option<&Value>) -> String {
    v.map_or_else(|| "missing".to_owned(), Value::to_string)
}

/// Decrypts (if needed) and verifies `token` against `jwks` (`{"keys": [...]}`), and
/// checks its claims and the form of its ledger binding. The binding's records are
/// checked against a ledger by `check_binding`.
pub fn verify(
    token: &str,
    jwks: &Value,
    decrypt_key: Option<&DecryptKey>,
) -> Result<Verified, TokenError> {
    let token = token.trim();
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed(format!(
            "longer than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    let parts = token.split('.').count();
    let (jws, jwe_header) = match parts {
        3 => (token.to_owned(), None),
        5 => {
            let (jws, header) = decrypt(token, decrypt_key)?;
            (jws, Some(header))
        }
        n => {
            return Err(TokenError::Malformed(format!(
                "has {n} dot-separated parts: a JWS has 3, a JWE 5"
            )))
        }
    };
    let (header, claims) = verify_jws(&jws, jwks)?;
    check_claims(&claims)?;
    let binding = parse_binding(&claims)?;
    Ok(Verified {
        header,
        claims,
        encrypted: jwe_header.is_some(),
        jwe_header,
        binding,
    })
}

fn decrypt(
    token: &str,
    key: Option<&DecryptKey>,
) -> Result<(String, Map<String, Value>), TokenError> {
    let header = b64_json(token.split('.').next().unwrap_or_default(), "JWE header")?;
    let key = key.ok_or(TokenError::DecryptKeyRequired)?;
    let alg = header.get("alg");
    let needs = match alg.and_then(Value::as_str) {
        Some("RSA-OAEP-256") => DecryptKind::Rsa,
        Some("ECDH-ES+A256KW") => DecryptKind::P256,
        _ => return Err(TokenError::JweAlg(shown(alg))),
    };
    if header.get("enc").and_then(Value::as_str) != Some("A256GCM") {
        return Err(TokenError::JweEnc(shown(header.get("enc"))));
    }
    if header.get("cty").and_then(Value::as_str) != Some("JWT") {
        return Err(TokenError::JweCty(shown(header.get("cty"))));
    }
    for refused in ["zip", "crit"] {
        if header.contains_key(refused) {
            return Err(TokenError::JweHeader(format!("{refused} is not allowed")));
        }
    }
    if key.kind != needs {
        return Err(TokenError::DecryptKeyType {
            alg: alg.and_then(Value::as_str).unwrap_or_default().to_owned(),
            needs: needs.name(),
            have: key.kind.name(),
        });
    }
    let (plain, _) = josekit::jwe::deserialize_compact(token, &*key.decrypter)
        .map_err(|e| TokenError::Decrypt(e.to_string()))?;
    let jws = String::from_utf8(plain)
        .ok()
        .filter(|s| s.split('.').count() == 3)
        .ok_or_else(|| TokenError::Malformed("the JWE does not hold a compact JWS".into()))?;
    Ok((jws, header))
}

fn verify_jws(jws: &str, jwks: &Value) -> Result<(JsonObject, JsonObject), TokenError> {
    let mut parts = jws.split('.');
    let (h, p, s) = match (parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s)) => (h, p, s),
        _ => return Err(TokenError::Malformed("not a compact JWS".into())),
    };
    let header = b64_json(h, "JWS header")?;
    let alg = match header.get("alg").and_then(Value::as_str) {
        Some(a) if JWS_ALGS.contains(&a) => a,
        _ => return Err(TokenError::Alg(shown(header.get("alg")))),
    };
    if header.get("typ").and_then(Value::as_str) != Some(TOKEN_TYPE) {
        return Err(TokenError::Typ(shown(header.get("typ"))));
    }
    if header.contains_key("crit") {
        return Err(TokenError::JwsHeader("crit is not allowed".into()));
    }
    let kid = match header.get("kid") {
        Some(Value::String(k)) if !k.is_empty() => k.as_str(),
        _ => return Err(TokenError::KidMissing),
    };
    let verifier = verifier_for(jwks, kid, alg)?;
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| TokenError::Malformed("JWS signature is not base64url".into()))?;
    let signed = &jws[..h.len() + 1 + p.len()];
    verifier
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| TokenError::Signature {
            kid: kid.to_owned(),
            alg: alg.to_owned(),
        })?;
    let claims = b64_json(p, "JWS payload")?;
    Ok((header, claims))
}

/// The josekit verifier of the one JWKS key named `kid`, which must suit `alg`.
fn verifier_for(jwks: &Value, kid: &str, alg: &str) -> Result<Box<dyn JwsVerifier>, TokenError> {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| TokenError::Jwks("not a JWKS (no \"keys\" array)".into()))?;
    let found: Vec<&Value> = keys
        .iter()
        .filter(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
        .collect();
    let key = match found.as_slice() {
        [] => return Err(TokenError::UnknownKid(kid.to_owned())),
        [k] => *k,
        more => {
            return Err(TokenError::Jwks(format!(
                "kid {kid:?} names {} keys",
                more.len()
            )))
        }
    };
    let kty = key.get("kty").and_then(Value::as_str).unwrap_or("?");
    let crv = key.get("crv").and_then(Value::as_str).unwrap_or("?");
    let key_alg = key.get("alg").and_then(Value::as_str);
    let fits = match alg {
        "EdDSA" => kty == "OKP" && crv == "Ed25519",
        _ => kty == "EC" && crv == "P-256",
    };
    if key_alg.is_some_and(|a| a != alg) || !fits {
        return Err(TokenError::KeyAlg {
            kid: kid.to_owned(),
            key: match key_alg {
                Some(a) => format!("an {a} key ({kty} {crv})"),
                None => format!("a {kty} {crv} key"),
            },
            alg: alg.to_owned(),
        });
    }
    if key.get("use").is_some_and(|u| u != "sig") {
        return Err(TokenError::Jwks(format!(
            "key {kid:?} has use {}, not \"sig\"",
            shown(key.get("use"))
        )));
    }
    let jwk = Jwk::from_map(key.as_object().cloned().unwrap_or_default())
        .map_err(|e| TokenError::Jwks(format!("key {kid:?}: {e}")))?;
    let verifier: Result<Box<dyn JwsVerifier>, _> = match alg {
        "EdDSA" => josekit::jws::EdDSA
            .verifier_from_jwk(&jwk)
            .map(|v| Box::new(v) as Box<dyn JwsVerifier>),
        _ => josekit::jws::ES256
            .verifier_from_jwk(&jwk)
            .map(|v| Box::new(v) as Box<dyn JwsVerifier>),
    };
    verifier.map_err(|e| TokenError::Jwks(format!("key {kid:?} is unusable: {e}")))
}

fn check_claims(claims: &Map<String, Value>) -> Result<(), TokenError> {
    let string = |name: &str| match claims.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(()),
        Some(v) => Err(TokenError::Claims(format!(
            "{name} must be a non-empty string, found {v}"
        ))),
        None => Err(TokenError::Claims(format!("{name} is missing"))),
    };
    string("iss")?;
    match claims.get("aud") {
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(Value::Array(a))
            if !a.is_empty() && a.iter().all(|v| v.as_str().is_some_and(|s| !s.is_empty())) => {}
        Some(v) => {
            return Err(TokenError::Claims(format!(
                "aud must be a string or an array of strings, found {v}"
            )))
        }
        None => return Err(TokenError::Claims("aud is missing".into())),
    }
    string("transaction_id")?;
    match claims.get("iat") {
        Some(v) if v.as_u64().is_some_and(|n| n <= MAX_SAFE_INTEGER) => Ok(()),
        Some(v) => Err(TokenError::Claims(format!(
            "iat must be a non-negative integer, found {v}"
        ))),
        None => Err(TokenError::Claims("iat is missing".into())),
    }
}

/// Parses the `ledger` claim: exactly `{"origin": non-empty string, "records": [{"seq":
/// integer, "hash": 64 lowercase hex}, ...]}` with at least one record and no seq twice.
pub fn parse_binding(claims: &Map<String, Value>) -> Result<Binding, TokenError> {
    let bad = |s: String| TokenError::Binding(s);
    let ledger = match claims.get("ledger") {
        Some(Value::Object(m)) => m,
        Some(v) => return Err(bad(format!("ledger must be an object, found {v}"))),
        None => return Err(TokenError::Claims("ledger is missing".into())),
    };
    if let Some(extra) = ledger
        .keys()
        .find(|k| !matches!(k.as_str(), "origin" | "records"))
    {
        return Err(bad(format!("unknown member ledger.{extra}")));
    }
    let origin = match ledger.get("origin") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        v => {
            return Err(bad(format!(
                "ledger.origin must be a non-empty string, found {}",
                shown(v)
            )))
        }
    };
    let list = match ledger.get("records") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        v => {
            return Err(bad(format!(
                "ledger.records must be a non-empty array, found {}",
                shown(v)
            )))
        }
    };
    let mut records: Vec<(u64, Hash32)> = Vec::with_capacity(list.len());
    for (i, r) in list.iter().enumerate() {
        let at = format!("ledger.records[{i}]");
        let obj = r
            .as_object()
            .ok_or_else(|| bad(format!("{at} must be an object")))?;
        if let Some(extra) = obj.keys().find(|k| !matches!(k.as_str(), "seq" | "hash")) {
            return Err(bad(format!("unknown member {at}.{extra}")));
        }
        let seq = obj
            .get("seq")
            .and_then(Value::as_u64)
            .filter(|s| *s <= MAX_SAFE_INTEGER)
            .ok_or_else(|| {
                bad(format!(
                    "{at}.seq must be an integer from 0 to 2^53 - 1, found {}",
                    shown(obj.get("seq"))
                ))
            })?;
        let hash: Hash32 = obj
            .get("hash")
            .and_then(Value::as_str)
            .and_then(|h| h.parse().ok())
            .ok_or_else(|| {
                bad(format!(
                    "{at}.hash must be 64 lowercase hex digits, found {}",
                    shown(obj.get("hash"))
                ))
            })?;
        if records.iter().any(|(s, _)| *s == seq) {
            return Err(bad(format!("seq {seq} is named twice")));
        }
        records.push((seq, hash));
    }
    Ok(Binding { origin, records })
}

/// Checks the token's ledger binding: the origin (when `expected_origin` is given), then
/// each record in the order the token lists them; fails on the first seq that is not in
/// the ledger or whose record hash differs.
pub async fn check_binding<L: LedgerLookup>(
    claims: &Map<String, Value>,
    lookup: &L,
    expected_origin: Option<&str>,
) -> Result<Binding, TokenError> {
    let binding = parse_binding(claims)?;
    if let Some(expected) = expected_origin {
        if binding.origin != expected {
            return Err(TokenError::Origin {
                token: binding.origin,
                expected: expected.to_owned(),
            });
        }
    }
    for (seq, hash) in &binding.records {
        match lookup
            .record_hash(*seq)
            .await
            .map_err(|e| TokenError::Lookup(format!("{e:#}")))?
        {
            None => return Err(TokenError::RecordMissing { seq: *seq }),
            Some(actual) if actual != hash.0 => {
                return Err(TokenError::RecordMismatch {
                    seq: *seq,
                    token: hash.to_hex(),
                    actual: hex::encode(actual),
                })
            }
            Some(_) => {}
        }
    }
    Ok(binding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::hash::record_hash;
    use crate::token::keys::SigningKeys;
    use crate::token::seal::{encrypt, sign, RecipientKey};
    use crate::token::Alg;
    use josekit::jwe::{ECDH_ES_A256KW, RSA_OAEP_256};
    use serde_json::json;
    use std::collections::HashMap;

    struct Fixture {
        _tmp: tempfile::TempDir,
        keys: SigningKeys,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let keys = SigningKeys::ensure(&tmp.path().join("k"), chrono::Utc::now()).unwrap();
        Fixture { _tmp: tmp, keys }
    }

    impl Fixture {
        fn token(&self, alg: Alg, claims: &Map<String, Value>) -> String {
            sign(claims, self.keys.signer(alg, chrono::Utc::now()).unwrap()).unwrap()
        }
    }

    /// An in-memory ledger: seq -> canonical bytes.
    struct Memory(HashMap<u64, Vec<u8>>);

    impl LedgerLookup for Memory {
        async fn record_hash(&self, seq: u64) -> anyhow::Result<Option<[u8; 32]>> {
            Ok(self.0.get(&seq).map(|c| record_hash(c).0))
        }
    }

    struct Down;

    impl LedgerLookup for Down {
        async fn record_hash(&self, _: u64) -> anyhow::Result<Option<[u8; 32]>> {
            Err(anyhow::anyhow!("connection refused"))
        }
    }

    fn ledger() -> Memory {
        Memory(HashMap::from([
            (3, br#"{"seq":3,"n":"a"}"#.to_vec()),
            (7, br#"{"seq":7,"n":"b"}"#.to_vec()),
        ]))
    }

    fn claims_for(ledger: &Memory, seqs: &[u64]) -> Map<String, Value> {
        let records: Vec<Value> = seqs
            .iter()
            .map(|s| {
                let h = ledger
                    .0
                    .get(s)
                    .map_or_else(|| "00".repeat(32), |c| record_hash(c).to_hex());
                json!({"seq": s, "hash": h})
            })
            .collect();
        json!({
            "iss": "https://broker.example", "sub": "u-1", "aud": "sp-acme",
            "iat": 1_795_253_400u64, "auth_time": 1_795_253_300u64, "transaction_id": "tx-1",
            "idp": "mitid", "transaction_actions": ["login", "sign"],
            "ledger": {"origin": "vidne.local/ledger", "records": records}
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    /// `token` with its header replaced by `header` (signature left as it was).
    fn reheader(token: &str, header: &Value) -> String {
        let rest: Vec<&str> = token.split('.').skip(1).collect();
        format!("{}.{}", b64(header), rest.join("."))
    }

    fn header_of(token: &str) -> Value {
        Value::Object(b64_json(token.split('.').next().unwrap(), "h").unwrap())
    }

    #[tokio::test]
    async fn a_valid_token_passes_every_check_for_both_algs() {
        let f = fixture();
        let ledger = ledger();
        let claims = claims_for(&ledger, &[3, 7]);
        for alg in Alg::ALL {
            let token = f.token(alg, &claims);
            let v = verify(&token, &f.keys.jwks(), None).unwrap();
            assert_eq!(v.claims, claims);
            assert_eq!(v.header["alg"], alg.as_str());
            assert!(!v.encrypted);
            let b = check_binding(&v.claims, &ledger, Some("vidne.local/ledger"))
                .await
                .unwrap();
            assert_eq!(
                b.records.iter().map(|r| r.0).collect::<Vec<_>>(),
                vec![3, 7]
            );
        }
    }

    #[tokio::test]
    async fn binding_failures_name_the_seq() {
        let f = fixture();
        let ledger = ledger();
        // A seq that is not in the ledger
        let v = verify(
            &f.token(Alg::EdDSA, &claims_for(&ledger, &[3, 9])),
            &f.keys.jwks(),
            None,
        )
        .unwrap();
        let err = check_binding(&v.claims, &ledger, None).await.unwrap_err();
        assert!(matches!(err, TokenError::RecordMissing { seq: 9 }), "{err}");
        assert!(err.to_string().contains("seq 9"));
        // A hash that differs
        let mut claims = claims_for(&ledger, &[3, 7]);
        claims["ledger"]["records"][1]["hash"] = "ab".repeat(32).into();
        let err = check_binding(&claims, &ledger, None).await.unwrap_err();
        assert!(
            matches!(err, TokenError::RecordMismatch { seq: 7, .. }),
            "{err}"
        );
        assert!(err.to_string().contains(&"ab".repeat(32)), "{err}");
        // Another ledger's origin
        let err = check_binding(&claims, &ledger, Some("other.example/ledger"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("other.example/ledger"), "{err}");
        // A ledger that cannot be read is not a verdict
        let err = check_binding(&claims_for(&ledger, &[3]), &Down, None)
            .await
            .unwrap_err();
        assert_eq!(err.check(), "ledger_unavailable");
    }

    #[test]
    fn malformed_bindings_are_refused_before_any_lookup() {
        let ledger = ledger();
        let cases: Vec<(Value, &str)> = vec![
            (json!("x"), "must be an object"),
            (
                json!({"origin": "", "records": [{"seq": 3, "hash": "00".repeat(32)}]}),
                "origin",
            ),
            (json!({"origin": "o", "records": []}), "non-empty array"),
            (
                json!({"origin": "o", "records": [{"seq": -1, "hash": "00".repeat(32)}]}),
                "records[0].seq",
            ),
            (
                json!({"origin": "o", "records": [{"seq": 1, "hash": "AB".repeat(32)}]}),
                "lowercase hex",
            ),
            (
                json!({"origin": "o", "records": [{"seq": 1, "hash": "00".repeat(32), "x": 1}]}),
                "unknown member",
            ),
            (
                json!({"origin": "o", "records": [{"seq": 1, "hash": "00".repeat(32)}, {"seq": 1, "hash": "00".repeat(32)}]}),
                "twice",
            ),
            (
                json!({"origin": "o", "records": [{"seq": 1, "hash": "00".repeat(32)}], "extra": true}),
                "unknown member",
            ),
        ];
        for (binding, expect) in cases {
            let mut claims = claims_for(&ledger, &[3]);
            claims.insert("ledger".into(), binding.clone());
            let err = parse_binding(&claims).unwrap_err().to_string();
            assert!(err.contains(expect), "{binding}: {err}");
        }
    }

    #[test]
    fn refused_algorithms_are_named() {
        let f = fixture();
        let token = f.token(Alg::EdDSA, &claims_for(&ledger(), &[3]));
        let mut header = header_of(&token);
        for alg in ["none", "HS256", "RS256", "PS256", "ES384", "EdDSA2"] {
            header["alg"] = alg.into();
            let err = verify(&reheader(&token, &header), &f.keys.jwks(), None).unwrap_err();
            assert!(matches!(err, TokenError::Alg(_)), "{alg}: {err}");
            assert!(err.to_string().contains(&format!("\"{alg}\"")), "{err}");
        }
        header.as_object_mut().unwrap().remove("alg");
        let err = verify(&reheader(&token, &header), &f.keys.jwks(), None).unwrap_err();
        assert!(err.to_string().contains("alg missing"), "{err}");
        // An unsigned token in the form `none` produces (empty signature)
        let none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": TOKEN_TYPE})),
            token.split('.').nth(1).unwrap()
        );
        assert!(matches!(
            verify(&none, &f.keys.jwks(), None),
            Err(TokenError::Alg(_))
        ));
    }

    #[test]
    fn typ_kid_and_key_mismatches_are_named() {
        let f = fixture();
        let jwks = f.keys.jwks();
        let token = f.token(Alg::EdDSA, &claims_for(&ledger(), &[3]));
        let h = header_of(&token);
        let mut wrong = h.clone();
        wrong["typ"] = "JWT".into();
        let err = verify(&reheader(&token, &wrong), &jwks, None).unwrap_err();
        assert!(
            matches!(err, TokenError::Typ(_)) && err.to_string().contains("\"JWT\""),
            "{err}"
        );
        let mut none = h.clone();
        none.as_object_mut().unwrap().remove("typ");
        assert!(verify(&reheader(&token, &none), &jwks, None)
            .unwrap_err()
            .to_string()
            .contains("typ is missing"));
        let mut no_kid = h.clone();
        no_kid.as_object_mut().unwrap().remove("kid");
        assert!(matches!(
            verify(&reheader(&token, &no_kid), &jwks, None),
            Err(TokenError::KidMissing)
        ));
        let mut unknown = h.clone();
        unknown["kid"] = "nope".into();
        let err = verify(&reheader(&token, &unknown), &jwks, None).unwrap_err();
        assert!(
            err.to_string().contains("kid \"nope\" is not in the JWKS"),
            "{err}"
        );
        // The ES256 key's kid on an EdDSA token
        let mut other = h.clone();
        other["kid"] = f
            .keys
            .signer(Alg::ES256, chrono::Utc::now())
            .unwrap()
            .kid()
            .into();
        let err = verify(&reheader(&token, &other), &jwks, None).unwrap_err();
        assert!(
            matches!(err, TokenError::KeyAlg { .. }) && err.to_string().contains("ES256"),
            "{err}"
        );
        let mut crit = h.clone();
        crit["crit"] = json!(["b64"]);
        assert!(matches!(
            verify(&reheader(&token, &crit), &jwks, None),
            Err(TokenError::JwsHeader(_))
        ));
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let f = fixture();
        let jwks = f.keys.jwks();
        for alg in Alg::ALL {
            let token = f.token(alg, &claims_for(&ledger(), &[3]));
            let parts: Vec<&str> = token.split('.').collect();
            // Another payload under the same signature
            let mut claims = claims_for(&ledger(), &[3]);
            claims["aud"] = "sp-evil".into();
            let swapped = format!("{}.{}.{}", parts[0], b64(&Value::Object(claims)), parts[2]);
            let err = verify(&swapped, &jwks, None).unwrap_err();
            assert!(matches!(err, TokenError::Signature { .. }), "{err}");
            // One signature byte changed
            let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
            sig[10] ^= 1;
            let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
            let err = verify(&flipped, &jwks, None).unwrap_err();
            assert!(
                err.to_string().starts_with("signature does not verify"),
                "{err}"
            );
        }
    }

    #[test]
    fn claims_are_required() {
        let f = fixture();
        for (name, bad) in [
            ("iss", None),
            ("aud", Some(json!(7))),
            ("transaction_id", None),
            ("iat", Some(json!(1.5))),
        ] {
            let mut claims = claims_for(&ledger(), &[3]);
            match bad {
                None => {
                    claims.remove(name);
                }
                Some(v) => {
                    claims.insert(name.into(), v);
                }
            }
            // Signed by hand: the signer refuses to sign such claims
            let key = f.keys.signer(Alg::EdDSA, chrono::Utc::now()).unwrap();
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
            header.typ = Some(TOKEN_TYPE.into());
            header.kid = Some(key.kid().into());
            let token = jsonwebtoken::encode(&header, &claims, key.encoding_key()).unwrap();
            let err = verify(&token, &f.keys.jwks(), None).unwrap_err();
            assert!(
                matches!(err, TokenError::Claims(_)) && err.to_string().contains(name),
                "{err}"
            );
        }
    }

    #[test]
    fn encrypted_tokens_need_the_right_key() {
        let f = fixture();
        let token = f.token(Alg::ES256, &claims_for(&ledger(), &[3]));
        let rsa = RSA_OAEP_256.generate_key_pair(2048).unwrap();
        let rsa2 = RSA_OAEP_256.generate_key_pair(2048).unwrap();
        let ec = ECDH_ES_A256KW.generate_ec_key_pair(EcCurve::P256).unwrap();
        let ec2 = ECDH_ES_A256KW.generate_ec_key_pair(EcCurve::P256).unwrap();
        let pem = |b: Vec<u8>| String::from_utf8(b).unwrap();
        let rsa_key = DecryptKey::from_pem(&pem(rsa.to_pem_private_key())).unwrap();
        let ec_key = DecryptKey::from_pem(&pem(ec.to_pem_private_key())).unwrap();
        let ec_trad = DecryptKey::from_pem(&pem(ec.to_traditional_pem_private_key())).unwrap();
        let jwks = f.keys.jwks();

        let to_rsa = encrypt(
            &token,
            &RecipientKey::from_pem(&pem(rsa.to_pem_public_key())).unwrap(),
        )
        .unwrap();
        let to_ec = encrypt(
            &token,
            &RecipientKey::from_pem(&pem(ec.to_pem_public_key())).unwrap(),
        )
        .unwrap();
        for (jwe, key) in [(&to_rsa, &rsa_key), (&to_ec, &ec_key), (&to_ec, &ec_trad)] {
            let v = verify(jwe, &jwks, Some(key)).unwrap();
            assert!(v.encrypted);
            assert_eq!(v.jwe_header.unwrap()["cty"], "JWT");
            assert_eq!(v.header["alg"], "ES256");
        }
        assert!(matches!(
            verify(&to_rsa, &jwks, None),
            Err(TokenError::DecryptKeyRequired)
        ));
        let wrong_rsa = DecryptKey::from_pem(&pem(rsa2.to_pem_private_key())).unwrap();
        let err = verify(&to_rsa, &jwks, Some(&wrong_rsa)).unwrap_err();
        assert!(matches!(err, TokenError::Decrypt(_)), "{err}");
        let wrong_ec = DecryptKey::from_pem(&pem(ec2.to_pem_private_key())).unwrap();
        let err = verify(&to_ec, &jwks, Some(&wrong_ec)).unwrap_err();
        assert!(matches!(err, TokenError::Decrypt(_)), "{err}");
        let err = verify(&to_ec, &jwks, Some(&rsa_key)).unwrap_err();
        assert!(
            err.to_string()
                .contains("needs an EC P-256 private key, but the decrypt key is an RSA"),
            "{err}"
        );
        // Header checks before decryption
        let mut h = header_of(&to_rsa);
        h["enc"] = "A128CBC-HS256".into();
        assert!(matches!(
            verify(&reheader(&to_rsa, &h), &jwks, Some(&rsa_key)),
            Err(TokenError::JweEnc(_))
        ));
        let mut h = header_of(&to_rsa);
        h["alg"] = "RSA1_5".into();
        let err = verify(&reheader(&to_rsa, &h), &jwks, Some(&rsa_key)).unwrap_err();
        assert!(err.to_string().contains("\"RSA1_5\""), "{err}");
        let mut h = header_of(&to_rsa);
        h.as_object_mut().unwrap().remove("cty");
        assert!(matches!(
            verify(&reheader(&to_rsa, &h), &jwks, Some(&rsa_key)),
            Err(TokenError::JweCty(_))
        ));
        let mut h = header_of(&to_rsa);
        h["zip"] = "DEF".into();
        assert!(matches!(
            verify(&reheader(&to_rsa, &h), &jwks, Some(&rsa_key)),
            Err(TokenError::JweHeader(_))
        ));
        // An altered protected header fails authentication even where it passes the checks
        let mut h = header_of(&to_rsa);
        h["kid"] = "x".into();
        assert!(matches!(
            verify(&reheader(&to_rsa, &h), &jwks, Some(&rsa_key)),
            Err(TokenError::Decrypt(_))
        ));
        // Keys that cannot decrypt are refused when read
        let p384 = ECDH_ES_A256KW.generate_ec_key_pair(EcCurve::P384).unwrap();
        assert!(DecryptKey::from_pem(&pem(p384.to_pem_private_key()))
            .unwrap_err()
            .to_string()
            .contains("P-384"));
        assert!(DecryptKey::from_pem("hello").is_err());
        assert!(!format!("{rsa_key:?}").contains("MII"));
    }

    #[test]
    fn malformed_tokens() {
        let jwks = json!({"keys": []});
        for (t, expect) in [
            ("a.b", "2 dot-separated parts"),
            ("a.b.c.d", "4 dot-separated parts"),
            ("!!.b.c", "JWS header is not base64url"),
            (
                &format!("{}.b.c", URL_SAFE_NO_PAD.encode("[1]")),
                "JWS header is not a JSON object",
            ),
        ] {
            let err = verify(t, &jwks, None).unwrap_err().to_string();
            assert!(err.contains(expect), "{t}: {err}");
        }
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert!(verify(&long, &jwks, None)
            .unwrap_err()
            .to_string()
            .contains("longer than"));
    }
}
