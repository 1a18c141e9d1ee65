//! Vidne: the event-sourced token and audit ledger for Nordic eID brokers.
//!
//! `spec` holds the byte-level primitives of `SPEC.md`; `record` the record and the
//! newtypes its members parse into; `ledger` the append and read paths; `verify` the
//! independent checker; `http` the service; `domain` the broker events and the
//! aggregates that decide them; `app` runs their commands on the ledger; `auth` the API
//! keys and roles; `simulate` a broker's traffic over HTTP, from a seed; `token` the
//! sealed transaction tokens (signing keys, JWS/JWE, the independent token verifier);
//! `merkle` the RFC 9162 tree the append path keeps, stored as tlog tiles, and the
//! proofs served from it; `checkpoint` the signed checkpoints;
//! `logverify` the independent offline verifier of Merkle proofs and signed checkpoints.
#![forbid(unsafe_code)]

pub mod app;
pub mod audit;
pub mod auth;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod db;
pub mod domain;
pub mod http;
pub mod idempotency;
pub mod ledger;
pub mod logverify;
pub mod merkle;
pub mod projection;
pub mod record;
pub mod secret_file;
pub mod simulate;
pub mod spec;
pub mod token;
pub mod verify;
