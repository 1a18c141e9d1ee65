//! The token signing keys: a directory (mode 0700) outside the database, holding per key
//! `<kid>.pem` (the PKCS#8 private key, 0600, written once) and `<kid>.json` (its
//! metadata, 0600, replaced atomically when the key is retired):
//!
//! ```json
//! {"kid":"…","alg":"EdDSA","created_at":"…","signs_from":"…","retired_at":null}
//! ```
//!
//! `kid` is the RFC 7638 thumbprint of the public key (base64url, no padding); loading
//! recomputes it from the private key and refuses a file whose name or metadata disagree.
//! Like ssh, loading refuses a directory or key file that group or others may access.
//!
//! Rotation adds a key that signs only from `now + publish lead`: it is in the JWKS at
//! once, so relying parties that cache the JWKS know it before the first token it signs.
//! The key it replaces is retired at that same instant and stays in the JWKS, so tokens
//! it signed still verify. Private key material is never in `Debug` output, errors or
//! logs.

use std::fmt;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use p256::elliptic_curve::zeroize::Zeroizing;
use p256::pkcs8::LineEnding;
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::Alg;
use crate::db::DatabaseUrl;

/// What went wrong with the key directory. Messages name paths, never key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing key directory {}: {reason}", dir.display())]
    Dir { dir: PathBuf, reason: String },
    #[error("signing key file {}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    #[error(
        "{} is accessible by group or others (mode {mode:o}); signing keys must be private: \
         chmod {want:o} {}", path.display(), path.display()
    )]
    Permissions { path: PathBuf, mode: u32, want: u32 },
    #[error("no {alg} signing key signs at {at}")]
    NoSigner { alg: Alg, at: String },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> KeyError {
    let path = path.to_path_buf();
    move |source| KeyError::Io {
        action,
        path,
        source,
    }
}

/// Where a key is in its life at some instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// Published, not signing yet.
    Pending,
    /// Signing (the newest active key of its `alg` is the one that signs).
    Active,
    /// No longer signing; still published so that its tokens verify.
    Retired,
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyState::Pending => "pending",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
        })
    }
}

/// One signing key. `Debug` shows its id and times, never the private key.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    alg: Alg,
    created_at: DateTime<Utc>,
    signs_from: DateTime<Utc>,
    retired_at: Option<DateTime<Utc>>,
    /// `kty`, `crv`, `x` (and `y` for P-256): the members the thumbprint covers.
    public: Map<String, Value>,
    encoding: jsonwebtoken::EncodingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("created_at", &self.created_at)
            .field("signs_from", &self.signs_from)
            .field("retired_at", &self.retired_at)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

