//! `GET /v1/reports/compliance`: an SP's (or every SP's) compliance counts for a period,
//! as JSON, CSV or HTML, naming the signed checkpoint they were counted from. An auditor
//! sees every SP; an SP key its own.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{web, HttpResponse};
use chrono::NaiveDate;

use super::audit::audit_scope;
use super::log::field_error;
use super::openapi::ErrorBody;
use super::{ApiError, AppState};
use crate::audit::report::ComplianceReport;
use crate::domain::values::ClientId;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/reports/compliance", web::get().to(compliance));
}

/// The longest period one report covers, in days.
const MAX_DAYS: i64 = 366;
/// Days before `to` that `from` defaults to.
const DEFAULT_DAYS: i64 = 30;
/// How long a request waits for the counts to reach the latest checkpoint.
const CATCH_UP: Duration = Duration::from_secs(2);

fn day(params: &BTreeMap<String, String>, name: &str) -> Result<Option<NaiveDate>, ApiError> {
    params
        .get(name)
        .map(|v| {
            NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .ok()
                .filter(|d| d.format("%Y-%m-%d").to_string() == *v)
                .ok_or_else(|| field_error(name, "must be a day, YYYY-MM-DD"))
        })
        .transpose()
}

/// Counts per SP client and UTC day of the period `from`..=`to` (days, `YYYY-MM-DD`;
/// default: the 30 days to today), with month roll-ups and totals.
#[utoipa::path(
    get,
    path = "/v1/reports/compliance",
    params(
        ("client_id" = Option<String>, Query, description = "One SP client (an SP key: its own, the default); an auditor without it gets every client"),
        ("from" = Option<String>, Query, description = "First day, YYYY-MM-DD (UTC); default 30 days before `to`"),
        ("to" = Option<String>, Query, description = "Last day, YYYY-MM-DD (UTC), included; default today; at most 366 days after `from`"),
        ("format" = Option<String>, Query, description = "json (default), csv or html"),
    ),
    responses(
        (status = 200, description = "The report: JSON, CSV (one row per count) or an HTML page with inline SVG charts; each names its checkpoint (`tree_size`, `root`, signed note)"),
        (status = 400, description = "A parameter is unknown or malformed (named in `field`)", body = ErrorBody),
        (status = 401, description = "No or unknown key", body = ErrorBody),
        (status = 403, description = "Not an auditor or SP key", body = ErrorBody),
        (status = 503, description = "No signed checkpoint has been counted yet", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn compliance(
    principal: crate::auth::Principal,
    state: web::Data<AppState>,
    query: web::Query<BTreeMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let scope = audit_scope(&principal)?;
    let params = query.into_inner();
    if let Some(unknown) = params
        .keys()
        .find(|k| !["client_id", "from", "to", "format"].contains(&k.as_str()))
    {
        return Err(field_error(unknown, "is not a parameter of this route"));
    }
    let asked = params
        .get("client_id")
        .map(|c| ClientId::parse(c.clone()))
        .transpose()?;
    let client = match (&scope, asked) {
        (Some(own), Some(asked)) if *own != asked => {
            return Err(field_error(
                "client_id",
                "an SP key sees only its own client's reports",
            ))
        }
        (Some(own), _) => Some(own.clone()),
        (None, asked) => asked,
    };
    let format = params.get("format").map_or("json", String::as_str);
    if !["json", "csv", "html"].contains(&format) {
        return Err(field_error("format", "must be json, csv or html"));
    }
    let to = day(&params, "to")?.unwrap_or_else(|| chrono::Utc::now().date_naive());
    let from = day(&params, "from")?.unwrap_or(to - chrono::Duration::days(DEFAULT_DAYS));
    if from > to {
        return Err(field_error("to", "must not be before from"));
    }
    if (to - from).num_days() >= MAX_DAYS {
        return Err(field_error("to", "must be at most 366 days after from"));
    }

    // Counts reach a checkpoint shortly after it is signed; wait a little for the latest.
    if let Some(latest) = state.log.checkpoints.latest().await? {
        state.reports.nudge();
        state
            .reports
            .wait_for(latest.tree_size, CATCH_UP)
            .await
            .map_err(ApiError::Internal)?;
    }
    let (from, to) = (from.to_string(), to.to_string());
    let (size, counts) = state
        .reports
        .counts(client.as_ref().map(ClientId::as_str), &from, &to)
        .await
        .map_err(ApiError::Internal)?;
    if size == 0 {
        return Err(ApiError::NotReady(
            "no signed checkpoint has been counted yet; try again shortly",
        ));
    }
    let checkpoint = state.log.checkpoints.at(size).await?.ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!(
            "reports counted to {size}, no checkpoint of it"
        ))
    })?;
    let client = client.as_ref().map(ClientId::as_str);
    let report = ComplianceReport::build(from, to, &checkpoint, client, &counts);
    let (content_type, body) = match format {
        "csv" => ("text/csv; charset=utf-8", report.to_csv()),
        "html" => ("text/html; charset=utf-8", report.to_html()),
        _ => ("application/json", report.to_json().to_string()),
    };
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, content_type))
        .insert_header((CACHE_CONTROL, "no-store"))
        .insert_header(("Vidne-Checkpoint-Size", size.to_string()))
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'",
        ))
        .body(body))
}
