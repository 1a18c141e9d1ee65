//! The token commands: `vidne keys rotate-signing`, `vidne keys list-signing` and
//! `vidne token verify`. Each returns the process exit code.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};

use super::keys::{parse_duration, SigningKeys};
use super::lookup::{DbLedger, HttpLedger};
use super::verify::{check_binding, verify, Binding, DecryptKey, TokenError, Verified};
use super::Alg;
use crate::db::{DatabaseUrl, Db};
use crate::ledger::Reader;

#[derive(Args, Debug)]
pub struct RotateArgs {
    /// The signing key directory.
    #[arg(long = "keys", env = "VIDNE_SIGNING_KEYS")]
    pub dir: PathBuf,
    /// EdDSA (Ed25519) or ES256 (P-256).
    #[arg(long, default_value = "EdDSA")]
    pub alg: Alg,
    /// How long the new key is published before it signs (e.g. 24h, 90m, 0s): longer
    /// than relying parties cache the JWKS.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub publish_lead: Duration,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// The signing key directory.
    #[arg(long = "keys", env = "VIDNE_SIGNING_KEYS")]
    pub dir: PathBuf,
    /// Print one JSON array on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `vidne keys rotate-signing`: prints the new kid and when it signs, never key material.
pub fn rotate_signing(args: &RotateArgs) -> anyhow::Result<u8> {
    let r = SigningKeys::rotate(&args.dir, args.alg, chrono::Utc::now(), args.publish_lead)?;
    println!("kid {}", r.kid);
    println!("alg {}", r.alg);
    println!("signs_from {}", time(r.signs_from));
    for (kid, at) in &r.retiring {
        println!("retires {kid} {}", time(at.to_owned()));
    }
    Ok(0)
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `vidne keys list-signing`: every key with its state now.
pub fn list_signing(args: &ListArgs) -> anyhow::Result<u8> {
    let keys = SigningKeys::open(&args.dir)?;
    let now = chrono::Utc::now();
    let rows: Vec<Value> = keys
        .keys()
        .iter()
        .map(|k| {
            json!({
                "kid": k.kid(), "alg": k.alg().as_str(), "state": k.state(now).to_string(),
                "created_at": time(k.created_at()), "signs_from": time(k.signs_from()),
                "retired_at": k.retired_at().map(time),
            })
        })
        .collect();
    if args.json {
        println!("{}", Value::Array(rows));
        return Ok(0);
    }
    println!(
        "{:<43}  {:<5}  {:<7}  {:<20}  {:<20}  retired_at",
        "kid", "alg", "state", "created_at", "signs_from"
    );
    for r in rows {
        let s = |m: &str| r[m].as_str().unwrap_or("-").to_owned();
        println!(
            "{:<43}  {:<5}  {:<7}  {:<20}  {:<20}  {}",
            s("kid"),
            s("alg"),
            s("state"),
            s("created_at"),
            s("signs_from"),
            s("retired_at")
        );
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The token (a JWS, or a JWE holding one): a file, or `-` for standard input.
    pub token: String,
    /// The service's base URL: JWKS from `{url}/.well-known/jwks.json`, and (with
    /// --key) the binding from `{url}/v1/log/records/{seq}`.
    #[arg(long)]
    pub url: Option<String>,
    /// API key for --url's ledger records.
    #[arg(long, env = "VIDNE_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// The JWKS as a file (instead of fetching it from --url).
    #[arg(long)]
    pub jwks: Option<PathBuf>,
    /// Check the binding straight from this database (instead of through --url).
    #[arg(long)]
    pub database: Option<DatabaseUrl>,
    /// PEM private key to decrypt an encrypted token (RSA, or EC P-256).
    #[arg(long)]
    pub decrypt_key: Option<PathBuf>,
    /// The ledger origin the token must name.
    #[arg(long)]
    pub origin: Option<String>,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The exit codes of `vidne token verify`.
pub mod exit {
    pub const VALID: u8 = 0;
    pub const INVALID: u8 = 1;
    pub const UNAVAILABLE: u8 = 2;
    pub const BINDING_NOT_CHECKED: u8 = 3;
}

/// `vidne token verify`: 0 valid and bound to the ledger; 1 invalid, naming the check; 2
/// inputs unreadable or the service or database unreachable; 3 valid but the binding was
/// not checked (no ledger given).
pub async fn verify_token(args: &VerifyArgs) -> u8 {
    let unavailable = |msg: String| report_error(args.json, &msg);
    let token = match read_input(&args.token) {
        Ok(t) => t,
        Err(e) => return unavailable(format!("cannot read the token {}: {e}", args.token)),
    };
    let decrypt_key = match &args.decrypt_key {
        None => None,
        Some(path) => match std::fs::read_to_string(path) {
            Err(e) => return unavailable(format!("cannot read {}: {e}", path.display())),
            Ok(pem) => match DecryptKey::from_pem(&pem) {
                Ok(k) => Some(k),
                Err(e) => return unavailable(format!("--decrypt-key {}: {e}", path.display())),
            },
        },
    };
    let jwks = match load_jwks(args).await {
        Ok(j) => j,
        Err(e) => return unavailable(e),
    };
    let verified = match verify(&token, &jwks, decrypt_key.as_ref()) {
        Ok(v) => v,
        // Not a verdict on the token: an input is missing.
        Err(e @ TokenError::DecryptKeyRequired) => {
            return unavailable(format!("{e}: give --decrypt-key"))
        }
        Err(e) => return report_invalid(args.json, &e),
    };
    let checked = match (&args.database, &args.url, &args.key) {
        (Some(db), _, _) => {
            if let DatabaseUrl::Sqlite(path) = db {
                if !path.exists() {
                    return unavailable(format!("no database at {}", path.display()));
                }
            }
            let conn = match Db::connect(db, "vidne-token-verify", 1).await {
                Ok(c) => c,
                Err(e) => return unavailable(e.to_string()),
            };
            let lookup = DbLedger::new(Reader::new(conn.clone()));
            let result = check_binding(&verified.claims, &lookup, args.origin.as_deref()).await;
            conn.close().await;
            Some((result, db.to_string()))
        }
        (None, Some(url), Some(key)) => {
            let lookup = HttpLedger::new(url, key);
            let result = check_binding(&verified.claims, &lookup, args.origin.as_deref()).await;
            Some((result, url.clone()))
        }
        _ => None,
    };
    match checked {
        None => report_valid(args.json, &verified, None),
        Some((Ok(_), against)) => report_valid(args.json, &verified, Some(&against)),
        Some((Err(e @ TokenError::Lookup(_)), _)) => unavailable(e.to_string()),
        Some((Err(e), _)) => report_invalid(args.json, &e),
    }
}

fn read_input(name: &str) -> std::io::Result<String> {
    let mut text = String::new();
    if name == "-" {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        std::fs::File::open(Path::new(name))?.read_to_string(&mut text)?;
    }
    Ok(text)
}

async fn load_jwks(args: &VerifyArgs) -> Result<Value, String> {
    if let Some(path) = &args.jwks {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        return serde_json::from_str(&text)
            .map_err(|e| format!("{} is not JSON: {e}", path.display()));
    }
    let Some(base) = &args.url else {
        return Err("give the JWKS: --jwks FILE, or --url of the service".into());
    };
    let url = format!("{}/.well-known/jwks.json", base.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("cannot fetch {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url} answered HTTP {}", resp.status()));
    }
    resp.json()
        .await
        .map_err(|e| format!("{url} is not JSON: {e}"))
}

fn report_error(json: bool, msg: &str) -> u8 {
    if json {
        println!("{}", json!({"ok": false, "result": "error", "error": msg}));
    } else {
        eprintln!("error: {msg}");
    }
    exit::UNAVAILABLE
}

fn report_invalid(json: bool, e: &TokenError) -> u8 {
    if json {
        println!(
            "{}",
            json!({"ok": false, "result": "invalid", "check": e.check(), "reason": e.to_string()})
        );
    } else {
        println!("INVALID ({}): {e}", e.check());
    }
    exit::INVALID
}

fn binding_json(b: &Binding) -> Value {
    json!({
        "origin": b.origin,
        "records": b.records.iter().map(|(s, h)| json!({"seq": s, "hash": h.to_hex()})).collect::<Vec<_>>(),
    })
}

fn report_valid(json: bool, v: &Verified, against: Option<&str>) -> u8 {
    let seqs: Vec<String> = v.binding.records.iter().map(|r| r.0.to_string()).collect();
    let code = if against.is_some() {
        exit::VALID
    } else {
        exit::BINDING_NOT_CHECKED
    };
    if json {
        let mut binding = binding_json(&v.binding);
        binding["checked"] = against.is_some().into();
        binding["against"] = against.map_or(Value::Null, Value::from);
        println!(
            "{}",
            json!({
                "ok": against.is_some(),
                "result": if against.is_some() { "valid" } else { "binding_not_checked" },
                "encrypted": v.encrypted, "jwe_header": v.jwe_header, "header": v.header,
                "claims": v.claims, "binding": binding,
            })
        );
        return code;
    }
    let how = format!(
        "{}, kid {}{}",
        v.header["alg"].as_str().unwrap_or_default(),
        v.header["kid"].as_str().unwrap_or_default(),
        match &v.jwe_header {
            Some(h) => format!(
                ", encrypted with {}/{}",
                h["alg"].as_str().unwrap_or_default(),
                h["enc"].as_str().unwrap_or_default()
            ),
            None => String::new(),
        }
    );
    match against {
        Some(a) => println!(
            "ok: signature valid ({how}); ledger binding holds: seq {} of {} found in {a}",
            seqs.join(", "),
            v.binding.origin
        ),
        None => println!(
            "signature valid ({how}); ledger binding NOT checked (seq {} of {}): give \
             --database, or --url with --key, to check it",
            seqs.join(", "),
            v.binding.origin
        ),
    }
    code
}
