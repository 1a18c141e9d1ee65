//! Sealing a commit group onto the chain head: pure, no I/O, so every rule of the append
//! path is tested without a database. The store calls [`seal`] while it holds the
//! chain-head lock, with the stream positions it read under that lock.

use std::collections::HashMap;

use super::{AppendBatch, AppendError, Appended};
use crate::record::{Record, RecordTime, StreamId};
use crate::spec::hash::Hash32;

/// The end of the chain: what the next record's `seq`, `prev` and earliest `time` are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub next_seq: u64,
    pub last_hash: Hash32,
    /// `time` of the last record in microseconds; records never go back in time.
    pub last_time_micros: i64,
}

impl Head {
    pub const GENESIS: Head = Head {
        next_seq: 0,
        last_hash: Hash32::ZERO,
        last_time_micros: 0,
    };
}

/// The outcome of one group: records to insert, and for each batch (in order) what its
/// caller is told once the group has committed.
pub struct Sealed<'a> {
    pub records: Vec<Record>,
    pub outcomes: Vec<Result<Vec<Appended>, AppendError>>,
    pub head: Head,
    /// The last `stream_seq` of every stream the group touched, after it (the streams
    /// borrowed from the batches: the writer seals thousands of records a second and
    /// copies only streams it has not seen before).
    pub streams: HashMap<&'a StreamId, u64>,
}

/// Assigns `seq`, `prev` and `time` to every batch whose expected stream positions hold,
/// in queue order. `streams` maps each stream the group touches to its last `stream_seq`
/// (0 for a new stream). A batch that conflicts is refused alone; the rest go on.
pub fn seal<'a>(
    head: Head,
    mut streams: HashMap<&'a StreamId, u64>,
    batches: &[&'a AppendBatch],
    now_micros: i64,
) -> Sealed<'a> {
    let micros = now_micros.max(head.last_time_micros);
    let time = match RecordTime::from_micros(micros) {
        Ok(time) => time,
        Err(e) => {
            let refuse = || Err(AppendError::Unavailable(format!("clock out of range: {e}")));
            return Sealed {
                records: Vec::new(),
                outcomes: batches.iter().map(|_| refuse()).collect(),
                head,
                streams,
            };
        }
    };
    let mut head = head;
    let mut records = Vec::new();
    let mut outcomes = Vec::with_capacity(batches.len());
    for batch in batches {
        if let Some(conflict) = first_conflict(&streams, batch) {
            outcomes.push(Err(conflict));
            continue;
        }
        let before = head;
        let mut appended = Vec::with_capacity(batch.events().len());
        let mut sealed = Vec::with_capacity(batch.events().len());
        let mut failed = None;
        for new in batch.events() {
            match Record::new(
                head.next_seq,
                &head.last_hash,
                &time,
                new.stream_seq,
                &new.event,
            ) {
                Ok(record) => {
                    appended.push(Appended {
                        seq: record.seq(),
                        hash: record.hash(),
                        stream_seq: new.stream_seq,
                        time_micros: micros,
                    });
                    head.next_seq += 1;
                    head.last_hash = record.hash();
                    sealed.push(record);
                }
                Err(e) => {
                    failed = Some(AppendError::Invalid(e));
                    break;
                }
            }
        }
        match failed {
            Some(e) => {
                // Only past 2^53 records: the batch is refused and the head is as before it.
                head = before;
                outcomes.push(Err(e));
            }
            None => {
                for new in batch.events() {
                    streams.insert(&new.event.stream, new.stream_seq);
                }
                head.last_time_micros = micros;
                records.extend(sealed);
                outcomes.push(Ok(appended));
            }
        }
    }
    Sealed {
        records,
        outcomes,
        head,
        streams,
    }
}

