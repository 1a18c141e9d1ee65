//! The token projection's [`Sealer`]: signs with the key directory's current key for the
//! algorithm the client's registration asks for. The keys are re-read from their
//! directory by [`KeySealer::reload`], so a rotation made by `vidne keys rotate-signing`
//! is published and, after its lead, used, without a restart.

use std::sync::{Arc, RwLock};

use chrono::Utc;
use serde_json::{Map, Value};

use super::{sign, Alg, KeyError, SigningKeys};
use crate::domain::client::RegisteredClients;
use crate::domain::values::{ClientId, Environment, TokenSigningAlg};
use crate::projection::{SealedToken, Sealer};

#[derive(Clone)]
pub struct KeySealer {
    keys: Arc<RwLock<SigningKeys>>,
    clients: Arc<RegisteredClients>,
}

impl KeySealer {
    pub fn new(keys: SigningKeys, clients: Arc<RegisteredClients>) -> KeySealer {
        KeySealer {
            keys: Arc::new(RwLock::new(keys)),
            clients,
        }
    }

    /// Re-reads the key directory; on failure the keys in use stay.
    pub fn reload(&self) -> Result<(), KeyError> {
        let dir = self.read().dir().to_path_buf();
        let fresh = SigningKeys::open(&dir)?;
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// Every key that may still verify a token, as a JWKS.
    pub fn jwks(&self) -> Value {
        self.read().jwks()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, SigningKeys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl Sealer for KeySealer {
    fn seal(
        &self,
        client_id: &ClientId,
        environment: Environment,
        claims: &Map<String, Value>,
    ) -> anyhow::Result<SealedToken> {
        let settings = self.clients.token_settings(client_id, environment);
        let alg = match settings.and_then(|s| s.signing_alg) {
            Some(TokenSigningAlg::Es256) => Alg::ES256,
            Some(TokenSigningAlg::EdDsa) | None => Alg::EdDSA,
        };
        let keys = self.read();
        let key = keys.signer(alg, Utc::now())?;
        Ok(SealedToken {
            jws: sign(claims, key)?,
            kid: key.kid().to_owned(),
            alg: alg.as_str().to_owned(),
        })
    }
}
