//! `GET /v1/audit/records`: auditors' history queries (an SP key sees only its own
//! records). Every query that is answered is first recorded as `audit.queried`, and
//! answered only once that record is durable: no answer leaves Vidne unaudited.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use rand_core::{OsRng, RngCore};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::require;
use super::log::{field_error, number};
use super::openapi::ErrorBody;
use super::{ApiError, AppState};
use crate::audit::export::{ExportError, Exporter, Out};
use crate::audit::{Hit, Search};
use crate::auth::{Principal, Role};
use crate::domain::audit::{AuditEvent, AuditFilter, Exported, Queried, FILTER_PARAMS};
use crate::domain::LedgerEvent;
use crate::ledger::NewEvent;
use crate::merkle::proof;
use crate::record::{Event, StreamId};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/audit/records", web::get().to(records))
        .route("/v1/exports", web::post().to(export));
}

/// Records per page unless `limit` says otherwise, and the most it may say.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;
/// With proofs, each record costs a few tile reads: pages are smaller.
const MAX_LIMIT_WITH_PROOFS: u32 = 100;

/// Who may query, and whose records they see: an auditor everyone's, an SP its own.
pub fn audit_scope(
    principal: &Principal,
) -> Result<Option<crate::domain::values::ClientId>, ApiError> {
    require(principal, |r| matches!(r, Role::Auditor | Role::Sp(_)))?;
    Ok(match &principal.role {
        Role::Sp(client) => Some(client.clone()),
        _ => None,
    })
}

/// The filter of a request's parameters; an SP may not name another SP's client.
pub fn filter_of(
    state: &AppState,
    params: &BTreeMap<String, String>,
    scope: Option<&crate::domain::values::ClientId>,
) -> Result<AuditFilter, ApiError> {
    let filter = AuditFilter::from_params(|k| params.get(k).cloned(), &state.sessions.pepper)?;
    if let Some(own) = scope {
        if filter.client_ids.iter().any(|asked| asked != own) {
            return Err(ApiError::BadRequest {
                code: "invalid_request",
                description: "an SP key sees only its own client's records".into(),
                field: Some("client_id".into()),
            });
        }
    }
    Ok(filter)
}

#[derive(Serialize, ToSchema)]
pub struct AuditRecord {
    pub seq: u64,
    /// The record hash, SHA-256(0x00 || canonical), lowercase hex.
    pub hash: String,
    /// The record's canonical bytes (RFC 8785 JSON), exactly as hashed.
    pub canonical: String,
    /// With `proof=true`: the RFC 9162 inclusion path in `checkpoint`'s tree, lowercase
    /// hex; `null` for a record the checkpoint does not yet cover.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inclusion: Option<Option<Vec<String>>>,
}

#[derive(Serialize, ToSchema)]
pub struct ProofCheckpoint {
    pub tree_size: u64,
    /// Root hash, lowercase hex.
    pub root: String,
    /// The signed note (SPEC section 5).
    pub note: String,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    /// Pass as `cursor` for the next page; absent when no more records match below
    /// `indexed_through`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// Records below this `seq` were searched; later ones are not indexed yet.
    pub indexed_through: u64,
    /// With `proof=true`: the checkpoint the proofs are in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<ProofCheckpoint>,
    /// The `seq` of this query's own `audit.queried` record.
    pub audit_seq: u64,
}

