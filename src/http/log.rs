//! The verifiable log (SPEC sections 4 and 5) as auditors, SPs and transparency-log
//! tools read it: records' canonical bytes, signed checkpoints, the verifier key,
//! inclusion and consistency proofs, and the C2SP `tlog-tiles` layout (`/checkpoint`,
//! `/tile/…`). Readable by auditor and SP keys, or by anyone with `--public-log`.
//! Everything served is checkable with the verifier key alone: a reader recomputes
//! hashes from bytes rather than trusting one Vidne states.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{middleware, web, FromRequest, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::require;
use super::openapi::ErrorBody;
use super::{ApiError, AppState};
use crate::auth::{Principal, Role};
use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::domain::values::ClientId;
use crate::merkle::tile_path::{TileKind, TilePath};
use crate::merkle::{proof, ProofError, TILE_WIDTH};
use crate::spec::hash::Hash32;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/log/records/{seq}", web::get().to(record))
        .route("/v1/log/checkpoint", web::get().to(checkpoint))
        .route("/v1/log/checkpoints", web::post().to(sign_checkpoint))
        .route(
            "/v1/log/checkpoints/{tree_size}",
            web::get().to(checkpoint_at),
        )
        .route("/v1/log/key", web::get().to(verifier_key))
        .route("/v1/log/proof/inclusion", web::get().to(inclusion))
        .route("/v1/log/proof/consistency", web::get().to(consistency))
        .route("/checkpoint", web::get().to(checkpoint))
        // Tiles and entry bundles are gzipped for clients that ask (tlog-tiles: entry
        // bundles SHOULD be compressed at the HTTP layer).
        .service(
            web::scope("/tile")
                .wrap(middleware::Compress::default())
                .route("/{path:.*}", web::get().to(tile)),
        );
}

/// Auditors and SPs read the log.
pub fn reads_log(role: &Role) -> bool {
    matches!(role, Role::Auditor | Role::Sp(_))
}

/// Leave to read the log: anyone's when it is public, else an auditor or SP key's. An
/// SP key (on a log that is not public) reads only its own records and those its tokens
/// bind: `own` names its client, and routes that hand out records hold it to them.
pub struct LogReader {
    own: Option<ClientId>,
}

/// Entry bundles hold every SP's records.
const ENTRIES_NOT_FOR_SP: &str =
    "entry bundles hold every SP's records; an SP key reads its own at /v1/audit/records";
/// How long a record's read waits for the audit index to say whose it is.
const INDEX_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
const INDEX_BEHIND: &str = "the audit index has not yet reached this record; try again";

impl FromRequest for LogReader {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<LogReader, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let public = req
            .app_data::<web::Data<AppState>>()
            .is_some_and(|s| s.log.public);
        let principal = Principal::from_request(req, payload);
        Box::pin(async move {
            if public {
                return Ok(LogReader { own: None });
            }
            let principal = principal.await?;
            require(&principal, reads_log)?;
            Ok(LogReader {
                own: match principal.role {
                    Role::Sp(client) => Some(client),
                    _ => None,
                },
            })
        })
    }
}

impl From<ProofError> for ApiError {
    fn from(e: ProofError) -> Self {
        match e {
            ProofError::OutOfRange(reason) => ApiError::BadRequest {
                code: "invalid_request",
                description: reason,
                field: None,
            },
            e @ ProofError::Storage(_) => ApiError::Internal(e.into()),
        }
    }
}

impl From<CheckpointError> for ApiError {
    fn from(e: CheckpointError) -> Self {
        match e {
            CheckpointError::Db(e) => e.into(),
            CheckpointError::Tree(e) => e.into(),
            CheckpointError::Refused(reason) => ApiError::Conflict(reason),
        }
    }
}

/// Immutable resources (an old checkpoint, a tile) may be cached for good; the latest
/// checkpoint only briefly.
fn immutable() -> CacheControl {
    CacheControl(vec![
        CacheDirective::MaxAge(31_536_000),
        CacheDirective::Extension("immutable".into(), None),
    ])
}

