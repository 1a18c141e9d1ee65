//! Who may call the API: bearer keys bound to a role. Pure types; the SQL is in
//! [`store`], the HTTP extractor in `http::auth`.
//!
//! A key is `vk_` and 43 base64url characters (32 random bytes). Only its SHA-256 is
//! stored: the key is high-entropy, so a slow password hash would add nothing, and the
//! table alone lets nobody call the API.

pub mod store;

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand_core::{OsRng, RngCore};
use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::domain::values::ClientId;
use crate::record::{Actor, FieldError};

/// What a key may do. Every route names the roles it accepts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Keys and client registration.
    Admin,
    /// The broker itself: records logins, signings and every other flow.
    Broker,
    /// Reads and verifies history.
    Auditor,
    /// One SP: fetches its own tokens and sees only its own records.
    Sp(ClientId),
}

impl Role {
    pub fn parse(s: &str) -> Result<Role, FieldError> {
        match s {
            "admin" => Ok(Role::Admin),
            "broker" => Ok(Role::Broker),
            "auditor" => Ok(Role::Auditor),
            _ => match s.strip_prefix("sp:") {
                Some(client) => ClientId::parse(client)
                    .map(Role::Sp)
                    .map_err(|e| FieldError::new("role", format!("sp:<client_id>: {}", e.reason))),
                None => Err(FieldError::new(
                    "role",
                    "must be admin, broker, auditor or sp:<client_id>",
                )),
            },
        }
    }

    /// The ledger actor for appends made with a key of this role and name.
    pub fn actor_kind(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Broker => "broker",
            Role::Auditor => "auditor",
            Role::Sp(_) => "sp",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Sp(client) => write!(f, "sp:{client}"),
            other => f.write_str(other.actor_kind()),
        }
    }
}

impl Serialize for Role {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A key in clear: shown once, when it is created, and never stored or logged.
pub struct ApiKey(String);

const KEY_PREFIX: &str = "vk_";

impl ApiKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> ApiKey {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        ApiKey(format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// A key presented by a caller. Only the shape is checked here; whether it exists is
    /// the store's question.
    pub fn parse(s: &str) -> Option<ApiKey> {
        let body = s.strip_prefix(KEY_PREFIX)?;
        (body.len() == 43 && URL_SAFE_NO_PAD.decode(body).is_ok_and(|b| b.len() == 32))
            .then(|| ApiKey(s.to_owned()))
    }

    pub fn hash(&self) -> KeyHash {
        KeyHash(Sha256::digest(self.0.as_bytes()).into())
    }

    /// The key itself, for the one place that shows it to its owner.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// SHA-256 of a key: what the store holds and looks keys up by.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyHash(pub(crate) [u8; 32]);

/// The caller behind a request, once its key is found and not revoked.
#[derive(Clone, Debug)]
pub struct Principal {
    pub key_id: String,
    pub name: String,
    pub role: Role,
}

impl Principal {
    /// The ledger `actor` of what this caller appends: its role's kind and its key id,
    /// e.g. `admin:key_3f9a…`.
    pub fn actor(&self) -> Result<Actor, FieldError> {
        Actor::parse(format!("{}:{}", self.role.actor_kind(), self.key_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_print_back() {
        for s in ["admin", "broker", "auditor", "sp:sp-acme.prod"] {
            assert_eq!(Role::parse(s).unwrap().to_string(), s);
        }
        for bad in ["", "root", "sp:", "sp:a b", "Admin"] {
            assert_eq!(Role::parse(bad).unwrap_err().field, "role", "{bad}");
        }
    }

    #[test]
    fn keys_are_random_and_parse_back() {
        let (a, b) = (ApiKey::generate(), ApiKey::generate());
        assert_ne!(a.reveal(), b.reveal());
        let again = ApiKey::parse(a.reveal()).unwrap();
        assert!(again.hash() == a.hash());
        assert!(a.hash() != b.hash());
        assert_eq!(format!("{a:?}"), "ApiKey(<redacted>)");
        for bad in [
            "",
            "vk_",
            "vk_short",
            &a.reveal()[1..],
            &format!("{}=", a.reveal()),
        ] {
            assert!(ApiKey::parse(bad).is_none(), "{bad}");
        }
    }
}
