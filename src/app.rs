//! Runs a domain command against the ledger: the ledger is the event store. The
//! aggregate's stream is read back and applied, the command decided, and its events
//! appended at the stream positions that follow, all-or-nothing. A concurrent append to
//! the same stream shows up as a stale `stream_seq`; the command is then decided again
//! on the new state.

use cqrs_es::Aggregate;
use serde_json::Value;

use crate::domain::{self, DomainError, LedgerEvent};
use crate::ledger::{AppendError, Appended, Ledger, NewEvent, Reader};
use crate::record::{Actor, Event, StreamId};

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Refused(#[from] DomainError),
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error("reading the stream: {0}")]
    Storage(#[from] sqlx::Error),
    /// A stored record of the stream cannot be read back as an event of its aggregate.
    #[error("record {seq} of {stream}: {reason}")]
    Unreadable {
        stream: String,
        seq: i64,
        reason: String,
    },
}

/// What the stream must look like before a command runs.
#[derive(Clone, Debug)]
pub enum Expect {
    /// Anything: the aggregate's own rules decide.
    Any,
    /// No record yet (creating), else this refusal.
    New(DomainError),
    /// At least one record, else this refusal.
    Existing(DomainError),
}

impl Expect {
    fn check(&self, last: u64) -> Result<(), DomainError> {
        match self {
            Expect::New(e) if last > 0 => Err(e.clone()),
            Expect::Existing(e) if last == 0 => Err(e.clone()),
            _ => Ok(()),
        }
    }
}

/// The records `events` become on `stream`, after its record `last`.
fn new_events<E: LedgerEvent>(
    stream: &StreamId,
    actor: &Actor,
    last: u64,
    events: &[E],
) -> Result<Vec<NewEvent>, DomainError> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let (event_type, version, data) = e.to_record_parts()?;
            Ok(NewEvent {
                stream_seq: last + 1 + i as u64,
                event: Event {
                    stream: stream.clone(),
                    event_type,
                    version,
                    actor: actor.clone(),
                    data,
                },
            })
        })
        .collect()
}

/// Times a command is decided again after losing a race for its stream.
const ATTEMPTS: usize = 3;

/// Records per read while loading a stream.
const PAGE: u32 = 1000;

#[derive(Clone)]
pub struct Commands {
    ledger: Ledger,
    reader: Reader,
}

/// What a command appended: its events with their ledger acknowledgements.
pub struct Executed<E> {
    pub events: Vec<(E, Appended)>,
}

impl Commands {
    pub fn new(ledger: Ledger, reader: Reader) -> Commands {
        Commands { ledger, reader }
    }

    /// Decides `command` on the aggregate of `stream` and appends what it decided.
    pub async fn execute<A>(
        &self,
        stream: &StreamId,
        actor: &Actor,
        command: A::Command,
        services: &A::Services,
    ) -> Result<Executed<A::Event>, CommandError>
    where
        A: Aggregate<Error = DomainError> + Default,
        A::Event: LedgerEvent,
        A::Command: Clone,
    {
        self.execute_all::<A>(stream, actor, vec![command], services, Expect::Any)
            .await
    }

    /// Decides `commands` one after the other on the aggregate of `stream` (each on the
    /// state the ones before it left) and appends all their events in one batch, or
    /// nothing if any is refused or the stream is not as `expect` says.
    pub async fn execute_all<A>(
        &self,
        stream: &StreamId,
        actor: &Actor,
        commands: Vec<A::Command>,
        services: &A::Services,
        expect: Expect,
    ) -> Result<Executed<A::Event>, CommandError>
    where
        A: Aggregate<Error = DomainError> + Default,
        A::Event: LedgerEvent,
        A::Command: Clone,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (mut aggregate, last) = self.load::<A>(stream).await?;
            expect.check(last)?;
            let mut events = Vec::new();
            for command in commands.iter().cloned() {
                events.extend(domain::decide(&mut aggregate, command, services).await?);
            }
            let new = new_events(stream, actor, last, &events)?;
            if new.is_empty() {
                return Ok(Executed { events: Vec::new() });
            }
            match self.ledger.append(new).await {
                Ok(acks) => {
                    return Ok(Executed {
                        events: events.into_iter().zip(acks).collect(),
                    })
                }
                Err(AppendError::Conflict { .. }) if attempt < ATTEMPTS => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Decides one command on each of two aggregates (two streams) and appends both
    /// commands' events in one batch: both are recorded, or neither.
    pub async fn execute_pair<A, B>(
        &self,
        actor: &Actor,
        a: (&StreamId, A::Command, &A::Services),
        b: (&StreamId, B::Command, &B::Services),
    ) -> Result<(Executed<A::Event>, Executed<B::Event>), CommandError>
    where
        A: Aggregate<Error = DomainError> + Default,
        A::Event: LedgerEvent,
        A::Command: Clone,
        B: Aggregate<Error = DomainError> + Default,
        B::Event: LedgerEvent,
        B::Command: Clone,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (mut agg_a, last_a) = self.load::<A>(a.0).await?;
            let (mut agg_b, last_b) = self.load::<B>(b.0).await?;
            let events_a = domain::decide(&mut agg_a, a.1.clone(), a.2).await?;
            let events_b = domain::decide(&mut agg_b, b.1.clone(), b.2).await?;
            let mut new = new_events(a.0, actor, last_a, &events_a)?;
            new.extend(new_events(b.0, actor, last_b, &events_b)?);
            if new.is_empty() {
                return Ok((
                    Executed { events: Vec::new() },
                    Executed { events: Vec::new() },
                ));
            }
            match self.ledger.append(new).await {
                Ok(mut acks) => {
                    let acks_b = acks.split_off(events_a.len());
                    return Ok((
                        Executed {
                            events: events_a.into_iter().zip(acks).collect(),
                        },
                        Executed {
                            events: events_b.into_iter().zip(acks_b).collect(),
                        },
                    ));
                }
                Err(AppendError::Conflict { .. }) if attempt < ATTEMPTS => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The aggregate as its stream's records now leave it (for reads at the edge).
    pub async fn state<A>(&self, stream: &StreamId) -> Result<A, CommandError>
    where
        A: Aggregate + Default,
        A::Event: LedgerEvent,
    {
        Ok(self.load::<A>(stream).await?.0)
    }

    /// The aggregate as its stream's records leave it, and its last `stream_seq`.
    async fn load<A>(&self, stream: &StreamId) -> Result<(A, u64), CommandError>
    where
        A: Aggregate + Default,
        A::Event: LedgerEvent,
    {
        let mut aggregate = A::default();
        let mut last = 0;
        loop {
            let rows = self.reader.stream(stream.as_str(), last, PAGE).await?;
            let done = rows.len() < PAGE as usize;
            for row in rows {
                let unreadable = |reason: String| CommandError::Unreadable {
                    stream: stream.to_string(),
                    seq: row.seq,
                    reason,
                };
                let record: Value = serde_json::from_slice(&row.canonical)
                    .map_err(|e| unreadable(e.to_string()))?;
                let version = record["version"]
                    .as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| unreadable("no version".into()))?;
                let data = record.get("data").cloned().unwrap_or(Value::Null);
                let event = A::Event::from_record_parts(&row.event_type, version, data)
                    .map_err(|e| unreadable(format!("{}: {}", e.field, e.reason)))?;
                aggregate.apply(event);
                last = u64::try_from(row.stream_seq).unwrap_or(0);
            }
            if done {
                return Ok((aggregate, last));
            }
        }
    }
}
