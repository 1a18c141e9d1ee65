//! `vidne simulate`: drives the HTTP API the way a busy broker would, from a seed, so that
//! the same seed gives the same traffic. [`plan`] decides every request and its expected
//! answer without I/O.
//!
//! It is a client of the API like any other: it knows the routes and their JSON, and
//! reads the domain only for the codes the answers carry.

pub mod plan;

pub use plan::{Plan, MIN_SESSIONS, PLANNED_REFUSALS};
