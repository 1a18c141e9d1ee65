//! Compliance reports (issue 6): what one ledger record adds to its SP's counts for the
//! day. Pure: the projection (`crate::projection::reports`) feeds records in `seq` order
//! and stores the sums; a test or an auditor can recompute them from the raw records.
//!
//! What is counted, per SP client and UTC day of the record's ledger time:
//! - `logins` by `<idp>|<loa>` (`loa` as `low`, `substantial`, `high` or `none`);
//! - `signings` by transaction text type;
//! - `cpr_matches`: every request is an `attempt`, and is a `match`, a `mismatch`, or
//!   `exceeded` (the 4th or later of a session, refused and recorded);
//! - `pid_lookups` by `pid_status`;
//! - `transfers`: codes `issued` by the SP, `exchanged` and `refused` to it;
//! - `flow_errors` by `error_description`;
//! - `maintenance_failures` by IdP: flow errors whose `at` falls inside a maintenance
//!   window of their IdP that was recorded before the error and not cancelled before it,
//!   and that covers the SP's environment (`from` ≤ `at` < `to`).

use std::collections::HashMap;

use serde_json::Value;

use super::values::NsisLevel;

/// A family of counts in a report; each has its own keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    Logins,
    Signings,
    CprMatches,
    PidLookups,
    Transfers,
    FlowErrors,
    MaintenanceFailures,
}

impl Metric {
    pub const ALL: [Metric; 7] = [
        Metric::Logins,
        Metric::Signings,
        Metric::CprMatches,
        Metric::PidLookups,
        Metric::Transfers,
        Metric::FlowErrors,
        Metric::MaintenanceFailures,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Logins => "logins",
            Metric::Signings => "signings",
            Metric::CprMatches => "cpr_matches",
            Metric::PidLookups => "pid_lookups",
            Metric::Transfers => "transfers",
            Metric::FlowErrors => "flow_errors",
            Metric::MaintenanceFailures => "maintenance_failures",
        }
    }

    pub fn parse(s: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// The record types a report reads: those it counts, and those that say which
/// maintenance windows were announced and which environment each SP is in.
pub const READ_TYPES: &[&str] = &[
    "session.login_completed",
    "session.transaction_signed",
    "session.cpr_match_completed",
    "session.cpr_match_refused",
    "session.pid_lookup_completed",
    "session.flow_failed",
    "transfer.code_issued",
    "transfer.code_exchanged",
    "transfer.exchange_refused",
    "maintenance.window_recorded",
    "maintenance.window_cancelled",
    "client.registered",
];

/// The types among [`READ_TYPES`] that only shape counting ([`Announced`]).
pub const CONTEXT_TYPES: &[&str] = &[
    "maintenance.window_recorded",
    "maintenance.window_cancelled",
    "client.registered",
];

#[derive(Clone, Debug)]
struct Window {
    idp: String,
    environment: Option<String>,
    from: String,
    to: String,
    recorded: u64,
    cancelled: Option<u64>,
}

/// The maintenance windows announced so far, and each SP client's environment.
#[derive(Clone, Debug, Default)]
pub struct Announced {
    windows: HashMap<String, Window>,
    environments: HashMap<String, String>,
}

fn text<'a>(data: &'a Value, key: &str) -> Option<&'a str> {
    data.get(key).and_then(Value::as_str)
}

impl Announced {
    /// Takes in a context record (one of [`CONTEXT_TYPES`]); other records are ignored.
    pub fn observe(&mut self, seq: u64, event_type: &str, data: &Value) {
        match event_type {
            "maintenance.window_recorded" => {
                let (Some(id), Some(idp), Some(from), Some(to)) = (
                    text(data, "window_id"),
                    text(data, "idp"),
                    text(data, "from"),
                    text(data, "to"),
                ) else {
                    return;
                };
                self.windows.insert(
                    id.to_owned(),
                    Window {
                        idp: idp.to_owned(),
                        environment: text(data, "environment").map(str::to_owned),
                        from: from.to_owned(),
                        to: to.to_owned(),
                        recorded: seq,
                        cancelled: None,
                    },
                );
            }
            "maintenance.window_cancelled" => {
                if let Some(w) = text(data, "window_id").and_then(|id| self.windows.get_mut(id)) {
                    w.cancelled.get_or_insert(seq);
                }
            }
            "client.registered" => {
                if let (Some(c), Some(e)) = (text(data, "client_id"), text(data, "environment")) {
                    self.environments.insert(c.to_owned(), e.to_owned());
                }
            }
            _ => {}
        }
    }

    /// Whether a flow error of `idp` for `client` at `at` (ledger time form), recorded
    /// at `seq`, fell inside a window announced before it.
    pub fn covers(&self, seq: u64, idp: &str, client: &str, at: &str) -> bool {
        let environment = self.environments.get(client);
        self.windows.values().any(|w| {
            w.idp == idp
                && w.recorded < seq
                && w.cancelled.is_none_or(|c| c > seq)
                && w.environment
                    .as_ref()
                    .is_none_or(|e| Some(e) == environment)
                && w.from.as_str() <= at
                && at < w.to.as_str()
        })
    }
}

fn loa_name(loa: Option<&str>) -> &'static str {
    match loa.and_then(|l| NsisLevel::parse(l).ok()) {
        Some(NsisLevel::Low) => "low",
        Some(NsisLevel::Substantial) => "substantial",
        Some(NsisLevel::High) => "high",
        None => "none",
    }
}