/// Records matching a filter, a page at a time, in `seq` order.
#[utoipa::path(
    get,
    path = "/v1/audit/records",
    params(
        ("stream" = Option<String>, Query, description = "Only this stream (`session:…`, `transfer:…`, `client:…`)"),
        ("type" = Option<String>, Query, description = "Only this event type"),
        ("client_id" = Option<String>, Query, description = "Only records of this SP client, or of any of several separated by commas (a session's records belong to its transactions' clients)"),
        ("idp" = Option<String>, Query, description = "Only records of transactions with this IdP"),
        ("transaction_id" = Option<String>, Query, description = "Only this transaction's records"),
        ("subject" = Option<String>, Query, description = "Only records of sessions this person (`subject_key`, `<idp>:<id>`) logged in to, from the login on, and queries for them"),
        ("cpr" = Option<String>, Query, description = "Only records naming this CPR: the service computes its `cpr_ref`; the number is neither logged nor stored"),
        ("cpr_ref" = Option<String>, Query, description = "Only records naming this `cpr_ref`"),
        ("from_time" = Option<String>, Query, description = "Records at or after this RFC 3339 instant"),
        ("to_time" = Option<String>, Query, description = "Records before this RFC 3339 instant"),
        ("from_seq" = Option<u64>, Query, description = "Records from this `seq`"),
        ("to_seq" = Option<u64>, Query, description = "Records up to and including this `seq`"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the page before"),
        ("limit" = Option<u32>, Query, description = "Records per page: 1 to 1000 (100 with proofs), default 100"),
        ("proof" = Option<bool>, Query, description = "Add each record's inclusion proof in the latest checkpoint"),
    ),
    responses(
        (status = 200, description = "A page of records, oldest first", body = AuditPage),
        (status = 400, description = "A parameter is unknown or malformed (named in `field`)", body = ErrorBody),
        (status = 401, description = "No or unknown key", body = ErrorBody),
        (status = 403, description = "Not an auditor or SP key", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn records(
    principal: Principal,
    state: web::Data<AppState>,
    query: web::Query<BTreeMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let scope = audit_scope(&principal)?;
    let params = query.into_inner();
    const PAGE_PARAMS: &[&str] = &["cursor", "limit", "proof"];
    if let Some(unknown) = params
        .keys()
        .find(|k| !FILTER_PARAMS.contains(&k.as_str()) && !PAGE_PARAMS.contains(&k.as_str()))
    {
        return Err(field_error(unknown, "is not a parameter of this route"));
    }
    let filter = filter_of(&state, &params, scope.as_ref())?;
    let proofs = match params.get("proof").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(field_error("proof", "must be true or false")),
    };
    let max = if proofs {
        MAX_LIMIT_WITH_PROOFS
    } else {
        MAX_LIMIT
    };
    let limit = match number(&params, "limit")? {
        None => DEFAULT_LIMIT.min(max),
        Some(n) if (1..=u64::from(max)).contains(&n) => n as u32,
        Some(_) => {
            return Err(field_error(
                "limit",
                if proofs {
                    "must be 1 to 100 with proof=true"
                } else {
                    "must be 1 to 1000"
                },
            ))
        }
    };
    let cursor = number(&params, "cursor")?;
    let page = state
        .audit
        .search(&Search {
            filter: &filter,
            client: scope.as_ref(),
            cursor,
            limit,
        })
        .await
        .map_err(ApiError::Internal)?;
    let checkpoint = if proofs {
        state.log.checkpoints.latest().await?
    } else {
        None
    };
    let mut records = Vec::with_capacity(page.hits.len());
    for Hit {
        seq,
        hash,
        canonical,
    } in &page.hits
    {
        let inclusion = match (&checkpoint, proofs) {
            (Some(c), true) if *seq < c.tree_size => Some(Some(
                proof::inclusion(state.log.checkpoints.tiles(), *seq, c.tree_size)
                    .await?
                    .iter()
                    .map(|h| h.to_hex())
                    .collect(),
            )),
            (_, true) => Some(None),
            (_, false) => None,
        };
        records.push(AuditRecord {
            seq: *seq,
            hash: hex::encode(hash),
            canonical: String::from_utf8(canonical.clone())
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("record {seq}: {e}")))?,
            inclusion,
        });
    }
    let queried = AuditEvent::Queried(Queried {
        role: principal.role.to_string(),
        client_id: scope.clone(),
        filter: match filter.to_json() {
            serde_json::Value::Object(m) => m,
            _ => unreachable!("to_json gives an object"),
        },
        cursor,
        limit: u64::from(limit),
        proofs,
        returned: records.len() as u64,
        first_seq: records.first().map(|r| r.seq),
        last_seq: records.last().map(|r| r.seq),
        at: state.now()?,
    });
    let audit_seq = record_query(&state, &principal, &queried).await?;
    Ok(HttpResponse::Ok().json(AuditPage {
        records,
        next_cursor: page.next.map(|n| n.to_string()),
        indexed_through: page.indexed_through,
        checkpoint: checkpoint.map(|c| ProofCheckpoint {
            tree_size: c.tree_size,
            root: c.root.to_hex(),
            note: c.note,
        }),
        audit_seq,
    }))
}

/// Appends `event` on a stream of its own (`audit:<random id>`) and waits until it is
/// durable; returns its `seq`.
pub async fn record_query(
    state: &AppState,
    principal: &Principal,
    event: &AuditEvent,
) -> Result<u64, ApiError> {
    let mut id = [0u8; 16];
    OsRng.fill_bytes(&mut id);
    let (event_type, version, data) = event.to_record_parts()?;
    let appended = state
        .ledger
        .append(vec![NewEvent {
            stream_seq: 1,
            event: Event {
                stream: StreamId::parse(format!("audit:{}", hex::encode(id)))?,
                event_type,
                version,
                actor: principal.actor()?,
                data,
            },
        }])
        .await?;
    state.audit.index().nudge();
    Ok(appended[0].seq)
}

