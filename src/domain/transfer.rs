//! A MitID Controlled Transfer Token Exchange Code (`transfer:<code>`), seed 002 "MitID
//! Controlled Transfer": issued once from a MitID transaction of SP A (recorded in that
//! session too, as `session.transfer_code_issued`), exchanged at most once, with the same
//! Transfer Token Text, before it expires. A refused exchange is recorded too
//! (`transfer.exchange_refused`) and answered with its error.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use crate::domain::codes;
use crate::domain::session::TransferTarget;
use crate::domain::values::{
    ClientId, Environment, ExchangeRefusal, ExternalId, SessionId, Timestamp, TransactionId,
    TransferCode, TransferTokenText,
};
use crate::domain::{domain_event, DomainError, LedgerEvent};

pub const TRANSFER_CODE_EXISTS: &str = "transfer_code_exists";
pub const TRANSFER_TOKEN_TEXT_MISMATCH: &str = "transfer_token_text_mismatch";

#[derive(Debug, Clone)]
pub enum TransferCommand {
    /// Broker A issued the code to SP A (`client_id`) from `session_id`/`transaction_id`.
    Issue {
        code: TransferCode,
        session_id: SessionId,
        transaction_id: TransactionId,
        client_id: ClientId,
        environment: Environment,
        target_broker_id: String,
        target_service_provider_id: String,
        transfer_token_text: String,
        expires_at: Timestamp,
        at: Timestamp,
    },
    /// SP B (`client_id`) exchanged the code, with the text SP A handed it, for a MitID
    /// login in its own transaction.
    Exchange {
        code: TransferCode,
        transfer_token_text: String,
        client_id: ClientId,
        session_id: SessionId,
        transaction_id: TransactionId,
        at: Timestamp,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeIssued {
    pub code: TransferCode,
    pub session_id: SessionId,
    pub transaction_id: TransactionId,
    pub client_id: ClientId,
    pub environment: Environment,
    pub target_broker_id: ExternalId,
    pub target_service_provider_id: ExternalId,
    pub transfer_token_text: TransferTokenText,
    pub expires_at: Timestamp,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeExchanged {
    pub code: TransferCode,
    pub client_id: ClientId,
    pub session_id: SessionId,
    pub transaction_id: TransactionId,
    pub at: Timestamp,
}

/// An exchange that was refused, recorded so that refused transfers can be counted and
/// traced to the SP that tried (issue 6's compliance reports).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeRefused {
    pub code: TransferCode,
    pub client_id: ClientId,
    pub session_id: SessionId,
    pub transaction_id: TransactionId,
    pub error_description: ExchangeRefusal,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum TransferEvent {
    #[serde(rename = "transfer.code_issued")]
    CodeIssued(CodeIssued),
    #[serde(rename = "transfer.code_exchanged")]
    CodeExchanged(CodeExchanged),
    #[serde(rename = "transfer.exchange_refused")]
    ExchangeRefused(ExchangeRefused),
}

impl LedgerEvent for TransferEvent {
    const TYPES: &'static [(&'static str, u32)] = &[
        ("transfer.code_issued", 1),
        ("transfer.code_exchanged", 1),
        ("transfer.exchange_refused", 1),
    ];

    fn type_name(&self) -> &'static str {
        match self {
            TransferEvent::CodeIssued(_) => "transfer.code_issued",
            TransferEvent::CodeExchanged(_) => "transfer.code_exchanged",
            TransferEvent::ExchangeRefused(_) => "transfer.exchange_refused",
        }
    }

    /// A refused exchange is recorded and answered with its code; `field` is `code`, or
    /// `transfer_token_text` for another text.
    fn refusal(&self) -> Option<DomainError> {
        let TransferEvent::ExchangeRefused(e) = self else {
            return None;
        };
        Some(match e.error_description {
            ExchangeRefusal::InvalidCode => {
                DomainError::access_denied(codes::MITID_INVALID_TRANSFER_TOKEN_CODE, Some("code"))
            }
            ExchangeRefusal::AlreadyUsed => DomainError::access_denied(
                codes::MITID_TRANSFER_TOKEN_EXCHANGE_CODE_ALREADY_USED,
                Some("code"),
            ),
            ExchangeRefusal::TextMismatch => {
                DomainError::invalid("transfer_token_text", TRANSFER_TOKEN_TEXT_MISMATCH)
            }
        })
    }
}

