//! Value newtypes that parse: an instance exists only if its input was valid. Errors name
//! the field and never echo the value.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, NaiveDate};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::domain::codes;
use crate::domain::html;
use crate::domain::DomainError;
use crate::record::FieldError;
use crate::spec::time;

// ---------------------------------------------------------------------------------------
// Time

/// An instant from the edge's clock, in microseconds since the Unix epoch. Serialized in
/// the ledger's own `time` form (RFC 3339, UTC, 6 fractional digits, `Z`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Microseconds since the epoch; 1970 to 9999.
    pub fn from_micros(micros: i64) -> Result<Self, FieldError> {
        if micros < 0 || time::format_micros(micros).is_none() {
            return Err(FieldError::new("at", "out of range"));
        }
        Ok(Timestamp(micros))
    }

    /// Any RFC 3339 date-time with an offset (`2023-02-05T00:05:00+02:00`), as an instant.
    pub fn parse(field: &str, s: &str) -> Result<Self, FieldError> {
        let t = DateTime::parse_from_rfc3339(s)
            .map_err(|_| FieldError::new(field, "must be an RFC 3339 date-time with offset"))?;
        Timestamp::from_micros(t.timestamp_micros()).map_err(|e| FieldError::new(field, e.reason))
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    /// This instant plus `micros` (saturating).
    pub fn plus_micros(self, micros: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(micros))
    }

    pub fn to_rfc3339(self) -> String {
        time::format_micros(self.0).expect("checked when made")
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        time::parse_micros(&s)
            .and_then(|m| Timestamp::from_micros(m).ok())
            .ok_or_else(|| serde::de::Error::custom("not a time in the ledger's RFC 3339 form"))
    }
}

// ---------------------------------------------------------------------------------------
// Enumerations

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident, $field:literal, { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn parse(s: &str) -> Result<Self, FieldError> {
                Self::parse_as($field, s)
            }

            /// Parses a member of another name (`ial`, `aal` with [`NsisLevel`]).
            pub fn parse_as(field: &str, s: &str) -> Result<Self, FieldError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(FieldError::new(
                        field,
                        concat!("must be one of:" $(, " ", $text)+),
                    )),
                }
            }

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// The identity providers of seed 002 (MitID, MitID Erhverv, NemID, the E-Ident IdPs)
    /// and FTN (seeds 000, 001), by their `idp_values`.
    Idp, "idp", {
        Mitid = "mitid",
        MitidErhverv = "mitid_erhverv",
        Nemid = "nemid",
        BankidNo = "bankid_no",
        BankidMobileNo = "bankid_mobile_no",
        BuypassNo = "buypass_no",
        BankidSe = "bankid_se",
        Ftn = "ftn",
    }
);

string_enum!(
    /// `identity_type` of the ID token (seed 002).
    IdentityType, "identity_type", {
        Private = "private",
        Professional = "professional",
    }
);

string_enum!(
    /// The environment an SP client is provisioned in (seed 003: provisioning is separate
    /// per environment).
    Environment, "environment", {
        Current = "CURRENT",
        Prod = "PROD",
    }
);

string_enum!(
    /// An NSIS assurance level as the URI MitID and MitID Erhverv issue in `loa`, `ial`
    /// and `aal` (seed 002). Ordered Low < Substantial < High.
    NsisLevel, "loa", {
        Low = "https://data.gov.dk/concept/core/nsis/Low",
        Substantial = "https://data.gov.dk/concept/core/nsis/Substantial",
        High = "https://data.gov.dk/concept/core/nsis/High",
    }
);

/// `loa`: Level of Assurance.
pub type Loa = NsisLevel;
/// `ial`: Identity Assurance Level.
pub type Ial = NsisLevel;
/// `aal`: Authenticator Assurance Level.
pub type Aal = NsisLevel;

string_enum!(
    /// The two SSO transaction actions of seed 002 ("Transaction token MitID specific
    /// claims", `transaction_actions`).
    SsoAction, "action", {
        SsoLogin = "mitid.sso_login",
        ReuseJwt = "mitid.reuse_jwt",
    }
);

