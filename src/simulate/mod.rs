//! `vidne simulate`: drives the HTTP API the way a busy broker would, from a seed, so that
//! the same seed gives the same traffic. [`plan`] decides every request and its expected
//! answer without I/O; [`run`] sends them and writes what happened to the out file.
//!
//! It is a client of the API like any other: it knows the routes and their JSON, and
//! reads the domain only for the codes the answers carry.

pub mod plan;
mod run;

pub use plan::{Plan, MIN_SESSIONS, PLANNED_REFUSALS};
pub use run::{already_simulated, run, Failure, Options, Summary};
