//! An SP client (`client:<client_id>`), registered separately in each environment
//! (seed 003: "The provisioning process is separate for each supported environment",
//! CURRENT and PROD).

use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use crate::domain::session::ClientRegistry;
use crate::domain::values::{check_note, ClientId, Environment, Timestamp, TokenSigningAlg};
use crate::domain::{domain_event, DomainError, LedgerEvent};

pub const CLIENT_ALREADY_REGISTERED: &str = "client_already_registered";

#[derive(Debug, Clone)]
pub enum ClientCommand {
    Register {
        client_id: ClientId,
        environment: Environment,
        /// The SP's display name, 1 to 200 characters.
        name: String,
        /// How its tokens are signed; `None`: EdDSA.
        token_signing_alg: Option<TokenSigningAlg>,
        /// The key its tokens are encrypted to (PEM, JWK or a JWKS URL), checked by the
        /// edge, which knows keys; `None`: tokens are signed only.
        token_encryption_key: Option<String>,
        at: Timestamp,
    },
}

/// How a client's tokens are sealed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenSettings {
    pub signing_alg: Option<TokenSigningAlg>,
    pub encryption_key: Option<String>,
}

/// The longest `token_encryption_key` (a 4096-bit RSA JWK is about 1.5 KB).
pub const ENCRYPTION_KEY_MAX: usize = 16 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRegistered {
    pub client_id: ClientId,
    pub environment: Environment,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_signing_alg: Option<TokenSigningAlg>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_encryption_key: Option<String>,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ClientEvent {
    #[serde(rename = "client.registered")]
    Registered(ClientRegistered),
}

impl LedgerEvent for ClientEvent {
    const TYPES: &'static [(&'static str, u32)] = &[("client.registered", 1)];

    fn type_name(&self) -> &'static str {
        match self {
            ClientEvent::Registered(_) => "client.registered",
        }
    }
}

domain_event!(ClientEvent);

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    environments: BTreeSet<Environment>,
}

impl Aggregate for Client {
    const TYPE: &'static str = "client";
    type Command = ClientCommand;
    type Event = ClientEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ClientCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        let ClientCommand::Register {
            client_id,
            environment,
            name,
            token_signing_alg,
            token_encryption_key,
            at,
        } = command;
        if self.environments.contains(&environment) {
            return Err(DomainError::invalid(
                "environment",
                CLIENT_ALREADY_REGISTERED,
            ));
        }
        let name = check_note("name", &name, 200)?;
        if let Some(key) = &token_encryption_key {
            if key.trim().is_empty() || key.len() > ENCRYPTION_KEY_MAX {
                return Err(DomainError::invalid(
                    "token_encryption_key",
                    "must be 1 to 16384 bytes",
                ));
            }
        }
        let event = ClientEvent::Registered(ClientRegistered {
            client_id,
            environment,
            name,
            token_signing_alg,
            token_encryption_key,
            at,
        });
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::Registered(e) => {
                self.environments.insert(e.environment);
            }
        }
    }
}

/// The edge's view of registered clients, fed with every `client.registered` event (at
/// start from the ledger, then as they are appended); the sessions' [`ClientRegistry`].
#[derive(Debug, Default)]
pub struct RegisteredClients {
    registered: RwLock<HashMap<(ClientId, Environment), TokenSettings>>,
}

impl RegisteredClients {
    pub fn record(&self, event: &ClientEvent) {
        let ClientEvent::Registered(e) = event;
        self.registered
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                (e.client_id.clone(), e.environment),
                TokenSettings {
                    signing_alg: e.token_signing_alg,
                    encryption_key: e.token_encryption_key.clone(),
                },
            );
    }

    /// How `client_id`'s tokens in `environment` are sealed, if it is registered there.
    pub fn token_settings(
        &self,
        client_id: &ClientId,
        environment: Environment,
    ) -> Option<TokenSettings> {
        self.registered
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(client_id.clone(), environment))
            .cloned()
    }
}

