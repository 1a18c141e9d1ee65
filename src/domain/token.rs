//! The claims of a transaction token (seed 002, "transaction token": "a NEB sealed record
//! of the transaction ... including all the relevant parameters used to complete the
//! transaction"). [`SessionTokens`] folds one session's records in ledger order and, when
//! a transaction completes, yields its claims with the ledger binding: the `seq` and
//! record hash of every record the token seals. Pure: no keys, no SQL; the issuer and the
//! ledger's origin come in, and every time is a record's, so a rebuild from the ledger
//! gives the same claims.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::domain::session::SessionEvent;
use crate::domain::transfer::CodeExchanged;
use crate::domain::values::{
    ClientId, Environment, IdentityType, Idp, NsisLevel, SessionId, Timestamp, TransactionId,
    TransactionTextType,
};

/// A record a token seals: its place in the ledger and its record hash (hex).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordRef {
    pub seq: u64,
    pub hash: String,
}

/// What every token of a deployment shares.
#[derive(Clone, Debug)]
pub struct TokenContext {
    /// `iss`.
    pub issuer: String,
    /// The ledger's origin (SPEC section 5), named in the binding.
    pub origin: String,
}

/// A sealed transaction's claims.
#[derive(Clone, Debug, PartialEq)]
pub struct SealedClaims {
    pub transaction_id: TransactionId,
    pub client_id: ClientId,
    /// The client's environment: its registration there says how to seal.
    pub environment: Option<Environment>,
    /// The `seq` of the `session.transaction_completed` record.
    pub completed_seq: u64,
    /// The `seq`s of the records the token binds (its `ledger.records`), ascending.
    pub bound: Vec<u64>,
    pub claims: Map<String, Value>,
}

/// The identity a login established, which SSO reuse carries into later transactions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Login {
    idp: Idp,
    identity_type: IdentityType,
    loa: Option<NsisLevel>,
    ial: Option<NsisLevel>,
    aal: Option<NsisLevel>,
    amr: Vec<String>,
    subject: BTreeMap<String, String>,
    subject_key: String,
    psd2: Option<bool>,
    at: Timestamp,
    record: RecordRef,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Signing {
    text_sha256: String,
    text_type: TransactionTextType,
    reference_text: Option<String>,
}

/// A transaction not yet completed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Draft {
    /// The environment the transaction's client is registered in.
    environment: Option<Environment>,
    login: Option<Login>,
    /// The seed's `transaction_actions`, in the order first performed.
    actions: Vec<String>,
    signing: Option<Signing>,
    records: Vec<RecordRef>,
}

impl Draft {
    fn act(&mut self, action: &str) {
        if !self.actions.iter().any(|a| a == action) {
            self.actions.push(action.to_owned());
        }
    }
}

/// The token projection's state for one session, kept between records (it serializes,
/// so the projection can store it beside its position).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionTokens {
    /// The session's latest login.
    login: Option<Login>,
    open: BTreeMap<TransactionId, Draft>,
}

impl SessionTokens {
    /// Folds one record of the session; returns the claims when it completes a
    /// transaction.
    pub fn apply(
        &mut self,
        session_id: &SessionId,
        record: RecordRef,
        event: &SessionEvent,
        ctx: &TokenContext,
    ) -> Option<SealedClaims> {
        use SessionEvent as E;
        match event {
            E::TransactionStarted(e) => {
                let draft = self.open.entry(e.transaction_id.clone()).or_default();
                draft.environment = Some(e.environment);
                draft.records.push(record);
            }
            E::LoginCompleted(e) => {
                let login = Login {
                    idp: e.idp,
                    identity_type: e.identity_type,
                    loa: e.loa,
                    ial: e.ial,
                    aal: e.aal,
                    amr: e.amr.clone(),
                    subject: e.subject.clone(),
                    subject_key: e.subject_key.clone(),
                    psd2: e.psd2,
                    at: e.at,
                    record: record.clone(),
                };
                self.login = Some(login.clone());
                let draft = self.open.entry(e.transaction_id.clone()).or_default();
                for action in login_actions(e.idp) {
                    draft.act(action);
                }
                draft.login = Some(login);
                draft.records.push(record);
            }
            E::SsoReused(e) => {
                let login = self.login.clone();
                let draft = self.open.entry(e.transaction_id.clone()).or_default();
                draft.act(e.action.as_str());
                if let Some(login) = login {
                    // The login whose identity is reused is sealed too.
                    draft.records.push(login.record.clone());
                    draft.login = Some(login);
                }
                draft.records.push(record);
            }
            E::TransactionSigned(e) => {
                let draft = self.open.entry(e.transaction_id.clone()).or_default();
                draft.act("mitid.transaction_signing");
                draft.signing = Some(Signing {
                    text_sha256: e.transaction_text_sha256.clone(),
                    text_type: e.transaction_text_type,
                    reference_text: e.reference_text.clone(),
                });
                draft.records.push(record);
            }
            E::CprMatchCompleted(e) => {
                let idp = self.login.as_ref().map(|l| l.idp);
                let draft = self.open.entry(e.transaction_id.clone()).or_default();
                match idp {
                    Some(Idp::Nemid) => draft.act("nemid.cpr_match"),
                    _ => draft.act("mitid.cpr_match"),
                }
                draft.records.push(record);
            }
            E::CprMatchRefused(e) => self.record(&e.transaction_id, record),
            E::PidLookupCompleted(e) => self.record(&e.transaction_id, record),
            E::TransferCodeIssued(e) => self.record(&e.transaction_id, record),
            E::FlowFailed(e) => {
                self.open.remove(&e.transaction_id);
            }
            E::TransactionCompleted(e) => {
                let mut draft = self.open.remove(&e.transaction_id)?;
                draft.records.push(record.clone());
                let tx = (&e.transaction_id, &e.client_id);
                return Some(seal(session_id, tx, e.at, record.seq, draft, ctx));
            }
            E::LoggedOut(_) => {
                self.open.clear();
                self.login = None;
            }
        }
        None
    }