fn note(c: &Checkpoint, cache: CacheControl) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header(cache)
        .body(c.note.clone())
}

/// One record's canonical bytes.
#[utoipa::path(
    get,
    path = "/v1/log/records/{seq}",
    params(("seq" = u64, Path, description = "The record's place in the ledger")),
    responses(
        (status = 200, description = "The record's canonical bytes (RFC 8785 JSON); its record hash is SHA-256(0x00 || these bytes)", content_type = "application/json"),
        (status = 400, description = "`seq` is not a number", body = ErrorBody),
        (status = 401, description = "No or unknown key (unless the log is public)", body = ErrorBody),
        (status = 403, description = "Not an auditor or SP key", body = ErrorBody),
        (status = 404, description = "No record at `seq` (for an SP key: none of its own or bound by its tokens)", body = ErrorBody),
        (status = 503, description = "SP key: the audit index has not yet reached `seq`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn record(
    reader: LogReader,
    state: web::Data<AppState>,
    seq: web::Path<u64>,
) -> Result<HttpResponse, ApiError> {
    let seq = seq.into_inner();
    const MISSING: ApiError = ApiError::Missing("no record at this seq");
    let row = state.reader.get(seq).await?.ok_or(MISSING)?;
    if let Some(own) = &reader.own {
        // Another SP's record is answered as if there were none.
        let audit = &state.audit;
        let mut may = audit.may_read(own, seq).await.map_err(ApiError::Internal)?;
        if may.is_none() {
            let index = audit.index();
            let wait = index.wait_for(seq.saturating_add(1), INDEX_WAIT);
            wait.await.map_err(ApiError::Internal)?;
            may = audit.may_read(own, seq).await.map_err(ApiError::Internal)?;
        }
        match may {
            Some(true) => {}
            Some(false) => return Err(MISSING),
            None => return Err(ApiError::NotReady(INDEX_BEHIND)),
        }
    }
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(row.canonical))
}