domain_event!(TransferEvent);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Issued {
    text: TransferTokenText,
    expires_at: Timestamp,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlledTransfer {
    issued: Option<Issued>,
    exchanged: bool,
}

impl ControlledTransfer {
    fn decide(&self, command: TransferCommand) -> Result<TransferEvent, DomainError> {
        match command {
            TransferCommand::Issue {
                code,
                session_id,
                transaction_id,
                client_id,
                environment,
                target_broker_id,
                target_service_provider_id,
                transfer_token_text,
                expires_at,
                at,
            } => {
                if self.issued.is_some() {
                    return Err(DomainError::invalid("code", TRANSFER_CODE_EXISTS));
                }
                let target = TransferTarget::parse(
                    &target_broker_id,
                    &target_service_provider_id,
                    &transfer_token_text,
                )?;
                if expires_at <= at {
                    return Err(DomainError::invalid("expires_at", "must be after at"));
                }
                Ok(TransferEvent::CodeIssued(CodeIssued {
                    code,
                    session_id,
                    transaction_id,
                    client_id,
                    environment,
                    target_broker_id: target.broker_id,
                    target_service_provider_id: target.service_provider_id,
                    transfer_token_text: target.text,
                    expires_at,
                    at,
                }))
            }
            TransferCommand::Exchange {
                code,
                transfer_token_text,
                client_id,
                session_id,
                transaction_id,
                at,
            } => {
                let text = TransferTokenText::parse(&transfer_token_text)?;
                let refusal = match &self.issued {
                    None => Some(ExchangeRefusal::InvalidCode),
                    Some(_) if self.exchanged => Some(ExchangeRefusal::AlreadyUsed),
                    Some(issued) if at > issued.expires_at => Some(ExchangeRefusal::InvalidCode),
                    Some(issued) if text != issued.text => Some(ExchangeRefusal::TextMismatch),
                    Some(_) => None,
                };
                if let Some(error_description) = refusal {
                    return Ok(TransferEvent::ExchangeRefused(ExchangeRefused {
                        code,
                        client_id,
                        session_id,
                        transaction_id,
                        error_description,
                        at,
                    }));
                }
                Ok(TransferEvent::CodeExchanged(CodeExchanged {
                    code,
                    client_id,
                    session_id,
                    transaction_id,
                    at,
                }))
            }
        }
    }
}

impl Aggregate for ControlledTransfer {
    const TYPE: &'static str = "transfer";
    type Command = TransferCommand;
    type Event = TransferEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: TransferCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        let event = self.decide(command)?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: TransferEvent) {
        match event {
            TransferEvent::CodeIssued(e) => {
                self.issued = Some(Issued {
                    text: e.transfer_token_text,
                    expires_at: e.expires_at,
                })
            }
            TransferEvent::CodeExchanged(_) => self.exchanged = true,
            TransferEvent::ExchangeRefused(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn t(minutes: i64) -> Timestamp {
        Timestamp::from_micros(1_795_000_000_000_000 + minutes * 60_000_000).unwrap()
    }

    fn code() -> TransferCode {
        TransferCode::parse("38e195d6-14ad-4ed9-9f0b-d72a26c8ed95").unwrap()
    }

    fn issue(text: &str, broker: &str, sp: &str) -> TransferCommand {
        TransferCommand::Issue {
            code: code(),
            session_id: SessionId::parse("s-a").unwrap(),
            transaction_id: TransactionId::parse("tx-a1").unwrap(),
            client_id: ClientId::parse("sp-a").unwrap(),
            environment: Environment::Prod,
            target_broker_id: broker.into(),
            target_service_provider_id: sp.into(),
            transfer_token_text: text.into(),
            expires_at: t(5),
            at: t(0),
        }
    }

    fn issued() -> TransferEvent {
        TransferEvent::CodeIssued(CodeIssued {
            code: code(),
            session_id: SessionId::parse("s-a").unwrap(),
            transaction_id: TransactionId::parse("tx-a1").unwrap(),
            client_id: ClientId::parse("sp-a").unwrap(),
            environment: Environment::Prod,
            target_broker_id: ExternalId::parse("b", "broker-b").unwrap(),
            target_service_provider_id: ExternalId::parse("s", "sp-b-mitid").unwrap(),
            transfer_token_text: TransferTokenText::parse("Welcome from A").unwrap(),
            expires_at: t(5),
            at: t(0),
        })
    }

    fn exchange(text: &str, at: Timestamp) -> TransferCommand {
        TransferCommand::Exchange {
            code: code(),
            transfer_token_text: text.into(),
            client_id: ClientId::parse("sp-b").unwrap(),
            session_id: SessionId::parse("s-b").unwrap(),
            transaction_id: TransactionId::parse("tx-b1").unwrap(),
            at,
        }
    }

    fn exchanged() -> TransferEvent {
        TransferEvent::CodeExchanged(CodeExchanged {
            code: code(),
            client_id: ClientId::parse("sp-b").unwrap(),
            session_id: SessionId::parse("s-b").unwrap(),
            transaction_id: TransactionId::parse("tx-b1").unwrap(),
            at: t(1),
        })
    }

    fn refused(error_description: ExchangeRefusal, at: Timestamp) -> TransferEvent {
        TransferEvent::ExchangeRefused(ExchangeRefused {
            code: code(),
            client_id: ClientId::parse("sp-b").unwrap(),
            session_id: SessionId::parse("s-b").unwrap(),
            transaction_id: TransactionId::parse("tx-b1").unwrap(),
            error_description,
            at,
        })
    }

    fn framework() -> TestFramework<ControlledTransfer> {
        TestFramework::with(())
    }

    #[test]
    fn issue_records_targets_and_text() {
        framework()
            .given_no_previous_events()
            .when(issue("Welcome from A", "broker-b", "sp-b-mitid"))
            .then_expect_events(vec![issued()]);
    }

    #[test]
    fn issue_needs_both_targets() {
        framework()
            .given_no_previous_events()
            .when(issue("Welcome from A", "", "sp-b-mitid"))
            .then_expect_error(DomainError::invalid("target_broker_id", "is required"));
        framework()
            .given_no_previous_events()
            .when(issue("Welcome from A", "broker-b", ""))
            .then_expect_error(DomainError::invalid(
                "target_service_provider_id",
                "is required",
            ));
    }

    #[test]
    fn issue_needs_a_non_empty_text_of_at_most_130_characters() {
        framework()
            .given_no_previous_events()
            .when(issue("", "broker-b", "sp-b-mitid"))
            .then_expect_error(DomainError::invalid(
                "transfer_token_text",
                "must not be empty",
            ));
        framework()
            .given_no_previous_events()
            .when(issue(&"å".repeat(131), "broker-b", "sp-b-mitid"))
            .then_expect_error(DomainError::invalid(
                "transfer_token_text",
                "must be at most 130 characters",
            ));
        let text = "å".repeat(130);
        let events = framework()
            .given_no_previous_events()
            .when(issue(&text, "broker-b", "sp-b-mitid"))
            .inspect_result()
            .unwrap();
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn issue_twice_is_refused() {
        framework()
            .given(vec![issued()])
            .when(issue("Welcome from A", "broker-b", "sp-b-mitid"))
            .then_expect_error(DomainError::invalid("code", TRANSFER_CODE_EXISTS));
    }

    #[test]
    fn exchange_with_the_same_text_is_recorded() {
        framework()
            .given(vec![issued()])
            .when(exchange("Welcome from A", t(1)))
            .then_expect_events(vec![exchanged()]);
    }

    #[test]
    fn exchange_with_another_text_is_refused() {
        framework()
            .given(vec![issued()])
            .when(exchange("Welcome from B", t(1)))
            .then_expect_events(vec![refused(ExchangeRefusal::TextMismatch, t(1))]);
        assert_eq!(
            refused(ExchangeRefusal::TextMismatch, t(1)).refusal(),
            Some(DomainError::invalid(
                "transfer_token_text",
                TRANSFER_TOKEN_TEXT_MISMATCH,
            ))
        );
        // Bad input is refused, not recorded.
        framework()
            .given(vec![issued()])
            .when(exchange("", t(1)))
            .then_expect_error(DomainError::invalid(
                "transfer_token_text",
                "must not be empty",
            ));
    }

    #[test]
    fn second_exchange_is_refused_as_already_used() {
        framework()
            .given(vec![issued(), exchanged()])
            .when(exchange("Welcome from A", t(2)))
            .then_expect_events(vec![refused(ExchangeRefusal::AlreadyUsed, t(2))]);
        assert_eq!(
            refused(ExchangeRefusal::AlreadyUsed, t(2)).refusal(),
            Some(DomainError::access_denied(
                codes::MITID_TRANSFER_TOKEN_EXCHANGE_CODE_ALREADY_USED,
                Some("code"),
            ))
        );
    }

    #[test]
    fn unknown_code_is_refused() {
        framework()
            .given_no_previous_events()
            .when(exchange("Welcome from A", t(1)))
            .then_expect_events(vec![refused(ExchangeRefusal::InvalidCode, t(1))]);
        assert_eq!(
            refused(ExchangeRefusal::InvalidCode, t(1)).refusal(),
            Some(DomainError::access_denied(
                codes::MITID_INVALID_TRANSFER_TOKEN_CODE,
                Some("code"),
            ))
        );
        assert_eq!(exchanged().refusal(), None);
    }

    #[test]
    fn expired_code_is_refused() {
        // Valid up to and including expires_at.
        let events = framework()
            .given(vec![issued()])
            .when(exchange("Welcome from A", t(5)))
            .inspect_result()
            .unwrap();
        assert_eq!(events.len(), 1);
        framework()
            .given(vec![issued()])
            .when(exchange("Welcome from A", t(5).plus_micros(1)))
            .then_expect_events(vec![refused(
                ExchangeRefusal::InvalidCode,
                t(5).plus_micros(1),
            )]);
    }

    #[test]
    fn expiry_must_follow_issue() {
        let mut cmd = issue("Welcome from A", "broker-b", "sp-b-mitid");
        if let TransferCommand::Issue { expires_at, .. } = &mut cmd {
            *expires_at = t(0);
        }
        framework()
            .given_no_previous_events()
            .when(cmd)
            .then_expect_error(DomainError::invalid("expires_at", "must be after at"));
    }
}