string_enum!(
    /// `transaction_text_type` (seed 002, MitID identity provider parameters).
    TransactionTextType, "transaction_text_type", {
        Text = "text",
        Html = "html",
    }
);

string_enum!(
    /// `nemid.pid_status` (seed 002, "NemID PID claim for MitID flows").
    PidStatus, "pid_status", {
        Success = "success",
        UnableToLookup = "unable_to_lookup",
    }
);

string_enum!(
    /// How a session ended. Only back-channel logout exists: MitID SSO requires it
    /// (seed 002, "MitID SSO logout").
    LogoutChannel, "channel", {
        BackChannel = "back_channel",
    }
);

string_enum!(
    /// How a client's transaction tokens are signed: EdDSA (Ed25519) unless its
    /// registration asks for ES256.
    TokenSigningAlg, "token_signing_alg", {
        EdDsa = "EdDSA",
        Es256 = "ES256",
    }
);
string_enum!(
    /// `error` of every flow error in the seed's tables.
    ErrorKind, "error", {
        AccessDenied = "access_denied",
    }
);

string_enum!(
    /// Why an exchange of a controlled transfer code was refused: the seed's codes for an
    /// unknown or expired code and for a used one, and Vidne's for another text.
    ExchangeRefusal, "error_description", {
        InvalidCode = "mitid_invalid_transfer_token_code",
        AlreadyUsed = "mitid_transfer_token_exchange_code_already_used",
        TextMismatch = "transfer_token_text_mismatch",
    }
);

string_enum!(
    /// `error_description` of a refused 4th (or later) CPR match of a session (seed 002).
    CprRefusalCode, "error_description", {
        MitidCprMatchFailed = "mitid_cpr_match_failed",
    }
);

// ---------------------------------------------------------------------------------------
// Identifiers