    /// SP B's transaction exchanged a Controlled Transfer code (the exchange is recorded
    /// on the code's stream, naming this session and transaction).
    pub fn exchanged(&mut self, record: RecordRef, e: &CodeExchanged) {
        let draft = self.open.entry(e.transaction_id.clone()).or_default();
        draft.act("mitid.controlled_transfer");
        draft.records.push(record);
    }

    fn record(&mut self, transaction_id: &TransactionId, record: RecordRef) {
        self.open
            .entry(transaction_id.clone())
            .or_default()
            .records
            .push(record);
    }

    /// Whether nothing is pending and no login may be reused: the projection may forget
    /// the session. A login is kept until the logout, for an SSO reuse in a later
    /// transaction (possibly of another SP) to seal.
    pub fn is_idle(&self) -> bool {
        self.open.is_empty() && self.login.is_none()
    }
}

/// `transaction_actions` a completed login adds (002: MitID "mitid.login (Login
/// completed)"; MitID Erhverv also "mitid_erhverv.identity_selected"; NemID
/// "nemid.login"). The E-Ident IdPs and FTN have no such list.
fn login_actions(idp: Idp) -> &'static [&'static str] {
    match idp {
        Idp::Mitid => &["mitid.login"],
        Idp::MitidErhverv => &["mitid.login", "mitid_erhverv.identity_selected"],
        Idp::Nemid => &["nemid.login"],
        _ => &[],
    }
}

fn seal(
    session_id: &SessionId,
    (transaction_id, client_id): (&TransactionId, &ClientId),
    at: Timestamp,
    completed_seq: u64,
    mut draft: Draft,
    ctx: &TokenContext,
) -> SealedClaims {
    let mut c = Map::new();
    c.insert("iss".into(), json!(ctx.issuer));
    c.insert("aud".into(), json!(client_id.as_str()));
    c.insert("iat".into(), json!(at.micros() / 1_000_000));
    c.insert("transaction_id".into(), json!(transaction_id.as_str()));
    c.insert("sid".into(), json!(session_id.as_str()));
    if let Some(login) = &draft.login {
        c.insert("sub".into(), json!(login.subject_key));
        c.insert("auth_time".into(), json!(login.at.micros() / 1_000_000));
        c.insert("idp".into(), json!(login.idp.as_str()));
        c.insert("identity_type".into(), json!(login.identity_type.as_str()));
        for (name, level) in [("loa", login.loa), ("ial", login.ial), ("aal", login.aal)] {
            if let Some(level) = level {
                c.insert(name.into(), json!(level.as_str()));
            }
        }
        if !login.amr.is_empty() {
            c.insert("amr".into(), json!(login.amr));
        }
        // The IdP's subject claims under their own names (`mitid.uuid`, `nemid.pid`...);
        // FTN's `sub` is the token's `sub` already, as `ftn:<sub>`.
        for (name, value) in &login.subject {
            if name != "sub" {
                c.insert(name.clone(), json!(value));
            }
        }
        if matches!(login.idp, Idp::Mitid | Idp::MitidErhverv) {
            // 002: "The mitid.psd2 claim is always issued as a transaction token MitID
            // specific claim."
            c.insert("mitid.psd2".into(), json!(login.psd2.unwrap_or(false)));
        }
    }
    if let Some(s) = &draft.signing {
        c.insert("mitid.transaction_text_sha256".into(), json!(s.text_sha256));
        c.insert(
            "mitid.transaction_text_type".into(),
            json!(s.text_type.as_str()),
        );
        if let Some(r) = &s.reference_text {
            c.insert("mitid.reference_text".into(), json!(r));
        }
    }
    match draft.actions.len() {
        0 => {}
        1 => {
            c.insert("transaction_actions".into(), json!(draft.actions[0]));
        }
        _ => {
            c.insert("transaction_actions".into(), json!(draft.actions));
        }
    }
    draft.records.sort();
    draft.records.dedup();
    let records: Vec<Value> = draft
        .records
        .iter()
        .map(|r| json!({"seq": r.seq, "hash": r.hash}))
        .collect();
    c.insert(
        "ledger".into(),
        json!({"origin": ctx.origin, "records": records}),
    );
    SealedClaims {
        transaction_id: transaction_id.clone(),
        client_id: client_id.clone(),
        environment: draft.environment,
        completed_seq,
        bound: draft.records.iter().map(|r| r.seq).collect(),
        claims: c,
    }
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
