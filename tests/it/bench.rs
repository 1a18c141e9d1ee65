//! The token benches run and report, with tiny parameters. Smoke tests: they check the
//! lines and that every figure is a positive number, never a speed.

use crate::both_backends;
use crate::helpers::{vidne, Backend, TestDb};

/// The number just before `unit` on `line` (`"  … 1234 req/s …"`).
fn figure_before(line: &str, unit: &str) -> f64 {
    let head = line
        .split(unit)
        .next()
        .unwrap_or_else(|| panic!("no {unit} in {line}"));
    let word = head.split_whitespace().last().unwrap_or_default();
    word.trim_start_matches('(')
        .parse()
        .unwrap_or_else(|_| panic!("no figure before {unit} in {line:?}"))
}

/// The number just after `label` on `line` (`"… ratio 0.15"`).
fn figure_after(line: &str, label: &str) -> f64 {
    let (_, tail) = line
        .split_once(label)
        .unwrap_or_else(|| panic!("no {label} in {line:?}"));
    let word = tail
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_end_matches([',', ')']);
    word.parse()
        .unwrap_or_else(|_| panic!("no figure after {label} in {line:?}"))
}

fn the_line<'a>(out: &'a str, starts: &str) -> &'a str {
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with(starts))
        .collect();
    assert_eq!(lines.len(), 1, "one line starting {starts:?} in:\n{out}");
    lines[0]
}

#[test]
fn bench_tokens_reports_each_case_next_to_the_baseline() {
    let (code, out, err) = vidne(&["bench", "tokens", "--tokens", "40"]);
    assert_eq!(code, 0, "{out}{err}");
    let head = the_line(&out, "vidne bench tokens: 40 tokens per case");
    assert!(head.contains("ledger binding of 5 records"), "{head}");
    assert!(head.contains(if cfg!(debug_assertions) {
        "debug build"
    } else {
        "release build"
    }));
    let baseline = the_line(&out, "ed25519-dalek sign");
    assert!(baseline.ends_with("(the baseline)"), "{baseline}");
    assert!(figure_before(baseline, "signatures/s") > 0.0, "{baseline}");
    for case in [
        "token::sign EdDSA (JWS)",
        "token::sign ES256 (JWS)",
        "sign EdDSA + encrypt RSA-OAEP-256/A256GCM (2048)",
        "sign EdDSA + encrypt ECDH-ES+A256KW/A256GCM (P-256)",
        "parse the registered PEM (RSA) + encrypt",
        "encrypt alone (RSA, key parsed once)",
        "parse the registered PEM (P-256) + encrypt",
        "encrypt alone (P-256, key parsed once)",
        "40 tokens from 200 records in",
    ] {
        let line = the_line(&out, case);
        assert!(figure_before(line, "tokens/s") > 0.0, "{line}");
        assert!(figure_after(line, "ratio") > 0.0, "{line}");
    }
    the_line(&out, "per fetch of a JWE client");
    the_line(&out, "projection end to end, SQLite");
}

both_backends!(
    bench_fetch_reports_tokens_and_healthz_under_the_same_load,
    bench_append_reports_the_ledger_next_to_the_baseline,
);

async fn bench_append_reports_the_ledger_next_to_the_baseline(backend: Backend) {
    let db = TestDb::new(backend).await;
    let url = db.url_string();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        vidne(&[
            "bench",
            "append",
            "--database",
            &url,
            "--records",
            "900",
            "--appenders",
            "16",
            "--rounds",
            "3",
        ])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let head = the_line(&out, "vidne bench append");
    assert!(head.contains("900 records, 16 appenders"), "{head}");
    assert!(head.contains("3 rounds"), "{head}");
    let ledger = the_line(&out, "ledger append (chained, group commit):");
    assert!(figure_before(ledger, "records/s") > 0.0, "{ledger}");
    assert!(ledger.contains("(900 in"), "{ledger}");
    let baseline = the_line(&out, "baseline (plain INSERT, unchained):");
    assert!(figure_before(baseline, "records/s") > 0.0, "{baseline}");
    assert!(baseline.contains("16 rows per transaction"), "{baseline}");
    let ratio = the_line(&out, "ratio ledger / baseline:");
    for label in ["baseline:", "lowest", "median", "highest"] {
        assert!(figure_after(ratio, label) > 0.0, "{ratio}");
    }
    let verify = the_line(&out, "vidne verify (whole ledger):");
    assert!(figure_before(verify, "records/s") > 0.0, "{verify}");
    assert!(verify.contains("(900 in"), "{verify}");
    assert!(figure_before(the_line(&out, "SHA-256 alone"), "records/s") > 0.0);
}

async fn bench_fetch_reports_tokens_and_healthz_under_the_same_load(backend: Backend) {
    let db = TestDb::new(backend).await;
    let url = db.url_string();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        vidne(&[
            "bench",
            "fetch",
            "--database",
            &url,
            "--tokens",
            "8",
            "--seconds",
            "1",
            "--connections",
            "4",
        ])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let head = the_line(&out, "vidne bench fetch:");
    let backend_name = match backend {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
    };
    assert!(head.contains(backend_name), "{head}");
    assert!(head.contains(if cfg!(debug_assertions) {
        "debug build"
    } else {
        "release build"
    }));
    assert!(the_line(&out, "service in this process").contains("workers the default"));
    assert!(the_line(&out, "load: 4 connections").contains("1 s per target"));
    assert!(the_line(&out, "setup: 3 clients x 8 completed transactions").contains("checked"));
    for target in [
        "GET token, JWS EdDSA (8 ids)",
        "GET token, JWE RSA-OAEP-256 (2048), EdDSA inside (8 ids)",
        "GET token, JWE ECDH-ES+A256KW (P-256), EdDSA inside (8 ids)",
        "GET /healthz (the baseline)",
    ] {
        let line = the_line(&out, target);
        assert!(figure_before(line, "req/s") > 0.0, "{line}");
        let (p50, p99) = (figure_after(line, "p50"), figure_after(line, "p99"));
        assert!(p50 > 0.0 && p99 >= p50, "{line}");
        assert!(figure_before(line, "requests in") > 0.0, "{line}");
    }
    for label in ["JWS EdDSA", "JWE RSA-OAEP-256", "JWE ECDH-ES+A256KW"] {
        let line = the_line(&out, &format!("ratio token / healthz, {label}"));
        assert!(figure_after(line, "req/s") > 0.0, "{line}");
        assert!(figure_after(line, "p99") > 0.0, "{line}");
    }
}