impl SigningKey {
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }

    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }

    /// From when this key signs (it is published before).
    pub fn signs_from(&self) -> DateTime<Utc> {
        self.signs_from
    }

    /// From when this key no longer signs, if it is retired or to be retired.
    pub fn retired_at(&self) -> Option<DateTime<Utc>> {
        self.retired_at
    }

    pub fn state(&self, now: DateTime<Utc>) -> KeyState {
        if self.retired_at.is_some_and(|r| r <= now) {
            KeyState::Retired
        } else if self.signs_from > now {
            KeyState::Pending
        } else {
            KeyState::Active
        }
    }

    /// The public JWK: `kty`, `crv`, `x` (`y`), `kid`, `alg`, `use: "sig"`.
    pub fn public_jwk(&self) -> Value {
        let mut jwk = self.public.clone();
        jwk.insert("kid".into(), self.kid.clone().into());
        jwk.insert("alg".into(), self.alg.as_str().into());
        jwk.insert("use".into(), "sig".into());
        Value::Object(jwk)
    }

    pub(crate) fn encoding_key(&self) -> &jsonwebtoken::EncodingKey {
        &self.encoding
    }

    /// Parses a PKCS#8 PEM private key of `alg`; the `kid` is computed from it.
    fn from_pem(alg: Alg, pem: &str, created_at: DateTime<Utc>) -> Result<SigningKey, String> {
        let b64 = |bytes: &[u8]| Value::String(URL_SAFE_NO_PAD.encode(bytes));
        let mut public = Map::new();
        let encoding = match alg {
            Alg::EdDSA => {
                let sk = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
                    .map_err(|e| format!("not an Ed25519 PKCS#8 private key: {e}"))?;
                public.insert("kty".into(), "OKP".into());
                public.insert("crv".into(), "Ed25519".into());
                public.insert("x".into(), b64(sk.verifying_key().as_bytes()));
                let der = ed25519_v1(&sk).to_pkcs8_der().map_err(|e| e.to_string())?;
                jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes())
            }
            Alg::ES256 => {
                let sk = p256::ecdsa::SigningKey::from_pkcs8_pem(pem)
                    .map_err(|e| format!("not a P-256 PKCS#8 private key: {e}"))?;
                let point = sk.verifying_key().to_encoded_point(false);
                let (Some(x), Some(y)) = (point.x(), point.y()) else {
                    return Err("P-256 public key is the identity point".into());
                };
                public.insert("kty".into(), "EC".into());
                public.insert("crv".into(), "P-256".into());
                public.insert("x".into(), b64(x));
                public.insert("y".into(), b64(y));
                let der = sk.to_pkcs8_der().map_err(|e| e.to_string())?;
                jsonwebtoken::EncodingKey::from_ec_der(der.as_bytes())
            }
        };
        Ok(SigningKey {
            kid: thumbprint(&public),
            alg,
            created_at,
            signs_from: created_at,
            retired_at: None,
            public,
            encoding,
        })
    }
}

fn ed25519_v1(sk: &ed25519_dalek::SigningKey) -> ed25519_dalek::pkcs8::KeypairBytes {
    ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: sk.to_bytes(),
        public_key: None,
    }
}

/// A fresh private key of `alg` as PKCS#8 PEM.
fn generate_pem(alg: Alg) -> Result<Zeroizing<String>, String> {
    match alg {
        // PKCS#8 v1 (RFC 8410 without the optional public key): ed25519-dalek's own
        // `to_pkcs8_pem` writes v2 with the public key, which OpenSSL 3 and Python's
        // `cryptography` refuse to load.
        Alg::EdDSA => ed25519_v1(&ed25519_dalek::SigningKey::generate(&mut OsRng))
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| e.to_string()),
        Alg::ES256 => p256::ecdsa::SigningKey::random(&mut OsRng)
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| e.to_string()),
    }
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url): the required members in lexicographic
/// order, no white space. `public` holds only those members, all plain ASCII.
pub fn thumbprint(public: &Map<String, Value>) -> String {
    let mut members: Vec<(&String, &Value)> = public.iter().collect();
    members.sort_by(|a, b| a.0.cmp(b.0));
    let body: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("\"{k}\":\"{}\"", v.as_str().unwrap_or_default()))
        .collect();
    let json = format!("{{{}}}", body.join(","));
    URL_SAFE_NO_PAD.encode(Sha256::digest(json.as_bytes()))
}

/// `<kid>.json`.
#[derive(Serialize, Deserialize)]
struct Meta {
    kid: String,
    alg: String,
    created_at: String,
    signs_from: String,
    retired_at: Option<String>,
}

fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))
}

impl Meta {
    fn of(key: &SigningKey) -> Meta {
        Meta {
            kid: key.kid.clone(),
            alg: key.alg.as_str().into(),
            created_at: time_text(key.created_at),
            signs_from: time_text(key.signs_from),
            retired_at: key.retired_at.map(time_text),
        }
    }
}

/// What `SigningKeys::rotate` did.
#[derive(Clone, Debug)]
pub struct Rotation {
    pub kid: String,
    pub alg: Alg,
    pub signs_from: DateTime<Utc>,
    /// Each earlier key of `alg` set to retire, with when.
    pub retiring: Vec<(String, DateTime<Utc>)>,
}

/// The keys of one directory, ordered by `signs_from` (then `created_at`).
#[derive(Clone, Debug)]
pub struct SigningKeys {
    dir: PathBuf,
    keys: Vec<SigningKey>,
}