/// What the record at `seq` adds to the counts of `client` (the SP it concerns).
pub fn tally(
    seq: u64,
    event_type: &str,
    data: &Value,
    client: &str,
    announced: &Announced,
) -> Vec<(Metric, String)> {
    let key = |k: &str| text(data, k).unwrap_or("none").to_owned();
    match event_type {
        "session.login_completed" => vec![(
            Metric::Logins,
            format!("{}|{}", key("idp"), loa_name(text(data, "loa"))),
        )],
        "session.transaction_signed" => vec![(Metric::Signings, key("transaction_text_type"))],
        "session.cpr_match_completed" => {
            let matched = data.get("matched").and_then(Value::as_bool) == Some(true);
            let outcome = if matched { "match" } else { "mismatch" };
            vec![
                (Metric::CprMatches, "attempt".into()),
                (Metric::CprMatches, outcome.into()),
            ]
        }
        "session.cpr_match_refused" => vec![
            (Metric::CprMatches, "attempt".into()),
            (Metric::CprMatches, "exceeded".into()),
        ],
        "session.pid_lookup_completed" => vec![(Metric::PidLookups, key("pid_status"))],
        "transfer.code_issued" => vec![(Metric::Transfers, "issued".into())],
        "transfer.code_exchanged" => vec![(Metric::Transfers, "exchanged".into())],
        "transfer.exchange_refused" => vec![(Metric::Transfers, "refused".into())],
        "session.flow_failed" => {
            let mut out = vec![(Metric::FlowErrors, key("error_description"))];
            let idp = text(data, "idp").unwrap_or_default();
            let at = text(data, "at").unwrap_or_default();
            if announced.covers(seq, idp, client, at) {
                out.push((Metric::MaintenanceFailures, idp.to_owned()));
            }
            out
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn window(announced: &mut Announced, seq: u64, env: Option<&str>) {
        let mut data = json!({"window_id": "w1", "idp": "mitid",
            "from": "2026-11-21T22:00:00.000000Z", "to": "2026-11-22T02:00:00.000000Z",
            "note": "", "at": "2026-11-20T08:00:00.000000Z"});
        if let Some(e) = env {
            data["environment"] = e.into();
        }
        announced.observe(seq, "maintenance.window_recorded", &data);
    }

    fn failure(at: &str) -> Value {
        json!({"transaction_id": "t", "idp": "mitid", "error": "access_denied",
               "error_description": "mitid_user_aborted", "at": at})
    }

    #[test]
    fn a_failure_counts_inside_an_announced_window_only() {
        let mut a = Announced::default();
        a.observe(
            1,
            "client.registered",
            &json!({"client_id": "sp", "environment": "PROD"}),
        );
        window(&mut a, 5, None);
        let inside = failure("2026-11-21T23:00:00.000000Z");
        let counts = |a: &Announced, seq, data: &Value| {
            tally(seq, "session.flow_failed", data, "sp", a)
                .into_iter()
                .filter(|(m, _)| *m == Metric::MaintenanceFailures)
                .count()
        };
        assert_eq!(counts(&a, 6, &inside), 1);
        // Before the window was announced.
        assert_eq!(counts(&a, 4, &inside), 0);
        // At `to` is outside; at `from` inside.
        assert_eq!(counts(&a, 6, &failure("2026-11-22T02:00:00.000000Z")), 0);
        assert_eq!(counts(&a, 6, &failure("2026-11-21T22:00:00.000000Z")), 1);
        // Another IdP's failure.
        let mut other = inside.clone();
        other["idp"] = "nemid".into();
        assert_eq!(counts(&a, 6, &other), 0);
        // Cancelled at seq 8: still counted before, not after.
        a.observe(
            8,
            "maintenance.window_cancelled",
            &json!({"window_id": "w1", "note": "", "at": "2026-11-21T00:00:00.000000Z"}),
        );
        assert_eq!(counts(&a, 7, &inside), 1);
        assert_eq!(counts(&a, 9, &inside), 0);
    }

    #[test]
    fn a_window_for_one_environment_covers_its_clients_only() {
        let mut a = Announced::default();
        a.observe(
            1,
            "client.registered",
            &json!({"client_id": "sp", "environment": "PROD"}),
        );
        window(&mut a, 2, Some("CURRENT"));
        let inside = failure("2026-11-21T23:00:00.000000Z");
        let n = tally(3, "session.flow_failed", &inside, "sp", &a).len();
        assert_eq!(n, 1, "only the flow error itself");
        window(&mut a, 4, Some("PROD"));
        assert_eq!(tally(5, "session.flow_failed", &inside, "sp", &a).len(), 2);
    }

    #[test]
    fn every_cpr_match_is_an_attempt_with_one_outcome() {
        let a = Announced::default();
        let t = |ty, data: Value| tally(1, ty, &data, "sp", &a);
        assert_eq!(
            t("session.cpr_match_completed", json!({"matched": false})),
            [
                (Metric::CprMatches, "attempt".to_string()),
                (Metric::CprMatches, "mismatch".to_string())
            ]
        );
        assert_eq!(
            t("session.cpr_match_refused", json!({"attempt": 4}))[1],
            (Metric::CprMatches, "exceeded".to_string())
        );
        assert_eq!(
            t(
                "session.login_completed",
                json!({"idp": "mitid", "loa": "https://data.gov.dk/concept/core/nsis/Substantial"})
            ),
            [(Metric::Logins, "mitid|substantial".to_string())]
        );
        assert_eq!(
            t("session.login_completed", json!({"idp": "bankid_no"})),
            [(Metric::Logins, "bankid_no|none".to_string())]
        );
        assert!(t("session.logged_out", json!({})).is_empty());
    }
}