/// 1 to `max` characters of `A-Z a-z 0-9 . _ ~ : @ + -`: fits a ledger stream id
/// (`<kind>:<id>`) and an API key role (`sp:<client_id>`).
fn check_id(field: &str, s: &str, max: usize) -> Result<(), FieldError> {
    let ok = !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~:@+-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("must be 1 to {max} characters of A-Z, a-z, 0-9 and ._~:@+-"),
        ))
    }
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const MAX: usize = 100;

            pub fn parse(s: impl Into<String>) -> Result<Self, FieldError> {
                let s = s.into();
                check_id($field, &s, Self::MAX)?;
                Ok($name(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = FieldError;
            fn try_from(s: String) -> Result<Self, FieldError> {
                $name::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

identifier!(
    /// An SP's OIDC `client_id`.
    ClientId,
    "client_id"
);
identifier!(
    /// A broker session: the aggregate id of `session:<id>`.
    SessionId,
    "session_id"
);
identifier!(
    /// One authentication request of an SP (`transaction_id`, seed 002).
    TransactionId,
    "transaction_id"
);
identifier!(
    /// A MitID Controlled Transfer Token Exchange Code (seed 002, e.g.
    /// `38e195d6-14ad-4ed9-9f0b-d72a26c8ed95`).
    TransferCode,
    "code"
);
identifier!(
    /// A maintenance window's id.
    WindowId,
    "window_id"
);

/// An identifier issued by someone else (MitID Broker ids, IdP subject claims): 1 to 200
/// printable ASCII characters, no spaces.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ExternalId(String);

impl ExternalId {
    pub fn parse(field: &str, s: &str) -> Result<Self, FieldError> {
        if s.is_empty() || s.len() > 200 || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(FieldError::new(
                field,
                "must be 1 to 200 printable ASCII characters without spaces",
            ));
        }
        Ok(ExternalId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ExternalId {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, FieldError> {
        ExternalId::parse("id", &s)
    }
}

impl From<ExternalId> for String {
    fn from(v: ExternalId) -> String {
        v.0
    }
}

// ---------------------------------------------------------------------------------------
// CPR (SPEC section 6)

/// A CPR number as the edge received it, not yet parsed. Its `Debug` never shows it.
#[derive(Clone)]
pub struct CprInput(String);

impl CprInput {
    pub fn new(s: impl Into<String>) -> Self {
        CprInput(s.into())
    }

    pub fn parse(&self) -> Result<Cpr, FieldError> {
        Cpr::parse(&self.0)
    }
}

impl fmt::Debug for CprInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CprInput(<redacted>)")
    }
}

/// A Danish CPR number: `DDMMYY-SSSS` or `DDMMYYSSSS`, a real date whose century the 7th
/// digit gives. Never refused for failing the modulus 11 check: numbers without it have
/// been issued since 2007. Has no `Display` and no `Serialize`; its `Debug` is redacted.
/// Leaves the domain only as a [`CprRef`].
#[derive(Clone, PartialEq, Eq)]
pub struct Cpr([u8; 10]);

impl Cpr {
    pub fn parse(s: &str) -> Result<Cpr, FieldError> {
        let b = s.as_bytes();
        let mut digits = [0u8; 10];
        match b.len() {
            10 => digits.copy_from_slice(b),
            11 if b[6] == b'-' => {
                digits[..6].copy_from_slice(&b[..6]);
                digits[6..].copy_from_slice(&b[7..]);
            }
            _ => {
                return Err(FieldError::new(
                    "cpr",
                    "must be 10 digits, optionally with a hyphen after the 6th",
                ))
            }
        }
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(FieldError::new(
                "cpr",
                "must be 10 digits, optionally with a hyphen after the 6th",
            ));
        }
        let n = |i: usize| u32::from(digits[i] - b'0');
        let (day, month, yy, d7) = (n(0) * 10 + n(1), n(2) * 10 + n(3), n(4) * 10 + n(5), n(6));
        if Cpr::birth_date_of(day, month, yy, d7).is_none() {
            return Err(FieldError::new(
                "cpr",
                "does not start with a real birth date",
            ));
        }
        Ok(Cpr(digits))
    }

    /// The century rule (CPR-kontoret): the 7th digit and the two-digit year give the
    /// century.
    fn birth_date_of(day: u32, month: u32, yy: u32, d7: u32) -> Option<NaiveDate> {
        let century = match d7 {
            0..=3 => 1900,
            4 | 9 if yy <= 36 => 2000,
            4 | 9 => 1900,
            5..=8 if yy <= 57 => 2000,
            5..=8 => 1800,
            _ => return None,
        };
        NaiveDate::from_ymd_opt((century + yy) as i32, month, day)
    }

    /// The birth date the number encodes.
    pub fn birth_date(&self) -> NaiveDate {
        let n = |i: usize| u32::from(self.0[i] - b'0');
        Cpr::birth_date_of(n(0) * 10 + n(1), n(2) * 10 + n(3), n(4) * 10 + n(5), n(6))
            .expect("checked when parsed")
    }
}

impl fmt::Debug for Cpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cpr(<redacted>)")
    }
}

/// The deployment's secret key for identity-number references (SPEC section 6). At least
/// 16 bytes; `Debug` is redacted.
#[derive(Clone)]
pub struct Pepper(Vec<u8>);

impl Pepper {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, FieldError> {
        let bytes = bytes.into();
        if bytes.len() < 16 {
            return Err(FieldError::new("pepper", "must be at least 16 bytes"));
        }
        Ok(Pepper(bytes))
    }

    /// `HMAC-SHA256(pepper, "dk:<10 digits>")`, lowercase hex.
    pub fn cpr_ref(&self, cpr: &Cpr) -> CprRef {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"dk:");
        mac.update(&cpr.0);
        CprRef(hex::encode(mac.finalize().into_bytes()))
    }

    /// A key of its own for another use of the same secret: `HMAC-SHA256(pepper,
    /// "vidne:<purpose>")`, which no `cpr_ref` input (`dk:…`) can equal.
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"vidne:");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pepper(<redacted>)")
    }
}

/// A CPR number's reference: 64 lowercase hex digits (SPEC section 6).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CprRef(String);