/// Default publish lead of a rotation: a day, longer than any sane JWKS cache.
pub const DEFAULT_PUBLISH_LEAD: Duration = Duration::from_secs(24 * 3600);

impl SigningKeys {
    /// Loads every key in `dir`. Refuses a directory or file group or others may access,
    /// a key whose metadata or file name disagrees with its private key, and a `.json`
    /// without its `.pem`. (A `.pem` without `.json` is a rotation that stopped half-way:
    /// it is skipped with a warning.)
    pub fn open(dir: &Path) -> Result<SigningKeys, KeyError> {
        let meta = std::fs::metadata(dir).map_err(|e| KeyError::Dir {
            dir: dir.to_path_buf(),
            reason: if e.kind() == ErrorKind::NotFound {
                "does not exist (`vidne keys rotate-signing --keys DIR` or the service's \
                 first start makes it)"
                    .into()
            } else {
                e.to_string()
            },
        })?;
        if !meta.is_dir() {
            return Err(KeyError::Dir {
                dir: dir.to_path_buf(),
                reason: "is not a directory".into(),
            });
        }
        check_private(dir, 0o700)?;
        let mut keys = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(io("read", dir))?;
        for entry in entries {
            let path = entry.map_err(io("read", dir))?.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("json") => keys.push(load(&path)?),
                Some("pem") => {
                    check_private(&path, 0o600)?;
                    if !path.with_extension("json").exists() {
                        tracing::warn!(path = %path.display(),
                            "signing key without metadata (an interrupted rotation?); skipped");
                    }
                }
                _ => {}
            }
        }
        keys.sort_by_key(|k| (k.signs_from, k.created_at));
        Ok(SigningKeys {
            dir: dir.to_path_buf(),
            keys,
        })
    }

    /// Opens `dir`, making it (0700) and one key per algorithm, active at once, for each
    /// algorithm that has no active or pending key: the service's first start.
    pub fn ensure(dir: &Path, now: DateTime<Utc>) -> Result<SigningKeys, KeyError> {
        make_dir(dir)?;
        let keys = SigningKeys::open(dir)?;
        let mut made = false;
        for alg in Alg::ALL {
            if !keys.has_current(alg, now) {
                let key = add_key(dir, alg, now, now)?;
                tracing::info!(kid = %key.kid, %alg, "made a token signing key");
                made = true;
            }
        }
        if made {
            SigningKeys::open(dir)
        } else {
            Ok(keys)
        }
    }

    /// Adds a key of `alg` that signs from `now + publish_lead` and sets every earlier
    /// key of `alg` that is not retired by then to retire at that instant. With no key of
    /// `alg` active or pending, nothing could sign that `alg` before, so the new key
    /// signs at once. Makes `dir` (0700) if missing.
    pub fn rotate(
        dir: &Path,
        alg: Alg,
        now: DateTime<Utc>,
        publish_lead: Duration,
    ) -> Result<Rotation, KeyError> {
        make_dir(dir)?;
        let keys = SigningKeys::open(dir)?;
        let lead = chrono::Duration::from_std(publish_lead).map_err(|_| KeyError::Dir {
            dir: dir.to_path_buf(),
            reason: "publish lead is too long".into(),
        })?;
        let signs_from = if keys.has_current(alg, now) {
            now + lead
        } else {
            now
        };
        let new = add_key(dir, alg, now, signs_from)?;
        let mut retiring = Vec::new();
        for old in keys.keys.iter().filter(|k| k.alg == alg) {
            if old.retired_at.is_some_and(|r| r <= signs_from) {
                continue;
            }
            let mut meta = Meta::of(old);
            meta.retired_at = Some(time_text(signs_from));
            write_meta(dir, &meta, true)?;
            retiring.push((old.kid.clone(), signs_from));
        }
        tracing::info!(kid = %new.kid, %alg, signs_from = %time_text(signs_from),
            retiring = retiring.len(), "rotated the token signing key");
        Ok(Rotation {
            kid: new.kid,
            alg,
            signs_from,
            retiring,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every key, ordered by `signs_from`.
    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    pub fn get(&self, kid: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// The key that signs `alg` tokens at `now`: the newest whose `signs_from <= now` and
    /// that is not retired at `now`.
    pub fn signer(&self, alg: Alg, now: DateTime<Utc>) -> Result<&SigningKey, KeyError> {
        self.keys
            .iter()
            .rev()
            .find(|k| k.alg == alg && k.state(now) == KeyState::Active)
            .ok_or_else(|| KeyError::NoSigner {
                alg,
                at: time_text(now),
            })
    }

    /// `{"keys": [...]}`: every key (active, pending, retired) as a public JWK.
    pub fn jwks(&self) -> Value {
        Value::Object(Map::from_iter([(
            "keys".to_owned(),
            Value::Array(self.keys.iter().map(SigningKey::public_jwk).collect()),
        )]))
    }

    /// Whether some key of `alg` signs now or will sign later.
    fn has_current(&self, alg: Alg, now: DateTime<Utc>) -> bool {
        self.keys
            .iter()
            .any(|k| k.alg == alg && k.state(now) != KeyState::Retired)
    }
}

/// The key directory to use for `database`, given `configured` (`--signing-keys` /
/// `VIDNE_SIGNING_KEYS`): required with PostgreSQL; on SQLite `<database file>.keys/`
/// next to the database by default.
pub fn resolve_key_dir(
    database: &DatabaseUrl,
    configured: Option<PathBuf>,
) -> anyhow::Result<PathBuf> {
    if let Some(dir) = configured {
        return Ok(dir);
    }
    match database {
        DatabaseUrl::Postgres(_) => Err(anyhow::anyhow!(
            "--signing-keys (or VIDNE_SIGNING_KEYS) is required with PostgreSQL: token \
             signing keys are kept in a directory outside the database"
        )),
        DatabaseUrl::Sqlite(db) => {
            let mut name = db.as_os_str().to_owned();
            name.push(".keys");
            Ok(PathBuf::from(name))
        }
    }
}

/// Parses a duration such as `24h`, `90m`, `30s`, `7d`, `1h30m` or `0s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 24h, 90m, 30s, 7d or 0s");
    let mut total: u64 = 0;
    let mut digits = String::new();
    if s.is_empty() {
        return Err(bad());
    }
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

fn load(json_path: &Path) -> Result<SigningKey, KeyError> {
    let file_err = |reason: String| KeyError::File {
        path: json_path.to_path_buf(),
        reason,
    };
    check_private(json_path, 0o600)?;
    let text = std::fs::read_to_string(json_path).map_err(io("read", json_path))?;
    let meta: Meta = serde_json::from_str(&text).map_err(|e| file_err(e.to_string()))?;
    let alg: Alg = meta.alg.parse().map_err(file_err)?;
    let pem_path = json_path.with_extension("pem");
    check_private(&pem_path, 0o600).map_err(|e| match e {
        KeyError::Io { source, .. } if source.kind() == ErrorKind::NotFound => {
            file_err(format!("its private key {} is missing", pem_path.display()))
        }
        e => e,
    })?;
    let pem = Zeroizing::new(std::fs::read_to_string(&pem_path).map_err(io("read", &pem_path))?);
    let created_at = parse_time(&meta.created_at).map_err(file_err)?;
    let mut key = SigningKey::from_pem(alg, &pem, created_at).map_err(|reason| KeyError::File {
        path: pem_path.clone(),
        reason,
    })?;
    if key.kid != meta.kid || json_path.file_stem().and_then(|s| s.to_str()) != Some(&key.kid) {
        return Err(file_err(format!(
            "names kid {:?}, but its private key's thumbprint is {:?}",
            meta.kid, key.kid
        )));
    }
    key.signs_from = parse_time(&meta.signs_from).map_err(file_err)?;
    key.retired_at = meta
        .retired_at
        .as_deref()
        .map(parse_time)
        .transpose()
        .map_err(file_err)?;
    Ok(key)
}

/// Writes a new key's `.pem` (create-new, 0600) and then its `.json`.
fn add_key(
    dir: &Path,
    alg: Alg,
    now: DateTime<Utc>,
    signs_from: DateTime<Utc>,
) -> Result<SigningKey, KeyError> {
    let pem = generate_pem(alg).map_err(|reason| KeyError::Dir {
        dir: dir.to_path_buf(),
        reason: format!("cannot make a {alg} key: {reason}"),
    })?;
    let mut key = SigningKey::from_pem(alg, &pem, now).map_err(|reason| KeyError::Dir {
        dir: dir.to_path_buf(),
        reason: format!("cannot read back a new {alg} key: {reason}"),
    })?;
    key.signs_from = signs_from;
    let pem_path = dir.join(format!("{}.pem", key.kid));
    write_private(&pem_path, pem.as_bytes(), false)?;
    write_meta(dir, &Meta::of(&key), false)?;
    Ok(key)
}

fn write_meta(dir: &Path, meta: &Meta, replace: bool) -> Result<(), KeyError> {
    let path = dir.join(format!("{}.json", meta.kid));
    let mut text = serde_json::to_string_pretty(meta).expect("metadata serializes");
    text.push('\n');
    write_private(&path, text.as_bytes(), replace)
}

/// Writes `bytes` to `path` with mode 0600: as a new file, or replacing it atomically
/// (through a temporary file renamed over it), and syncs the file and directory.
fn write_private(path: &Path, bytes: &[u8], replace: bool) -> Result<(), KeyError> {
    let target = if replace {
        path.with_extension("tmp")
    } else {
        path.to_path_buf()
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(&target).map_err(io("create", &target))?;
    f.write_all(bytes).map_err(io("write", &target))?;
    f.sync_all().map_err(io("sync", &target))?;
    drop(f);
    if replace {
        std::fs::rename(&target, path).map_err(io("replace", path))?;
    }
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn make_dir(dir: &Path) -> Result<(), KeyError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io("make the directory", dir))
}

/// Refuses `path` if group or others have any access to it (as ssh does for its keys).
fn check_private(path: &Path, want: u32) -> Result<(), KeyError> {
    let meta = std::fs::metadata(path).map_err(io("read", path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
                want,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (meta, want);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 9, 30, 0).unwrap()
    }

    fn hours(h: u64) -> Duration {
        Duration::from_secs(h * 3600)
    }

    fn at(h: i64) -> DateTime<Utc> {
        t0() + chrono::Duration::hours(h)
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn rfc8037_ed25519_thumbprint() {
        // RFC 8037 appendix A.3.
        let jwk = serde_json::json!({"crv": "Ed25519", "kty": "OKP",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        assert_eq!(
            thumbprint(jwk.as_object().unwrap()),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn first_start_makes_one_active_key_per_alg_in_private_files() {
        // Given no directory
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        // When the service starts
        let keys = SigningKeys::ensure(&dir, t0()).unwrap();
        // Then each alg has a key that signs at once, in 0600 files in a 0700 directory
        assert_eq!(keys.keys().len(), 2);
        for alg in Alg::ALL {
            let k = keys.signer(alg, t0()).unwrap();
            assert_eq!((k.alg(), k.signs_from(), k.retired_at()), (alg, t0(), None));
            assert_eq!(mode(&dir.join(format!("{}.pem", k.kid()))), 0o600);
            assert_eq!(mode(&dir.join(format!("{}.json", k.kid()))), 0o600);
        }
        assert_eq!(mode(&dir), 0o700);
        // And a second start makes nothing new
        let again = SigningKeys::ensure(&dir, at(1)).unwrap();
        let kids = |k: &SigningKeys| {
            k.keys()
                .iter()
                .map(|k| k.kid().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(kids(&again), kids(&keys));
    }

    #[test]
    fn rotation_publishes_first_then_signs_and_retires_the_old_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let old = SigningKeys::ensure(&dir, t0())
            .unwrap()
            .signer(Alg::EdDSA, t0())
            .unwrap()
            .kid()
            .to_owned();
        // When the EdDSA key is rotated with a 24h lead
        let r = SigningKeys::rotate(&dir, Alg::EdDSA, at(1), hours(24)).unwrap();
        assert_eq!(r.signs_from, at(25));
        assert_eq!(r.retiring, vec![(old.clone(), at(25))]);
        let keys = SigningKeys::open(&dir).unwrap();
        // Then the new key is published at once but the old one still signs until then
        let jwks = keys.jwks();
        let published: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert!(published.contains(&r.kid.as_str()) && published.contains(&old.as_str()));
        assert_eq!(keys.get(&r.kid).unwrap().state(at(2)), KeyState::Pending);
        assert_eq!(keys.signer(Alg::EdDSA, at(2)).unwrap().kid(), old);
        assert_eq!(
            keys.signer(Alg::EdDSA, at(25) - chrono::Duration::microseconds(1))
                .unwrap()
                .kid(),
            old
        );
        // And from signs_from the new one signs, the old is retired yet still published
        assert_eq!(keys.signer(Alg::EdDSA, at(25)).unwrap().kid(), r.kid);
        assert_eq!(keys.get(&old).unwrap().state(at(25)), KeyState::Retired);
        // And ES256 is untouched
        assert!(keys.signer(Alg::ES256, at(100)).is_ok());
    }

    #[test]
    fn a_second_rotation_within_the_lead_retires_the_pending_key_too() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        SigningKeys::ensure(&dir, t0()).unwrap();
        let first = SigningKeys::rotate(&dir, Alg::ES256, at(1), hours(24)).unwrap();
        let second = SigningKeys::rotate(&dir, Alg::ES256, at(2), hours(24)).unwrap();
        // The original key keeps its earlier retirement, the pending one retires later
        assert_eq!(second.retiring, vec![(first.kid.clone(), at(26))]);
        let keys = SigningKeys::open(&dir).unwrap();
        assert_eq!(keys.signer(Alg::ES256, at(25)).unwrap().kid(), first.kid);
        assert_eq!(keys.signer(Alg::ES256, at(26)).unwrap().kid(), second.kid);
        assert_eq!(keys.keys().len(), 4);
    }

    #[test]
    fn rotation_with_no_lead_or_no_key_signs_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("new");
        // No key at all yet: the new one signs at once whatever the lead
        let r = SigningKeys::rotate(&dir, Alg::ES256, t0(), hours(24)).unwrap();
        assert_eq!((r.signs_from, r.retiring.len()), (t0(), 0));
        let r2 = SigningKeys::rotate(&dir, Alg::ES256, at(1), Duration::ZERO).unwrap();
        let keys = SigningKeys::open(&dir).unwrap();
        assert_eq!(keys.signer(Alg::ES256, at(1)).unwrap().kid(), r2.kid);
        assert!(matches!(
            keys.signer(Alg::EdDSA, at(1)),
            Err(KeyError::NoSigner { .. })
        ));
    }

    #[test]
    fn jwks_lists_public_members_only() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = SigningKeys::ensure(&tmp.path().join("k"), t0()).unwrap();
        let jwks = keys.jwks();
        for jwk in jwks["keys"].as_array().unwrap() {
            let obj = jwk.as_object().unwrap();
            assert!(!obj.contains_key("d"), "{jwk}");
            assert_eq!(jwk["use"], "sig");
            let mut thumb_members = obj.clone();
            for m in ["kid", "alg", "use"] {
                thumb_members.remove(m);
            }
            assert_eq!(jwk["kid"].as_str().unwrap(), thumbprint(&thumb_members));
            match jwk["alg"].as_str().unwrap() {
                "EdDSA" => assert_eq!(
                    (&jwk["kty"], &jwk["crv"]),
                    (&"OKP".into(), &"Ed25519".into())
                ),
                "ES256" => {
                    assert_eq!((&jwk["kty"], &jwk["crv"]), (&"EC".into(), &"P-256".into()));
                    assert_eq!(
                        URL_SAFE_NO_PAD
                            .decode(jwk["y"].as_str().unwrap())
                            .unwrap()
                            .len(),
                        32
                    );
                }
                other => panic!("unexpected alg {other}"),
            }
        }
    }

    #[test]
    fn open_refuses_files_others_can_read() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("k");
        let keys = SigningKeys::ensure(&dir, t0()).unwrap();
        let pem = dir.join(format!("{}.pem", keys.keys()[0].kid()));
        std::fs::set_permissions(&pem, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SigningKeys::open(&dir).unwrap_err().to_string();
        assert!(
            err.contains("mode 644") && err.contains("chmod 600"),
            "{err}"
        );
        std::fs::set_permissions(&pem, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = SigningKeys::open(&dir).unwrap_err().to_string();
        assert!(
            err.contains("mode 755") && err.contains("chmod 700"),
            "{err}"
        );
    }

    #[test]
    fn open_refuses_metadata_that_names_another_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("k");
        let keys = SigningKeys::ensure(&dir, t0()).unwrap();
        let (a, b) = (&keys.keys()[0], &keys.keys()[1]);
        // The EdDSA key's private key swapped for the ES256 one's
        let pem_b = std::fs::read(dir.join(format!("{}.pem", b.kid()))).unwrap();
        let pem_a = dir.join(format!("{}.pem", a.kid()));
        std::fs::write(&pem_a, pem_b).unwrap();
        let err = SigningKeys::open(&dir).unwrap_err().to_string();
        assert!(err.contains(a.kid()), "{err}");
        // A missing private key is named as such
        std::fs::remove_file(&pem_a).unwrap();
        let err = SigningKeys::open(&dir).unwrap_err().to_string();
        assert!(err.contains("is missing"), "{err}");
    }

    #[test]
    fn ensure_refuses_an_existing_directory_others_can_read() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = SigningKeys::ensure(tmp.path(), t0())
            .unwrap_err()
            .to_string();
        assert!(err.contains("chmod 700"), "{err}");
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            0,
            "nothing written"
        );
    }

    #[test]
    fn key_files_load_in_openssl() {
        // Given keys written by the store, when OpenSSL (through josekit) reads them,
        // then they load and sign
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("k");
        let keys = SigningKeys::ensure(&dir, t0()).unwrap();
        for key in keys.keys() {
            let pem = std::fs::read(dir.join(format!("{}.pem", key.kid()))).unwrap();
            match key.alg() {
                Alg::EdDSA => assert!(josekit::jws::EdDSA.signer_from_pem(&pem).is_ok()),
                Alg::ES256 => assert!(josekit::jws::ES256.signer_from_pem(&pem).is_ok()),
            }
        }
    }

    #[test]
    fn open_names_a_missing_directory() {
        let err = SigningKeys::open(Path::new("/nonexistent/vidne-keys"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn debug_output_holds_no_key_material() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("k");
        let keys = SigningKeys::ensure(&dir, t0()).unwrap();
        for key in keys.keys() {
            let pem = std::fs::read_to_string(dir.join(format!("{}.pem", key.kid()))).unwrap();
            let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            let debug = format!("{keys:?} {key:?}");
            assert!(debug.contains("[redacted]") && debug.contains(key.kid()));
            assert!(!debug.contains(&body[..20]), "{debug}");
            assert!(!debug.contains("content"), "{debug}");
        }
    }

    #[test]
    fn key_dir_defaults_next_to_sqlite_and_is_required_on_postgres() {
        let sqlite: DatabaseUrl = "sqlite:///var/lib/vidne/vidne.db".parse().unwrap();
        assert_eq!(
            resolve_key_dir(&sqlite, None).unwrap(),
            PathBuf::from("/var/lib/vidne/vidne.db.keys")
        );
        let pg: DatabaseUrl = "postgres://postgres@127.0.0.1/vidne".parse().unwrap();
        let err = resolve_key_dir(&pg, None).unwrap_err().to_string();
        assert!(err.contains("VIDNE_SIGNING_KEYS"), "{err}");
        assert_eq!(
            resolve_key_dir(&pg, Some("/etc/vidne/keys".into())).unwrap(),
            PathBuf::from("/etc/vidne/keys")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h").unwrap(), hours(24));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("7d").unwrap(), hours(168));
        for bad in ["", "24", "h", "1x", "-1h", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