fn first_conflict(streams: &HashMap<&StreamId, u64>, batch: &AppendBatch) -> Option<AppendError> {
    batch.first_per_stream().find_map(|(stream, expected)| {
        let actual = streams.get(stream).copied().unwrap_or(0);
        (actual + 1 != expected).then(|| AppendError::Conflict {
            stream: stream.clone(),
            expected,
            actual,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::NewEvent;
    use crate::record::{Actor, Event, EventType, Payload, SchemaVersion};
    use crate::spec::hash::record_hash;
    use serde_json::json;

    fn ev(stream: &str, stream_seq: u64) -> NewEvent {
        NewEvent {
            stream_seq,
            event: Event {
                stream: StreamId::parse(stream).unwrap(),
                event_type: EventType::parse("test.happened").unwrap(),
                version: SchemaVersion::parse(1).unwrap(),
                actor: Actor::parse("broker:test").unwrap(),
                data: Payload::parse(&json!({"n": stream_seq})).unwrap(),
            },
        }
    }

    fn batch(events: Vec<NewEvent>) -> AppendBatch {
        AppendBatch::new(events).unwrap()
    }

    #[test]
    fn chains_records_across_batches() {
        let a = batch(vec![ev("s:a", 1), ev("s:a", 2)]);
        let b = batch(vec![ev("s:b", 1)]);
        let sealed = seal(Head::GENESIS, HashMap::new(), &[&a, &b], 1_000);
        assert_eq!(sealed.records.len(), 3);
        assert_eq!(sealed.head.next_seq, 3);
        let mut prev = Hash32::ZERO;
        for (i, r) in sealed.records.iter().enumerate() {
            assert_eq!(r.seq(), i as u64);
            let v: serde_json::Value = serde_json::from_slice(r.canonical()).unwrap();
            assert_eq!(v["prev"], prev.to_hex());
            assert_eq!(r.hash(), record_hash(r.canonical()));
            prev = r.hash();
        }
        assert_eq!(sealed.head.last_hash, prev);
        let seqs: Vec<Vec<u64>> = sealed
            .outcomes
            .iter()
            .map(|o| o.as_ref().unwrap().iter().map(|a| a.seq).collect())
            .collect();
        assert_eq!(seqs, vec![vec![0, 1], vec![2]]);
    }

    #[test]
    fn a_stale_batch_is_refused_alone() {
        let a = StreamId::parse("s:a").unwrap();
        let streams = HashMap::from([(&a, 4)]);
        let stale = batch(vec![ev("s:b", 1), ev("s:a", 4)]);
        let fresh = batch(vec![ev("s:a", 5)]);
        let again = batch(vec![ev("s:a", 5)]);
        let sealed = seal(Head::GENESIS, streams, &[&stale, &fresh, &again], 1_000);
        assert_eq!(sealed.records.len(), 1, "only the fresh batch is sealed");
        assert!(matches!(
            &sealed.outcomes[0],
            Err(AppendError::Conflict {
                expected: 4,
                actual: 4,
                ..
            })
        ));
        assert_eq!(sealed.outcomes[1].as_ref().unwrap()[0].seq, 0);
        // The third batch expected 5 too, but the second took it within the same group.
        assert!(matches!(
            &sealed.outcomes[2],
            Err(AppendError::Conflict {
                expected: 5,
                actual: 5,
                ..
            })
        ));
    }

    /// A batch that runs past the largest `seq` is refused whole, and the next batch in
    /// the group chains onto the head as it was before the refused one.
    #[test]
    fn a_batch_past_the_last_seq_is_undone_whole() {
        let head = Head {
            next_seq: crate::spec::MAX_SAFE_INTEGER,
            last_hash: record_hash(b"x"),
            last_time_micros: 5_000,
        };
        let too_long = batch(vec![ev("s:a", 1), ev("s:a", 2)]);
        let fits = batch(vec![ev("s:b", 1)]);
        let sealed = seal(head, HashMap::new(), &[&too_long, &fits], 6_000);
        assert!(matches!(sealed.outcomes[0], Err(AppendError::Invalid(_))));
        assert_eq!(sealed.records.len(), 1);
        let r = &sealed.records[0];
        assert_eq!(r.seq(), crate::spec::MAX_SAFE_INTEGER);
        let v: serde_json::Value = serde_json::from_slice(r.canonical()).unwrap();
        assert_eq!(v["prev"], head.last_hash.to_hex());
        assert_eq!(v["stream"], "s:b");
        assert_eq!(sealed.head.last_hash, r.hash());
        assert!(!sealed
            .streams
            .contains_key(&StreamId::parse("s:a").unwrap()));
    }

    #[test]
    fn time_never_goes_back() {
        let head = Head {
            next_seq: 10,
            last_hash: record_hash(b"x"),
            last_time_micros: 5_000,
        };
        let a = batch(vec![ev("s:a", 1)]);
        let sealed = seal(head, HashMap::new(), &[&a], 4_000);
        assert_eq!(sealed.records[0].time_micros(), 5_000);
        assert_eq!(sealed.records[0].seq(), 10);
    }
}