impl ClientRegistry for RegisteredClients {
    fn is_registered(&self, client_id: &ClientId, environment: Environment) -> bool {
        self.registered
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&(client_id.clone(), environment))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn at() -> Timestamp {
        Timestamp::from_micros(1_795_000_000_000_000).unwrap()
    }

    fn register(env: Environment, name: &str) -> ClientCommand {
        ClientCommand::Register {
            client_id: ClientId::parse("sp-acme").unwrap(),
            environment: env,
            name: name.into(),
            token_signing_alg: None,
            token_encryption_key: None,
            at: at(),
        }
    }

    fn registered(env: Environment) -> ClientEvent {
        ClientEvent::Registered(ClientRegistered {
            client_id: ClientId::parse("sp-acme").unwrap(),
            environment: env,
            name: "Acme Bank".into(),
            token_signing_alg: None,
            token_encryption_key: None,
            at: at(),
        })
    }

    #[test]
    fn a_client_is_registered_per_environment() {
        TestFramework::<Client>::with(())
            .given_no_previous_events()
            .when(register(Environment::Current, "Acme Bank"))
            .then_expect_events(vec![registered(Environment::Current)]);
        TestFramework::<Client>::with(())
            .given(vec![registered(Environment::Current)])
            .when(register(Environment::Prod, "Acme Bank"))
            .then_expect_events(vec![registered(Environment::Prod)]);
    }

    #[test]
    fn registering_twice_in_one_environment_is_refused() {
        TestFramework::<Client>::with(())
            .given(vec![registered(Environment::Prod)])
            .when(register(Environment::Prod, "Acme Bank"))
            .then_expect_error(DomainError::invalid(
                "environment",
                CLIENT_ALREADY_REGISTERED,
            ));
    }

    #[test]
    fn a_name_is_required() {
        TestFramework::<Client>::with(())
            .given_no_previous_events()
            .when(register(Environment::Prod, " "))
            .then_expect_error(DomainError::invalid(
                "name",
                "must be 1 to 200 characters without control characters",
            ));
    }

    #[test]
    fn token_settings_are_recorded_with_the_registration() {
        let mut cmd = register(Environment::Prod, "Acme Bank");
        let ClientCommand::Register {
            token_signing_alg,
            token_encryption_key,
            ..
        } = &mut cmd;
        *token_signing_alg = Some(TokenSigningAlg::Es256);
        *token_encryption_key = Some("https://sp.example/jwks.json".into());
        let ClientEvent::Registered(mut expected) = registered(Environment::Prod);
        expected.token_signing_alg = Some(TokenSigningAlg::Es256);
        expected.token_encryption_key = Some("https://sp.example/jwks.json".into());
        TestFramework::<Client>::with(())
            .given_no_previous_events()
            .when(cmd.clone())
            .then_expect_events(vec![ClientEvent::Registered(expected.clone())]);
        let view = RegisteredClients::default();
        view.record(&ClientEvent::Registered(expected));
        let settings = view
            .token_settings(&ClientId::parse("sp-acme").unwrap(), Environment::Prod)
            .unwrap();
        assert_eq!(settings.signing_alg, Some(TokenSigningAlg::Es256));
        for bad in [" ".to_string(), "k".repeat(ENCRYPTION_KEY_MAX + 1)] {
            let ClientCommand::Register {
                token_encryption_key,
                ..
            } = &mut cmd;
            *token_encryption_key = Some(bad);
            TestFramework::<Client>::with(())
                .given_no_previous_events()
                .when(cmd.clone())
                .then_expect_error(DomainError::invalid(
                    "token_encryption_key",
                    "must be 1 to 16384 bytes",
                ));
        }
    }

    #[test]
    fn the_registry_view_follows_the_events() {
        let view = RegisteredClients::default();
        let id = ClientId::parse("sp-acme").unwrap();
        assert!(!view.is_registered(&id, Environment::Current));
        view.record(&registered(Environment::Current));
        assert!(view.is_registered(&id, Environment::Current));
        assert!(!view.is_registered(&id, Environment::Prod));
    }
}