/// The latest signed checkpoint (also at `/checkpoint`, as C2SP tlog-tiles places it).
#[utoipa::path(
    get,
    path = "/v1/log/checkpoint",
    responses(
        (status = 200, description = "A C2SP tlog-checkpoint signed note (SPEC section 5)", content_type = "text/plain"),
        (status = 401, description = "No or unknown key (unless the log is public)", body = ErrorBody),
        (status = 403, description = "Not an auditor or SP key", body = ErrorBody),
        (status = 404, description = "No checkpoint signed yet", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn checkpoint(
    _: LogReader,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let latest = state
        .log
        .checkpoints
        .latest()
        .await?
        .ok_or(ApiError::Missing("no checkpoint has been signed yet"))?;
    Ok(note(&latest, CacheControl(vec![CacheDirective::NoCache])))
}

/// An earlier checkpoint, by its tree size.
#[utoipa::path(
    get,
    path = "/v1/log/checkpoints/{tree_size}",
    params(("tree_size" = u64, Path, description = "The size of the tree it signs")),
    responses(
        (status = 200, description = "The checkpoint signed for this tree size", content_type = "text/plain"),
        (status = 400, description = "`tree_size` is not a number", body = ErrorBody),
        (status = 401, description = "No or unknown key (unless the log is public)", body = ErrorBody),
        (status = 403, description = "Not an auditor or SP key", body = ErrorBody),
        (status = 404, description = "No checkpoint was signed for this size", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn checkpoint_at(
    _: LogReader,
    state: web::Data<AppState>,
    size: web::Path<u64>,
) -> Result<HttpResponse, ApiError> {
    let found = state
        .log
        .checkpoints
        .at(size.into_inner())
        .await?
        .ok_or(ApiError::Missing(
            "no checkpoint was signed for this tree size",
        ))?;
    Ok(note(&found, immutable()))
}

/// Sign a checkpoint of the log as it is now (admin); the latest is answered if it
/// already covers every record.
#[utoipa::path(
    post,
    path = "/v1/log/checkpoints",
    responses(
        (status = 200, description = "The checkpoint now latest", content_type = "text/plain"),
        (status = 401, description = "No or unknown key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
        (status = 409, description = "The tree is not consistent with the last checkpoint: nothing was signed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn sign_checkpoint(
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require(&principal, |r| matches!(r, Role::Admin))?;
    let signed = state.log.checkpoints.sign_head().await?;
    Ok(note(&signed, CacheControl(vec![CacheDirective::NoCache])))
}

/// The verifier key of the log's checkpoints.
#[utoipa::path(
    get,
    path = "/v1/log/key",
    responses(
        (status = 200, description = "`<origin>+<key id>+<base64(0x01 || Ed25519 public key)>`, the golang.org/x/mod/sumdb/note verifier key format", content_type = "text/plain"),
        (status = 401, description = "No or unknown key (unless the log is public)", body = ErrorBody),
        (status = 403, description = "Not an auditor or SP key", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn verifier_key(
    _: LogReader,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(format!("{}\n", state.log.checkpoints.verifier_key())))
}

/// A non-negative integer query parameter; errors name it.
pub(super) fn number(
    query: &BTreeMap<String, String>,
    name: &str,
) -> Result<Option<u64>, ApiError> {
    query
        .get(name)
        .map(|v| {
            v.parse::<u64>().map_err(|_| ApiError::BadRequest {
                code: "invalid_request",
                description: "must be a non-negative integer".into(),
                field: Some(name.to_owned()),
            })
        })
        .transpose()
}

pub(super) fn field_error(field: &str, description: impl Into<String>) -> ApiError {
    ApiError::BadRequest {
        code: "invalid_request",
        description: description.into(),
        field: Some(field.to_owned()),
    }
}

/// `tree_size` as asked, or the latest checkpoint's; never past the tree.
async fn tree_size(state: &AppState, asked: Option<u64>, field: &str) -> Result<u64, ApiError> {
    let size = match asked {
        Some(size) => size,
        None => {
            state
                .log
                .checkpoints
                .latest()
                .await?
                .ok_or(ApiError::Missing("no checkpoint has been signed yet"))?
                .tree_size
        }
    };
    let have = state.log.checkpoints.tiles().size().await?;
    if size > have {
        return Err(field_error(
            field,
            format!("is beyond the log's {have} records"),
        ));
    }
    Ok(size)
}

fn hex_all(hashes: Vec<Hash32>) -> Vec<String> {
    hashes.iter().map(Hash32::to_hex).collect()
}

/// An inclusion proof, as `vidne proof verify inclusion` and an export's
/// `proofs.jsonl` have it.
#[derive(Serialize, ToSchema)]
pub struct InclusionProof {
    pub seq: u64,
    pub tree_size: u64,
    /// RFC 9162 audit path, nearest the leaf first, lowercase hex.
    pub inclusion: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    /// RFC 9162 consistency proof, lowercase hex.
    pub consistency: Vec<String>,
}

/// The inclusion proof of record `seq` in the tree of `tree_size` records.
#[utoipa::path(
    get,
    path = "/v1/log/proof/inclusion",
    params(
        ("seq" = u64, Query, description = "The record"),
        ("tree_size" = Option<u64>, Query, description = "The tree to prove it in; the latest checkpoint's if omitted"),
    ),
    responses(
        (status = 200, description = "The proof", body = InclusionProof),
        (status = 400, description = "A parameter is missing, not a number, or out of range (named in `field`)", body = ErrorBody),
        (status = 401, description = "No or unknown key (unless the log is public)", body = ErrorBody),
        (status = 403, description = "Not an auditor or SP key", body = ErrorBody),
        (status = 404, description = "`tree_size` omitted and no checkpoint signed yet", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn inclusion(
    _: LogReader,
    state: web::Data<AppState>,
    query: web::Query<BTreeMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let seq = number(&query, "seq")?.ok_or_else(|| field_error("seq", "is required"))?;
    let size = tree_size(&state, number(&query, "tree_size")?, "tree_size").await?;
    if seq >= size {
        return Err(field_error(
            "seq",
            format!("must be below tree_size ({size})"),
        ));
    }
    // `tree_size` checked the size against the tree already: straight to the proof.
    let proof = proof::inclusion(state.log.checkpoints.tiles(), seq, size).await?;
    Ok(HttpResponse::Ok().json(InclusionProof {
        seq,
        tree_size: size,
        inclusion: hex_all(proof),
    }))
}

/// The consistency proof from the tree of `from` records to that of `to`.
#[utoipa::path(
    get,
    path = "/v1/log/proof/consistency",
    params(
        ("from" = u64, Query, description = "The older tree's size"),
        ("to" = Option<u64>, Query, description = "The newer tree's size; the latest checkpoint's if omitted"),
    ),
    responses(
        (status = 200, description = "The proof", body = ConsistencyProof),
        (status = 400, description = "A parameter is missing, not a number, or out of range (named in `field`)", body = ErrorBody),
        (status = 401, description = "No or unknown key (unless the log is public)", body = ErrorBody),
        (status = 403, description = "Not an auditor or SP key", body = ErrorBody),
        (status = 404, description = "`to` omitted and no checkpoint signed yet", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn consistency(
    _: LogReader,
    state: web::Data<AppState>,
    query: web::Query<BTreeMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let from = number(&query, "from")?.ok_or_else(|| field_error("from", "is required"))?;
    let to = tree_size(&state, number(&query, "to")?, "to").await?;
    if from > to {
        return Err(field_error("from", format!("must not be above to ({to})")));
    }
    let proof = proof::consistency(state.log.checkpoints.tiles(), from, to).await?;
    Ok(HttpResponse::Ok().json(ConsistencyProof {
        from,
        to,
        consistency: hex_all(proof),
    }))
}

/// C2SP tlog-tiles: hash tiles `tile/<L>/<N>[.p/<W>]` and entry bundles
/// `tile/entries/<N>[.p/<W>]` (records' canonical bytes, each after its length as a
/// big-endian u16). Served once the log holds all of the tile; immutable after. Entry
/// bundles hold every SP's records, so an SP key gets hash tiles only (unless the log is
/// public).
pub async fn tile(
    reader: LogReader,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tile = TilePath::parse(&path).map_err(|reason| ApiError::BadRequest {
        code: "invalid_request",
        description: reason,
        field: Some("path".into()),
    })?;
    if reader.own.is_some() && matches!(tile.kind, TileKind::Entries) {
        return Err(ApiError::ForbiddenBecause(ENTRIES_NOT_FOR_SP));
    }
    let start = tile.index.saturating_mul(TILE_WIDTH);
    let end = start.saturating_add(tile.width);
    let body = match tile.kind {
        TileKind::Hashes(level) => {
            let hashes = state
                .log
                .checkpoints
                .tiles()
                .read(level, start, end)
                .await?;
            if (hashes.len() as u64) < tile.width {
                return Err(ApiError::Missing("the log does not hold this tile (yet)"));
            }
            hashes.iter().flat_map(|h| h.0).collect::<Vec<u8>>()
        }
        TileKind::Entries => {
            let rows = state
                .reader
                .range(start, end - 1, tile.width as u32)
                .await?;
            if (rows.len() as u64) < tile.width {
                return Err(ApiError::Missing("the log does not hold this tile (yet)"));
            }
            let mut bundle = Vec::new();
            for row in rows {
                let len = u16::try_from(row.canonical.len()).map_err(|_| {
                    ApiError::Internal(anyhow::anyhow!(
                        "record {} is longer than an entry bundle can hold (65535 bytes)",
                        row.seq
                    ))
                })?;
                bundle.extend_from_slice(&len.to_be_bytes());
                bundle.extend_from_slice(&row.canonical);
            }
            bundle
        }
    };
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header(immutable())
        .body(body))
}
