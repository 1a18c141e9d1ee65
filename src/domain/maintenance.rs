//! An IdP maintenance window (`maintenance:<window_id>`), recorded so that reports can
//! explain failures inside it (seeds 000 and 001, "Operational information": e.g. S-Pankki
//! and OP through FTN, E-Ident database servers). A window can be cancelled, as the seeds'
//! rolled-back changes were.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use crate::domain::values::{check_note, Environment, Idp, Timestamp, WindowId};
use crate::domain::{domain_event, DomainError, LedgerEvent};

pub const WINDOW_EXISTS: &str = "window_exists";
pub const UNKNOWN_WINDOW: &str = "unknown_window";
pub const WINDOW_CANCELLED: &str = "window_cancelled";
/// Longest note, in characters.
pub const NOTE_MAX: usize = 1000;

#[derive(Debug, Clone)]
pub enum MaintenanceCommand {
    Record {
        window_id: WindowId,
        idp: Idp,
        from: Timestamp,
        to: Timestamp,
        note: String,
        /// Only one environment is affected (the seeds' customer test DNS changes), or
        /// `None` for all.
        environment: Option<Environment>,
        at: Timestamp,
    },
    Cancel {
        window_id: WindowId,
        note: String,
        at: Timestamp,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowRecorded {
    pub window_id: WindowId,
    pub idp: Idp,
    pub from: Timestamp,
    pub to: Timestamp,
    pub note: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowCancelled {
    pub window_id: WindowId,
    pub note: String,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum MaintenanceEvent {
    #[serde(rename = "maintenance.window_recorded")]
    WindowRecorded(WindowRecorded),
    #[serde(rename = "maintenance.window_cancelled")]
    WindowCancelled(WindowCancelled),
}

impl LedgerEvent for MaintenanceEvent {
    const TYPES: &'static [(&'static str, u32)] = &[
        ("maintenance.window_recorded", 1),
        ("maintenance.window_cancelled", 1),
    ];

    fn type_name(&self) -> &'static str {
        match self {
            MaintenanceEvent::WindowRecorded(_) => "maintenance.window_recorded",
            MaintenanceEvent::WindowCancelled(_) => "maintenance.window_cancelled",
        }
    }
}

domain_event!(MaintenanceEvent);

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceWindow {
    recorded: bool,
    cancelled: bool,
}

impl MaintenanceWindow {
    fn decide(&self, command: MaintenanceCommand) -> Result<MaintenanceEvent, DomainError> {
        match command {
            MaintenanceCommand::Record {
                window_id,
                idp,
                from,
                to,
                note,
                environment,
                at,
            } => {
                if self.recorded {
                    return Err(DomainError::invalid("window_id", WINDOW_EXISTS));
                }
                if to <= from {
                    return Err(DomainError::invalid("to", "must be after from"));
                }
                let note = check_note("note", &note, NOTE_MAX)?;
                Ok(MaintenanceEvent::WindowRecorded(WindowRecorded {
                    window_id,
                    idp,
                    from,
                    to,
                    note,
                    environment,
                    at,
                }))
            }
            MaintenanceCommand::Cancel {
                window_id,
                note,
                at,
            } => {
                if !self.recorded {
                    return Err(DomainError::invalid("window_id", UNKNOWN_WINDOW));
                }
                if self.cancelled {
                    return Err(DomainError::invalid("window_id", WINDOW_CANCELLED));
                }
                let note = check_note("note", &note, NOTE_MAX)?;
                Ok(MaintenanceEvent::WindowCancelled(WindowCancelled {
                    window_id,
                    note,
                    at,
                }))
            }
        }
    }
}

impl Aggregate for MaintenanceWindow {
    const TYPE: &'static str = "maintenance";
    type Command = MaintenanceCommand;
    type Event = MaintenanceEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: MaintenanceCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        let event = self.decide(command)?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: MaintenanceEvent) {
        match event {
            MaintenanceEvent::WindowRecorded(_) => self.recorded = true,
            MaintenanceEvent::WindowCancelled(_) => self.cancelled = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse("at", s).unwrap()
    }

    fn id() -> WindowId {
        WindowId::parse("ftn-s-pankki-2023-02-05").unwrap()
    }

    /// Seed 000: "Service maintenance for Finnish bank S-Pankki, 2023-02-05 00:05 - 06:00 EET".
    fn record(from: &str, to: &str, note: &str) -> MaintenanceCommand {
        MaintenanceCommand::Record {
            window_id: id(),
            idp: Idp::Ftn,
            from: ts(from),
            to: ts(to),
            note: note.into(),
            environment: None,
            at: ts("2023-01-20T10:00:00Z"),
        }
    }

    fn recorded() -> MaintenanceEvent {
        MaintenanceEvent::WindowRecorded(WindowRecorded {
            window_id: id(),
            idp: Idp::Ftn,
            from: ts("2023-02-04T22:05:00Z"),
            to: ts("2023-02-05T04:00:00Z"),
            note: "S-Pankki identification unavailable through FTN".into(),
            environment: None,
            at: ts("2023-01-20T10:00:00Z"),
        })
    }

    fn cancel(note: &str) -> MaintenanceCommand {
        MaintenanceCommand::Cancel {
            window_id: id(),
            note: note.into(),
            at: ts("2023-01-21T10:00:00Z"),
        }
    }

    fn framework() -> TestFramework<MaintenanceWindow> {
        TestFramework::with(())
    }

    #[test]
    fn a_window_is_recorded_in_utc() {
        framework()
            .given_no_previous_events()
            .when(record(
                "2023-02-05T00:05:00+02:00",
                "2023-02-05T06:00:00+02:00",
                "S-Pankki identification unavailable through FTN",
            ))
            .then_expect_events(vec![recorded()]);
    }

    #[test]
    fn a_window_must_end_after_it_starts() {
        framework()
            .given_no_previous_events()
            .when(record(
                "2023-02-05T06:00:00+02:00",
                "2023-02-05T06:00:00+02:00",
                "x",
            ))
            .then_expect_error(DomainError::invalid("to", "must be after from"));
    }

    #[test]
    fn a_window_needs_a_note() {
        framework()
            .given_no_previous_events()
            .when(record(
                "2023-02-05T00:05:00+02:00",
                "2023-02-05T06:00:00+02:00",
                "",
            ))
            .then_expect_error(DomainError::invalid(
                "note",
                "must be 1 to 1000 characters without control characters",
            ));
    }

    #[test]
    fn a_window_is_recorded_once() {
        framework()
            .given(vec![recorded()])
            .when(record(
                "2023-02-05T00:05:00+02:00",
                "2023-02-05T06:00:00+02:00",
                "again",
            ))
            .then_expect_error(DomainError::invalid("window_id", WINDOW_EXISTS));
    }

    #[test]
    fn a_window_can_be_cancelled_once() {
        let cancelled = MaintenanceEvent::WindowCancelled(WindowCancelled {
            window_id: id(),
            note: "rolled back".into(),
            at: ts("2023-01-21T10:00:00Z"),
        });
        framework()
            .given(vec![recorded()])
            .when(cancel("rolled back"))
            .then_expect_events(vec![cancelled.clone()]);
        framework()
            .given(vec![recorded(), cancelled])
            .when(cancel("rolled back"))
            .then_expect_error(DomainError::invalid("window_id", WINDOW_CANCELLED));
        framework()
            .given_no_previous_events()
            .when(cancel("rolled back"))
            .then_expect_error(DomainError::invalid("window_id", UNKNOWN_WINDOW));
    }
}