impl CprRef {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CprRef {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, FieldError> {
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(CprRef(s))
        } else {
            Err(FieldError::new(
                "cpr_ref",
                "must be 64 lowercase hex digits",
            ))
        }
    }
}

impl From<CprRef> for String {
    fn from(v: CprRef) -> String {
        v.0
    }
}

// ---------------------------------------------------------------------------------------
// Subjects

/// A Norwegian BankID PID (the certificate's subject serial number). Since SEID 2.0 it is
/// presented as `UN:NO-` + the old serial number (seed 000, "Norwegian BankID SEID 2.0
/// changes"); both forms name the same person. Keeps what was presented and the
/// normalised form, which is the old form (the PID without the prefix).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NorwegianBankIdPid {
    pub presented: String,
    pub normalized: String,
}

impl NorwegianBankIdPid {
    pub const SEID2_PREFIX: &'static str = "UN:NO-";

    pub fn parse(field: &str, s: &str) -> Result<Self, FieldError> {
        ExternalId::parse(field, s)?;
        let prefixed = s.len() >= Self::SEID2_PREFIX.len()
            && s[..Self::SEID2_PREFIX.len()].eq_ignore_ascii_case(Self::SEID2_PREFIX);
        let normalized = if prefixed {
            &s[Self::SEID2_PREFIX.len()..]
        } else {
            s
        };
        if normalized.is_empty() {
            return Err(FieldError::new(field, "has nothing after UN:NO-"));
        }
        Ok(NorwegianBankIdPid {
            presented: s.to_string(),
            normalized: normalized.to_string(),
        })
    }
}

/// The subject identifiers of a login, by the seed's claim names, and `key`: the
/// normalised identifier that names the same person across logins (`<idp>:<id>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    pub claims: BTreeMap<String, String>,
    pub key: String,
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_cvr(s: &str) -> bool {
    s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit())
}

