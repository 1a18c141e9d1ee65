//! All integration tests, in one binary: every ledger test runs against a fresh
//! PostgreSQL database and a fresh SQLite file.

mod helpers;

mod api;
mod append;
mod audit;
mod bench;
mod broker;
mod export;
mod fixture;
mod interop;
mod log;
mod reports;
mod sealed;
mod service;
mod simulate;
mod tamper;
mod token;