impl From<ExportError> for ApiError {
    fn from(e: ExportError) -> Self {
        match e {
            ExportError::Invalid(f) => f.into(),
            ExportError::Empty => ApiError::Missing("no records match the filter"),
            ExportError::Checkpoint(e) => e.into(),
            e => ApiError::Internal(e.into()),
        }
    }
}

/// An export bundle (SPEC section 7) as a `.tar`: the records the filter selects (a
/// contiguous export when it names only a `seq` range), a signed checkpoint, their
/// inclusion proofs and the signed manifest. Verify it with `vidne export verify`.
#[utoipa::path(
    post,
    path = "/v1/exports",
    request_body(content = Object, description = "The filter: any of the members `GET /v1/audit/records` takes as parameters (`client_id`, `from_time`, `to_time`, `from_seq`, `to_seq`, `type`, `stream`, `idp`, `transaction_id`, `subject`, `cpr`, `cpr_ref`), as strings or integers, and `client_id` also as an array of several; `{}` exports the whole ledger"),
    responses(
        (status = 200, description = "The bundle, a tar of one directory", content_type = "application/x-tar"),
        (status = 400, description = "A member is unknown or malformed (named in `field`)", body = ErrorBody),
        (status = 401, description = "No or unknown key", body = ErrorBody),
        (status = 403, description = "Not an auditor key", body = ErrorBody),
        (status = 404, description = "No record matches", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn export(
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<serde_json::Map<String, serde_json::Value>>,
) -> Result<HttpResponse, ApiError> {
    require(&principal, |r| *r == Role::Auditor)?;
    let mut params = BTreeMap::new();
    for (k, v) in body.into_inner() {
        if !FILTER_PARAMS.contains(&k.as_str()) {
            return Err(field_error(&k, "is not a member of an export request"));
        }
        let text = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            // Several clients, as the query string's comma-separated list.
            serde_json::Value::Array(list) if k == "client_id" => list
                .iter()
                .map(|c| {
                    c.as_str()
                        .ok_or_else(|| field_error(&k, "must list strings"))
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            _ => return Err(field_error(&k, "must be a string or an integer")),
        };
        params.insert(k, text);
    }
    let filter = filter_of(&state, &params, None)?;
    let mut id = [0u8; 16];
    OsRng.fill_bytes(&mut id);
    let path = std::env::temp_dir().join(format!("vidne-export-{}.tar", hex::encode(id)));
    let exported = Exporter {
        reader: &state.reader,
        audit: &state.audit,
        checkpoints: &state.log.checkpoints,
    }
    .export(&filter, &Out::Tar(path.clone()), &|_, _| {})
    .await;
    // The open file outlives its name: nothing is left behind whatever happens next.
    let file = exported.as_ref().ok().map(|_| std::fs::File::open(&path));
    let _ = std::fs::remove_file(&path);
    let exported = exported?;
    let file = file
        .expect("opened when exported")
        .map_err(|e| ApiError::Internal(e.into()))?;
    let size = file
        .metadata()
        .map_err(|e| ApiError::Internal(e.into()))?
        .len();
    let event = AuditEvent::Exported(Exported {
        role: principal.role.to_string(),
        filter: match filter.to_json() {
            serde_json::Value::Object(m) if filter.selects() => m,
            _ => serde_json::Map::new(),
        },
        count: exported.count,
        from_seq: exported.from_seq,
        to_seq: exported.to_seq,
        tree_size: exported.tree_size,
        manifest_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&exported.manifest)),
        at: state.now()?,
    });
    let audit_seq = record_query(&state, &principal, &event).await?;
    let chunks = futures::stream::try_unfold(file, |mut file| async move {
        let (file, chunk) = web::block(move || {
            use std::io::Read;
            let mut buf = vec![0u8; 64 * 1024];
            let n = file.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>((file, buf))
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok::<_, std::io::Error>((!chunk.is_empty()).then(|| (web::Bytes::from(chunk), file)))
    });
    Ok(HttpResponse::Ok()
        .content_type("application/x-tar")
        .insert_header((
            "Content-Disposition",
            format!(
                "attachment; filename=\"vidne-export-{}-{}.tar\"",
                exported.from_seq, exported.to_seq
            ),
        ))
        .insert_header(("Vidne-Audit-Seq", audit_seq.to_string()))
        .body(actix_web::body::SizedStream::new(size, chunks)))
}
