//! A compliance report: the stored daily counts of a period, per SP client, with their
//! month roll-ups and totals, and the signed checkpoint they were counted from. Rendered
//! as JSON, CSV or a self-contained HTML page (tables and inline SVG charts, no scripts).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::checkpoint::Checkpoint;
use crate::domain::report::Metric;
use crate::projection::reports::DailyCount;

/// metric → key → count.
type Counts = BTreeMap<Metric, BTreeMap<String, u64>>;

fn add(counts: &mut Counts, c: &DailyCount) {
    *counts
        .entry(c.metric)
        .or_default()
        .entry(c.key.clone())
        .or_default() += c.count;
}

/// Every metric, empty ones too, so readers find each member.
fn counts_json(counts: &Counts) -> Value {
    let mut out = Map::new();
    for metric in Metric::ALL {
        let keys = counts.get(&metric).cloned().unwrap_or_default();
        out.insert(metric.as_str().into(), json!(keys));
    }
    Value::Object(out)
}

#[derive(Clone, Debug, Default)]
pub struct ClientReport {
    pub client_id: String,
    pub totals: Counts,
    pub months: BTreeMap<String, Counts>,
    pub days: BTreeMap<String, Counts>,
}

/// The checkpoint a report names.
#[derive(Clone, Debug, Serialize)]
pub struct Named {
    pub tree_size: u64,
    /// Hex.
    pub root: String,
    /// The signed note, as served at `/checkpoint` when it was the latest.
    pub note: String,
}

#[derive(Clone, Debug)]
pub struct ComplianceReport {
    /// First and last day, `YYYY-MM-DD`, UTC, inclusive.
    pub from: String,
    pub to: String,
    pub checkpoint: Named,
    pub clients: Vec<ClientReport>,
}

impl ComplianceReport {
    /// `counts` as [`crate::projection::Reports::counts`] read them at `checkpoint`'s size.
    /// `client` names the one client asked for, which is listed even with nothing counted.
    pub fn build(
        from: String,
        to: String,
        checkpoint: &Checkpoint,
        client: Option<&str>,
        counts: &[DailyCount],
    ) -> ComplianceReport {
        let mut clients: BTreeMap<String, ClientReport> = BTreeMap::new();
        if let Some(c) = client {
            clients.entry(c.to_owned()).or_default();
        }
        for c in counts {
            let r = clients.entry(c.client_id.clone()).or_default();
            add(&mut r.totals, c);
            add(r.months.entry(c.day[..7].to_owned()).or_default(), c);
            add(r.days.entry(c.day.clone()).or_default(), c);
        }
        ComplianceReport {
            from,
            to,
            checkpoint: Named {
                tree_size: checkpoint.tree_size,
                root: checkpoint.root.to_hex(),
                note: checkpoint.note.clone(),
            },
            clients: clients
                .into_iter()
                .map(|(client_id, r)| ClientReport { client_id, ..r })
                .collect(),
        }
    }