impl Subject {
    /// Checks `claims` against what the seed says `idp` issues for `identity_type`:
    /// required claims present, no others (national identity numbers such as BankID's
    /// `nnin_altsub` are never accepted here: SPEC section 6), formats where known.
    pub fn parse(
        idp: Idp,
        identity_type: IdentityType,
        claims: &BTreeMap<String, String>,
    ) -> Result<Subject, FieldError> {
        let (required, optional): (&[&str], &[&str]) = match (idp, identity_type) {
            (Idp::Mitid, _) => (&["mitid.uuid"], &[]),
            (Idp::MitidErhverv, _) => (
                &["nemlogin.persistent_professional_id", "nemlogin.cvr"],
                &["nemlogin.nemid.rid"],
            ),
            (Idp::Nemid, IdentityType::Private) => (&["nemid.pid"], &[]),
            (Idp::Nemid, IdentityType::Professional) => (&["nemid.rid", "nemid.cvr"], &[]),
            (Idp::BankidNo, _) => (&["bankid_no.pid"], &[]),
            (Idp::BankidMobileNo, _) => (&["bankid_mobile_no.pid"], &[]),
            (Idp::BuypassNo, _) => (&["buypass_no.pid"], &[]),
            (Idp::BankidSe, _) => (&["bankid_se.pid"], &[]),
            (Idp::Ftn, _) => (&["sub"], &[]),
        };
        for name in claims.keys() {
            if !required.contains(&name.as_str()) && !optional.contains(&name.as_str()) {
                return Err(FieldError::new(
                    format!("subject/{name}"),
                    "is not a subject claim of this idp and identity_type",
                ));
            }
        }
        for name in required {
            if !claims.contains_key(*name) {
                return Err(FieldError::new(format!("subject/{name}"), "is required"));
            }
        }
        for (name, value) in claims {
            ExternalId::parse(&format!("subject/{name}"), value)?;
        }
        let get = |name: &str| claims[name].as_str();
        let field = |name: &str| format!("subject/{name}");
        let key = match (idp, identity_type) {
            (Idp::Mitid, _) => {
                let uuid = get("mitid.uuid");
                if !is_uuid(uuid) {
                    return Err(FieldError::new(field("mitid.uuid"), "must be a UUID"));
                }
                format!("mitid:{}", uuid.to_ascii_lowercase())
            }
            (Idp::MitidErhverv, _) => {
                if !is_cvr(get("nemlogin.cvr")) {
                    return Err(FieldError::new(field("nemlogin.cvr"), "must be 8 digits"));
                }
                format!(
                    "mitid_erhverv:{}",
                    get("nemlogin.persistent_professional_id")
                )
            }
            (Idp::Nemid, IdentityType::Private) => format!("nemid:pid:{}", get("nemid.pid")),
            (Idp::Nemid, IdentityType::Professional) => {
                if !is_cvr(get("nemid.cvr")) {
                    return Err(FieldError::new(field("nemid.cvr"), "must be 8 digits"));
                }
                format!("nemid:cvr:{}:rid:{}", get("nemid.cvr"), get("nemid.rid"))
            }
            (Idp::BankidNo | Idp::BankidMobileNo, _) => {
                let name = format!("{idp}.pid");
                let pid = NorwegianBankIdPid::parse(&field(&name), get(&name))?;
                format!("{idp}:{}", pid.normalized)
            }
            (Idp::BuypassNo | Idp::BankidSe, _) => {
                format!("{idp}:{}", get(&format!("{idp}.pid")))
            }
            (Idp::Ftn, _) => format!("ftn:{}", get("sub")),
        };
        Ok(Subject {
            claims: claims.clone(),
            key,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Texts

/// Characters (Unicode scalar values) of a string.
fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Decodes standard base64 (with padding) to UTF-8 text.
fn base64_text(s: &str) -> Option<String> {
    let bytes = BASE64.decode(s.as_bytes()).ok()?;
    String::from_utf8(bytes).ok()
}

/// A MitID `transaction_text` (base64) with its `transaction_text_type`, checked: present,
/// base64 of UTF-8, at most [`TransactionText::MAX_BYTES`] decoded, and for `html` only the
/// seed's allowed tags with none of the disallowed expressions and attributes
/// ([`html::check`]). Keeps what was presented and the SHA-256 of the decoded text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionText {
    pub base64: String,
    pub text_type: TransactionTextType,
    /// Base64 of SHA-256 over the decoded text (`mitid.transaction_text_sha256`).
    pub sha256: String,
}

impl TransactionText {
    /// Decoded size limit, Vidne's (the seed gives none): keeps the event under the
    /// ledger's 64 KiB payload limit.
    pub const MAX_BYTES: usize = 24 * 1024;

    pub fn parse(text: Option<&str>, text_type: Option<&str>) -> Result<Self, DomainError> {
        let invalid = || {
            DomainError::access_denied(
                codes::MITID_TRANSACTION_TEXT_INVALID,
                Some("transaction_text"),
            )
        };
        let text = match text {
            Some(t) if !t.is_empty() => t,
            _ => {
                return Err(DomainError::access_denied(
                    codes::MITID_TRANSACTION_TEXT_MISSING,
                    Some("transaction_text"),
                ))
            }
        };
        let text_type = TransactionTextType::parse(text_type.unwrap_or(""))?;
        if text.len() > Self::MAX_BYTES / 3 * 4 + 4 {
            return Err(invalid());
        }
        let decoded = base64_text(text).ok_or_else(invalid)?;
        if decoded.len() > Self::MAX_BYTES {
            return Err(invalid());
        }
        if decoded.trim().is_empty() {
            return Err(DomainError::access_denied(
                codes::MITID_TRANSACTION_TEXT_MISSING,
                Some("transaction_text"),
            ));
        }
        if text_type == TransactionTextType::Html && html::check(&decoded).is_err() {
            return Err(invalid());
        }
        Ok(TransactionText {
            base64: text.to_string(),
            text_type,
            sha256: BASE64.encode(Sha256::digest(decoded.as_bytes())),
        })
    }
}

/// A MitID `reference_text`: base64 of a UTF-8 text of 1 to 130 characters (seed 002).
/// Keeps what was presented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferenceText(pub String);

impl ReferenceText {
    pub const MAX_CHARS: usize = 130;

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let text = base64_text(s)
            .ok_or_else(|| FieldError::new("reference_text", "must be base64 of UTF-8 text"))?;
        if text.is_empty() || chars(&text) > Self::MAX_CHARS {
            return Err(FieldError::new(
                "reference_text",
                "must be 1 to 130 characters once decoded",
            ));
        }
        Ok(ReferenceText(s.to_string()))
    }
}

/// A Controlled Transfer `transferTokenText`: non-empty, at most 130 characters
/// (seed 002, "Requesting a Controlled Transfer Token Exchange Code").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TransferTokenText(String);

impl TransferTokenText {
    pub const MAX_CHARS: usize = 130;

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        if s.trim().is_empty() {
            return Err(FieldError::new("transfer_token_text", "must not be empty"));
        }
        if chars(s) > Self::MAX_CHARS {
            return Err(FieldError::new(
                "transfer_token_text",
                "must be at most 130 characters",
            ));
        }
        Ok(TransferTokenText(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TransferTokenText {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, FieldError> {
        TransferTokenText::parse(&s)
    }
}

impl From<TransferTokenText> for String {
    fn from(v: TransferTokenText) -> String {
        v.0
    }
}

/// A free text of 1 to `max` characters with no control characters other than newline
/// and tab (client names, maintenance notes).
pub fn check_note(field: &str, s: &str, max: usize) -> Result<String, FieldError> {
    let ok = !s.trim().is_empty()
        && chars(s) <= max
        && s.chars().all(|c| !c.is_control() || c == '\n' || c == '\t');
    if ok {
        Ok(s.to_string())
    } else {
        Err(FieldError::new(
            field,
            format!("must be 1 to {max} characters without control characters"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b64(s: &str) -> String {
        BASE64.encode(s)
    }

    #[test]
    fn cpr_accepts_both_forms_and_applies_the_century_rule() {
        let cases = [
            ("0101001234", (1900, 1, 1)),
            ("010100-1234", (1900, 1, 1)),
            ("311236-4000", (2036, 12, 31)),
            ("311237-4000", (1937, 12, 31)),
            ("010157-5000", (2057, 1, 1)),
            ("010158-8000", (1858, 1, 1)),
            ("010136-9000", (2036, 1, 1)),
            ("010137-9000", (1937, 1, 1)),
            ("290200-4000", (2000, 2, 29)),
        ];
        for (s, (y, m, d)) in cases {
            let cpr = Cpr::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(
                cpr.birth_date(),
                NaiveDate::from_ymd_opt(y, m, d).unwrap(),
                "{s}"
            );
        }
    }

    #[test]
    fn cpr_is_never_refused_for_modulus_11() {
        // 0707614286 fails modulus 11 (weights 4,3,2,7,6,5,4,3,2,1 give 155, not a
        // multiple of 11); 0707614285 passes (154). Both are accepted.
        let weights = [4, 3, 2, 7, 6, 5, 4, 3, 2, 1];
        let sum = |s: &str| -> u32 {
            s.bytes()
                .zip(weights)
                .map(|(b, w)| u32::from(b - b'0') * w)
                .sum()
        };
        assert_ne!(sum("0707614286") % 11, 0);
        assert_eq!(sum("0707614285") % 11, 0);
        assert!(Cpr::parse("0707614286").is_ok());
        assert!(Cpr::parse("070761-4286").is_ok());
        assert!(Cpr::parse("0707614285").is_ok());
    }

    #[test]
    fn cpr_refuses_bad_shapes_and_dates_without_echoing() {
        for bad in [
            "",
            "123456789",
            "12345678901",
            "0101001-234",
            "010100 1234",
            "01010012a4",
            "3102001234", // 31 February
            "2902011234", // 1901 is no leap year
            "0013001234",
            "0001001234",
            "٠١٠١٠٠١٢٣٤",
        ] {
            let e = Cpr::parse(bad).unwrap_err();
            assert_eq!(e.field, "cpr");
            assert!(!e.reason.contains(bad) || bad.is_empty());
        }
        assert_eq!(
            format!("{:?}", Cpr::parse("0101001234").unwrap()),
            "Cpr(<redacted>)"
        );
        assert_eq!(
            format!("{:?}", CprInput::new("0101001234")),
            "CprInput(<redacted>)"
        );
        assert_eq!(
            format!("{:?}", Pepper::new([7u8; 32]).unwrap()),
            "Pepper(<redacted>)"
        );
    }

    #[test]
    fn cpr_ref_is_hmac_sha256_of_country_and_digits() {
        let pepper = Pepper::new(b"0123456789abcdef".to_vec()).unwrap();
        let a = pepper.cpr_ref(&Cpr::parse("0101001234").unwrap());
        let b = pepper.cpr_ref(&Cpr::parse("010100-1234").unwrap());
        assert_eq!(a, b, "the hyphen is not part of the digits");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"0123456789abcdef").unwrap();
        mac.update(b"dk:0101001234");
        assert_eq!(a.as_str(), hex::encode(mac.finalize().into_bytes()));
        assert_eq!(a.as_str().len(), 64);
        assert!(CprRef::try_from(a.as_str().to_uppercase()).is_err());
        assert!(Pepper::new(vec![1u8; 15]).is_err());
    }

    proptest! {
        #[test]
        fn cpr_parse_never_panics_and_accepts_every_real_date(
            s in "[0-9-]{0,12}",
            day in 1u32..=28, month in 1u32..=12, yy in 0u32..=99, seq in 0u32..=9999,
        ) {
            let _ = Cpr::parse(&s);
            let cpr = format!("{day:02}{month:02}{yy:02}{seq:04}");
            prop_assert!(Cpr::parse(&cpr).is_ok());
        }
    }

    #[test]
    fn bankid_pid_seid2_and_old_form_normalise_alike() {
        let new = NorwegianBankIdPid::parse("pid", "UN:NO-9578-5999-4-1765512").unwrap();
        let old = NorwegianBankIdPid::parse("pid", "9578-5999-4-1765512").unwrap();
        assert_eq!(new.normalized, old.normalized);
        assert_eq!(new.presented, "UN:NO-9578-5999-4-1765512");
        assert_eq!(old.presented, "9578-5999-4-1765512");
        assert!(NorwegianBankIdPid::parse("pid", "UN:NO-").is_err());
        assert!(NorwegianBankIdPid::parse("pid", "").is_err());
    }

    #[test]
    fn subjects_per_idp() {
        let claims = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let s = Subject::parse(
            Idp::Mitid,
            IdentityType::Private,
            &claims(&[("mitid.uuid", "EFC7FFB4-E086-4F5F-A1D5-B3C7227DB629")]),
        )
        .unwrap();
        assert_eq!(s.key, "mitid:efc7ffb4-e086-4f5f-a1d5-b3c7227db629");
        let e = Subject::parse(Idp::Mitid, IdentityType::Private, &claims(&[])).unwrap_err();
        assert_eq!(e.field, "subject/mitid.uuid");
        let e = Subject::parse(
            Idp::BankidNo,
            IdentityType::Private,
            &claims(&[("bankid_no.pid", "x"), ("nnin_altsub", "18126612345")]),
        )
        .unwrap_err();
        assert_eq!(e.field, "subject/nnin_altsub");
        let a = Subject::parse(
            Idp::BankidNo,
            IdentityType::Private,
            &claims(&[("bankid_no.pid", "UN:NO-9578-5999-4-1765512")]),
        )
        .unwrap();
        let b = Subject::parse(
            Idp::BankidNo,
            IdentityType::Private,
            &claims(&[("bankid_no.pid", "9578-5999-4-1765512")]),
        )
        .unwrap();
        assert_eq!(a.key, b.key);
        assert_eq!(a.claims["bankid_no.pid"], "UN:NO-9578-5999-4-1765512");
        let e = Subject::parse(
            Idp::Nemid,
            IdentityType::Professional,
            &claims(&[("nemid.rid", "12345"), ("nemid.cvr", "1234567")]),
        )
        .unwrap_err();
        assert_eq!(e.field, "subject/nemid.cvr");
    }

    #[test]
    fn transaction_text_rules() {
        let ok = TransactionText::parse(Some(&b64("Pay 100 DKK")), Some("text")).unwrap();
        assert_eq!(ok.sha256, BASE64.encode(Sha256::digest(b"Pay 100 DKK")));
        let code = |r: Result<TransactionText, DomainError>| r.unwrap_err().error_description;
        assert_eq!(
            code(TransactionText::parse(None, Some("text"))),
            "mitid_transaction_text_missing"
        );
        assert_eq!(
            code(TransactionText::parse(Some(""), Some("text"))),
            "mitid_transaction_text_missing"
        );
        assert_eq!(
            code(TransactionText::parse(Some("not base64!"), Some("text"))),
            "mitid_transaction_text_invalid"
        );
        assert_eq!(
            code(TransactionText::parse(
                Some(&BASE64.encode([0xff, 0xfe])),
                Some("text")
            )),
            "mitid_transaction_text_invalid"
        );
        let e = TransactionText::parse(Some(&b64("x")), Some("pdf")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("transaction_text_type"));
        assert_eq!(
            code(TransactionText::parse(
                Some(&b64("<script>x</script>")),
                Some("html")
            )),
            "mitid_transaction_text_invalid"
        );
        // The same bytes as text are shown as-is, not rendered: accepted.
        assert!(TransactionText::parse(Some(&b64("<script>x</script>")), Some("text")).is_ok());
        let big = "a".repeat(TransactionText::MAX_BYTES + 1);
        assert_eq!(
            code(TransactionText::parse(Some(&b64(&big)), Some("text"))),
            "mitid_transaction_text_invalid"
        );
    }

    #[test]
    fn reference_and_transfer_texts_count_characters() {
        assert!(ReferenceText::parse(&b64(&"æ".repeat(130))).is_ok());
        assert_eq!(
            ReferenceText::parse(&b64(&"æ".repeat(131)))
                .unwrap_err()
                .field,
            "reference_text"
        );
        assert!(ReferenceText::parse("***").is_err());
        assert!(TransferTokenText::parse(&"ø".repeat(130)).is_ok());
        assert!(TransferTokenText::parse(&"ø".repeat(131)).is_err());
        assert!(TransferTokenText::parse("").is_err());
        assert!(TransferTokenText::parse("  ").is_err());
    }

    #[test]
    fn identifiers_and_times() {
        assert!(ClientId::parse("sp-acme.prod").is_ok());
        assert_eq!(ClientId::parse("a b").unwrap_err().field, "client_id");
        assert!(TransactionId::parse("x".repeat(101)).is_err());
        let t = Timestamp::parse("at", "2023-02-05T00:05:00+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2023-02-04T22:05:00.000000Z");
        assert!(Timestamp::parse("from", "2023-02-05 00:05").is_err());
        let back: Timestamp = serde_json::from_str("\"2023-02-04T22:05:00.000000Z\"").unwrap();
        assert_eq!(back, t);
        assert!(serde_json::from_str::<Timestamp>("\"2023-02-04T22:05:00Z\"").is_err());
        assert_eq!(
            serde_json::to_string(&NsisLevel::Substantial).unwrap(),
            "\"https://data.gov.dk/concept/core/nsis/Substantial\""
        );
        assert!(
            NsisLevel::Low < NsisLevel::Substantial && NsisLevel::Substantial < NsisLevel::High
        );
        assert_eq!(Environment::parse("PROD").unwrap(), Environment::Prod);
        assert!(Environment::parse("prod").is_err());
        assert_eq!(NsisLevel::parse_as("ial", "High").unwrap_err().field, "ial");
        assert_eq!(Idp::ALL.len(), 8);
    }
}