    pub fn to_json(&self) -> Value {
        let clients: Vec<Value> = self
            .clients
            .iter()
            .map(|c| {
                json!({
                    "client_id": c.client_id,
                    "totals": counts_json(&c.totals),
                    "months": c.months.iter()
                        .map(|(m, n)| json!({"month": m, "counts": counts_json(n)}))
                        .collect::<Vec<_>>(),
                    "days": c.days.iter()
                        .map(|(d, n)| json!({"day": d, "counts": counts_json(n)}))
                        .collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "from": self.from,
            "to": self.to,
            "time_zone": "UTC",
            "checkpoint": self.checkpoint,
            "clients": clients,
        })
    }

    /// One row per count: `granularity` is `day`, `month` or `total`; every row names
    /// the checkpoint, so a row read alone still says what it was counted from.
    pub fn to_csv(&self) -> String {
        let mut out =
            String::from("client_id,granularity,period,metric,key,count,tree_size,root\n");
        let cp = &self.checkpoint;
        for c in &self.clients {
            let mut rows = |granularity: &str, period: &str, counts: &Counts| {
                for (metric, keys) in counts {
                    for (key, n) in keys {
                        let _ = writeln!(
                            out,
                            "{},{granularity},{period},{},{},{n},{},{}",
                            csv_field(&c.client_id),
                            metric.as_str(),
                            csv_field(key),
                            cp.tree_size,
                            cp.root
                        );
                    }
                }
            };
            for (day, counts) in &c.days {
                rows("day", day, counts);
            }
            for (month, counts) in &c.months {
                rows("month", month, counts);
            }
            rows("total", &format!("{}..{}", self.from, self.to), &c.totals);
        }
        out
    }

    /// A page to read and print: per client, a totals table per metric and charts of the
    /// daily logins and flow errors and of logins by IdP and level.
    pub fn to_html(&self) -> String {
        let mut h = String::new();
        let cp = &self.checkpoint;
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>Compliance report {from} to {to}</title><style>\
             body{{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:60em}}\
             table{{border-collapse:collapse;margin:.5em 0 1.5em}}\
             td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:left}}\
             td.n{{text-align:right}} pre{{background:#f4f4f4;padding:.6em;overflow-x:auto}}\
             h2{{border-top:2px solid #444;padding-top:.6em}}</style></head><body>\n\
             <h1>Compliance report</h1>\n<p>{from} to {to} (UTC days, both included).</p>\n\
             <p>Counted from the signed checkpoint of <strong>{size}</strong> records, \
             root <code>{root}</code>. Anyone with the log's verifier key can check the \
             note below and recount these records.</p>\n<pre>{note}</pre>\n",
            from = esc(&self.from),
            to = esc(&self.to),
            size = cp.tree_size,
            root = esc(&cp.root),
            note = esc(&cp.note),
        );
        if self.clients.is_empty() {
            h.push_str("<p>Nothing was counted in this period.</p>\n");
        }
        for c in &self.clients {
            let _ = writeln!(h, "<h2>SP client {}</h2>", esc(&c.client_id));
            for metric in Metric::ALL {
                let keys = c.totals.get(&metric).cloned().unwrap_or_default();
                let total = headline(metric, &keys);
                let _ = writeln!(h, "<h3>{} ({total})</h3>", title(metric));
                if keys.is_empty() {
                    h.push_str("<p>None.</p>\n");
                    continue;
                }
                h.push_str("<table><tr><th>key</th><th>count</th></tr>\n");
                for (key, n) in &keys {
                    let _ = writeln!(h, "<tr><td>{}</td><td class=\"n\">{n}</td></tr>", esc(key));
                }
                h.push_str("</table>\n");
                if metric == Metric::Logins {
                    h.push_str(&bars(&keys));
                }
            }
            for (metric, what) in [
                (Metric::Logins, "Logins per day"),
                (Metric::FlowErrors, "Flow errors per day"),
            ] {
                let daily: Vec<(String, u64)> = c
                    .days
                    .iter()
                    .map(|(d, n)| (d.clone(), n.get(&metric).map_or(0, |k| k.values().sum())))
                    .collect();
                if daily.iter().any(|(_, n)| *n > 0) {
                    let _ = writeln!(h, "<h3>{what}</h3>");
                    h.push_str(&columns(&daily));
                }
            }
            if !c.months.is_empty() {
                h.push_str("<h3>Per month</h3><table><tr><th>month</th>");
                for metric in Metric::ALL {
                    let _ = write!(h, "<th>{}</th>", metric.as_str());
                }
                h.push_str("</tr>\n");
                for (month, counts) in &c.months {
                    let _ = write!(h, "<tr><td>{}</td>", esc(month));
                    for metric in Metric::ALL {
                        let n = counts.get(&metric).map_or(0, |k| headline(metric, k));
                        let _ = write!(h, "<td class=\"n\">{n}</td>");
                    }
                    h.push_str("</tr>\n");
                }
                h.push_str("</table>\n");
            }
        }
        h.push_str("</body></html>\n");
        h
    }
}

/// One number for a family: its keys' sum, but a CPR match counts under `attempt` and
/// again under its outcome, so its number is the attempts.
fn headline(metric: Metric, keys: &BTreeMap<String, u64>) -> u64 {
    if metric == Metric::CprMatches {
        keys.get("attempt").copied().unwrap_or(0)
    } else {
        keys.values().sum()
    }
}

fn title(metric: Metric) -> &'static str {
    match metric {
        Metric::Logins => "Logins by IdP and level of assurance",
        Metric::Signings => "Signings by text type",
        Metric::CprMatches => "CPR match attempts and outcomes",
        Metric::PidLookups => "NemID PID lookups by status",
        Metric::Transfers => "Controlled transfers",
        Metric::FlowErrors => "Flow errors by error code",
        Metric::MaintenanceFailures => "Failures inside announced maintenance windows, by IdP",
    }
}

/// A horizontal bar per key.
fn bars(keys: &BTreeMap<String, u64>) -> String {
    let max = keys.values().copied().max().unwrap_or(1).max(1);
    let (row, label, width) = (22u64, 220u64, 400u64);
    let height = row * keys.len() as u64 + 4;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" \
         role=\"img\" aria-label=\"bar chart\">\n",
        label + width + 60
    );
    for (i, (key, n)) in keys.iter().enumerate() {
        let y = row * i as u64 + 2;
        let w = (n * width / max).max(1);
        let _ = writeln!(
            s,
            "<text x=\"0\" y=\"{}\" font-size=\"12\">{}</text>\
             <rect x=\"{label}\" y=\"{y}\" width=\"{w}\" height=\"{}\" fill=\"#3b6ea5\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"12\">{n}</text>",
            y + 14,
            esc(key),
            row - 6,
            label + w + 4,
            y + 14
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A column per day, labelled with the day of the month.
fn columns(daily: &[(String, u64)]) -> String {
    let max = daily.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1);
    let (col, height) = (24u64, 160u64);
    let width = col * daily.len() as u64 + 10;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{}\" \
         role=\"img\" aria-label=\"column chart\">\n",
        height + 40
    );
    for (i, (day, n)) in daily.iter().enumerate() {
        let x = col * i as u64 + 5;
        let h = n * height / max;
        let _ = writeln!(
            s,
            "<rect x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{h}\" fill=\"#a5533b\">\
             <title>{}: {n}</title></rect>\
             <text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
            height + 15 - h,
            col - 4,
            esc(day),
            x + (col - 4) / 2,
            height + 30,
            esc(day.get(8..10).unwrap_or(day))
        );
    }
    s.push_str("</svg>\n");
    s
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Quoted when it holds a comma, quote or line break (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::hash::Hash32;

    fn count(client: &str, day: &str, metric: Metric, key: &str, n: u64) -> DailyCount {
        DailyCount {
            client_id: client.into(),
            day: day.into(),
            metric,
            key: key.into(),
            count: n,
        }
    }

    fn report() -> ComplianceReport {
        let cp = Checkpoint {
            tree_size: 42,
            root: Hash32::from_slice(&[7; 32]).unwrap(),
            note: "origin\n42\nroot\n\n— key sig\n".into(),
            created_micros: 0,
        };
        ComplianceReport::build(
            "2026-10-30".into(),
            "2026-11-02".into(),
            &cp,
            None,
            &[
                count("sp-a", "2026-10-31", Metric::Logins, "mitid|substantial", 2),
                count("sp-a", "2026-11-01", Metric::Logins, "mitid|substantial", 3),
                count("sp-a", "2026-11-01", Metric::FlowErrors, "x<y", 1),
                count("sp,b", "2026-11-01", Metric::Transfers, "refused", 4),
            ],
        )
    }

    #[test]
    fn days_roll_up_to_months_and_totals() {
        let j = report().to_json();
        let a = &j["clients"][1];
        assert_eq!(a["client_id"], "sp-a");
        assert_eq!(a["totals"]["logins"]["mitid|substantial"], 5);
        assert_eq!(a["months"][0]["month"], "2026-10");
        assert_eq!(a["months"][0]["counts"]["logins"]["mitid|substantial"], 2);
        assert_eq!(a["months"][1]["counts"]["logins"]["mitid|substantial"], 3);
        assert_eq!(a["days"].as_array().unwrap().len(), 2);
        assert_eq!(
            a["totals"]["signings"],
            json!({}),
            "every metric is present"
        );
        assert_eq!(j["checkpoint"]["tree_size"], 42);
    }

    #[test]
    fn csv_quotes_and_html_escapes() {
        let r = report();
        let csv = r.to_csv();
        assert!(csv.contains("\"sp,b\",total,2026-10-30..2026-11-02,transfers,refused,4,42,"));
        let html = r.to_html();
        assert!(html.contains("x&lt;y") && !html.contains("x<y"));
        assert!(html.contains("<svg") && !html.contains("<script"));
    }
}
