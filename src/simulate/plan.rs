//! The simulation's plan: from a seed and a number of sessions, every SP client, session,
//! transaction and request, with the outcome each request should have. Pure and
//! deterministic: no I/O, no clock, no OS randomness, so that one seed is one traffic.
//!
//! Session `i` uses the IdP `Idp::ALL[i % 8]`. The first two sessions are fixed tours
//! that make every refusal of [`PLANNED_REFUSALS`] happen: session 0 (MitID) signs with
//! bad html, a too-long reference text, and in a transaction whose request was not
//! signed; matches CPR four times; issues a Controlled Transfer code, exchanges it for
//! another client, then again, and an unknown code; session 1 (MitID Erhverv) records a
//! flow error after its logout; session 7 (FTN) completes a transaction with each FTN
//! client of its environment. Every other session is drawn from the seed, with the same
//! refusals now and then. So `N >= MIN_SESSIONS` covers every IdP and every refusal, and
//! gives every client registered with an encryption key a sealed token.
//!
//! FTN sessions use the two Finnish clients, which register encryption keys, and only
//! them; the other IdPs' sessions use the other four clients.
//!
//! Each session draws from a generator of its own (seed and index), so session `i` is
//! the same whatever `N` is, and sessions can be made one at a time as they run.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Serialize, Serializer};
use serde_json::{json, Map, Value};

use crate::domain::codes;
use crate::domain::session::SESSION_LOGGED_OUT;
use crate::domain::values::Idp;

/// The fewest sessions that cover every IdP and every planned refusal.
pub const MIN_SESSIONS: usize = 8;

/// The answer to a reference text of more than 130 characters (`ReferenceText`).
pub const REFERENCE_TEXT_TOO_LONG: &str = "must be 1 to 130 characters once decoded";

/// Every refusal the plan schedules, by `error_description`; each happens at least once
/// when there are [`MIN_SESSIONS`] sessions or more.
pub const PLANNED_REFUSALS: &[&str] = &[
    codes::MITID_CPR_MATCH_FAILED,
    codes::MITID_TRANSFER_TOKEN_EXCHANGE_CODE_ALREADY_USED,
    codes::MITID_INVALID_TRANSFER_TOKEN_CODE,
    codes::MITID_TRANSACTION_TEXT_INVALID,
    codes::MITID_TRANSACTION_SIGNING_FLOW_LIMITED_TO_SIGNED_REQUEST,
    REFERENCE_TEXT_TOO_LONG,
    SESSION_LOGGED_OUT,
];

/// How long a simulated transfer code is valid: the exchange follows within the session.
const TRANSFER_VALID_SECS: i64 = 300;

// ---------------------------------------------------------------------------------------
// Randomness

/// SplitMix64 (Steele, Lea and Flood, 2014): tiny, fast, and the same on every platform,
/// which is all a traffic generator needs.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// An independent generator for `lane` (a session index, or a purpose).
    fn lane(seed: u64, lane: u64) -> Self {
        SplitMix64(mix(seed ^ mix(lane.wrapping_add(0x5851_F42D_4C95_7F2D))))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }

    /// True `percent` times in a hundred.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }

    /// A version 4 UUID, lower case.
    fn uuid(&mut self) -> String {
        let (a, b) = (self.next_u64(), self.next_u64());
        let b = (b & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xFFFF,
            a & 0x0FFF,
            b >> 48,
            b & 0xFFFF_FFFF_FFFF
        )
    }
}

// ---------------------------------------------------------------------------------------
// CPR numbers

/// A made-up CPR number: a real date (day 1 to 28, 7th digit 0 to 3, so 1900-1999), as
/// the API takes it, with or without the hyphen. It goes into a request body only when
/// the request is sent: it has no `Display`, its `Debug` is redacted and the plan's
/// serialized form skips it.
#[derive(Clone, PartialEq, Eq)]
pub struct FakeCpr(String);

impl FakeCpr {
    fn draw(rng: &mut SplitMix64) -> FakeCpr {
        let day = 1 + rng.below(28);
        let month = 1 + rng.below(12);
        let year = rng.below(100);
        let century_digit = rng.below(4);
        let serial = rng.digits(3);
        let hyphen = if rng.chance(50) { "-" } else { "" };
        FakeCpr(format!(
            "{day:02}{month:02}{year:02}{hyphen}{century_digit}{serial}"
        ))
    }

    /// The number as sent.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for FakeCpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FakeCpr(<redacted>)")
    }
}

// ---------------------------------------------------------------------------------------
// The plan's parts

/// What a step does, as the out file names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A transaction's start, without its login.
    Start,
    /// A transaction's start with its login, in one request.
    StartWithLogin,
    Login,
    SsoReuse,
    Sign,
    CprMatch,
    PidLookup,
    TransferIssue,
    TransferExchange,
    FlowError,
    /// The broker answered the SP: the transaction takes nothing more.
    Complete,
    Logout,
}

impl Action {
    /// The name the out file gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::StartWithLogin => "start_with_login",
            Action::Login => "login",
            Action::SsoReuse => "sso_reuse",
            Action::Sign => "sign",
            Action::CprMatch => "cpr_match",
            Action::PidLookup => "pid_lookup",
            Action::TransferIssue => "transfer_issue",
            Action::TransferExchange => "transfer_exchange",
            Action::FlowError => "flow_error",
            Action::Complete => "complete",
            Action::Logout => "logout",
        }
    }
}

/// The answer a request should get.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// 201, with the records appended.
    Recorded,
    /// 400 with this `error_description`; `recorded`: the refusal is appended all the
    /// same (the 4th CPR match of a MitID session).
    Refused {
        error_description: &'static str,
        recorded: bool,
    },
}

impl Expect {
    fn refused(error_description: &'static str) -> Expect {
        Expect::Refused {
            error_description,
            recorded: false,
        }
    }
}

/// One `POST` of the plan. The same `idempotency_key` goes with every retry of it.
#[derive(Clone, Debug, Serialize)]
pub struct Request {
    pub path: String,
    pub body: Value,
    pub idempotency_key: String,
    pub expect: Expect,
}

/// One request of a session, in the transaction whose `actions` it is listed under
/// (a logout, which is the session's, under the transaction started last).
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub action: Action,
    pub transaction_id: String,
    #[serde(flatten)]
    pub request: Request,
    /// Sent as the body's `cpr`.
    #[serde(skip)]
    pub cpr: Option<FakeCpr>,
    /// Sent as the body's `expires_at`: this many seconds after the request is made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<i64>,
}

impl Step {
    /// The body to send, with the CPR number and the expiry filled in. Made once per
    /// step: retries must send the very same bytes.
    pub fn body_at(&self, now: chrono::DateTime<chrono::Utc>) -> Value {
        let mut body = self.request.body.clone();
        if let Some(cpr) = &self.cpr {
            body["cpr"] = cpr.reveal().into();
        }
        if let Some(secs) = self.expires_in_secs {
            body["expires_at"] = (now + chrono::Duration::seconds(secs)).to_rfc3339().into();
        }
        body
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PlannedTransaction {
    pub transaction_id: String,
    pub client_id: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct SessionPlan {
    pub index: usize,
    pub session_id: String,
    #[serde(serialize_with = "as_str")]
    pub idp: Idp,
    pub environment: &'static str,
    /// In the order they are started.
    pub transactions: Vec<PlannedTransaction>,
    pub steps: Vec<Step>,
}

fn as_str<S: Serializer>(idp: &Idp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(idp.as_str())
}

/// The key a client registers for its tokens to come nested in a JWE (`enc` A256GCM).
/// The plan says which kind; the run makes the key, new in every run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenEncryption {
    /// An RSA-2048 key: the JWE `alg` is `RSA-OAEP-256`.
    Rsa2048,
    /// An EC P-256 key: the JWE `alg` is `ECDH-ES+A256KW`.
    P256,
}

impl TokenEncryption {
    /// The JWE content encryption of every encrypted token.
    pub const ENC: &'static str = "A256GCM";

    /// The JWE `alg` of the client's tokens.
    pub fn alg(self) -> &'static str {
        match self {
            TokenEncryption::Rsa2048 => "RSA-OAEP-256",
            TokenEncryption::P256 => "ECDH-ES+A256KW",
        }
    }
}

impl Serialize for TokenEncryption {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.alg())
    }
}

/// An SP client in one environment.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedClient {
    pub client_id: String,
    pub environment: &'static str,
    pub name: &'static str,
    /// A Finnish SP: FTN sessions use these clients, and only these.
    pub ftn: bool,
    /// The registration's `token_signing_alg`; `None`: the default, EdDSA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_signing_alg: Option<&'static str>,
    /// The kind of `token_encryption_key` it registers, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_encryption: Option<TokenEncryption>,
}

impl PlannedClient {
    /// Whether sessions of `idp` use this client.
    pub fn serves(&self, idp: Idp) -> bool {
        self.ftn == (idp == Idp::Ftn)
    }

    /// The JWS `alg` its tokens are signed with.
    pub fn signing_alg(&self) -> &'static str {
        self.token_signing_alg.unwrap_or("EdDSA")
    }
}

struct ClientSpec {
    slug: &'static str,
    name: &'static str,
    environments: &'static [&'static str],
    ftn: bool,
    token_signing_alg: Option<&'static str>,
    token_encryption: Option<TokenEncryption>,
}

const fn sp(
    slug: &'static str,
    name: &'static str,
    environments: &'static [&'static str],
) -> ClientSpec {
    ClientSpec {
        slug,
        name,
        environments,
        ftn: false,
        token_signing_alg: None,
        token_encryption: None,
    }
}

/// The simulated SPs: four for the Danish, Norwegian and Swedish IdPs, two of them in
/// both environments; and two Finnish ones in both, for FTN, each registered with an
/// encryption key (RSA, and P-256 with ES256 signatures).
const CLIENTS: &[ClientSpec] = &[
    sp("acme-bank", "Acme Bank", &["CURRENT", "PROD"]),
    sp("nordpension", "Nordpension", &["PROD"]),
    sp("kommune", "Simulerup Kommune", &["CURRENT", "PROD"]),
    sp("webshop", "Webshop ApS", &["CURRENT"]),
    ClientSpec {
        ftn: true,
        token_encryption: Some(TokenEncryption::Rsa2048),
        ..sp("vakuutus", "Simula Vakuutus Oy", &["CURRENT", "PROD"])
    },
    ClientSpec {
        ftn: true,
        token_signing_alg: Some("ES256"),
        token_encryption: Some(TokenEncryption::P256),
        ..sp("kaupunki", "Simulalan kaupunki", &["CURRENT", "PROD"])
    },
];

/// Everything a run does, made from `seed` and the number of sessions.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub seed: u64,
    pub sessions: usize,
    pub clients: Vec<PlannedClient>,
    /// IdP maintenance windows recorded after the sessions, one of them then cancelled.
    pub windows: Vec<Request>,
}

impl Plan {
    pub fn new(seed: u64, sessions: usize) -> Plan {
        let clients = CLIENTS
            .iter()
            .flat_map(|c| {
                c.environments.iter().map(move |environment| PlannedClient {
                    client_id: format!("sim-{seed}-{}", c.slug),
                    environment,
                    name: c.name,
                    ftn: c.ftn,
                    token_signing_alg: c.token_signing_alg,
                    token_encryption: c.token_encryption,
                })
            })
            .collect();
        Plan {
            seed,
            sessions,
            clients,
            windows: windows(seed),
        }
    }

    /// Each client id once, in order.
    pub fn client_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = Vec::new();
        for c in &self.clients {
            if !ids.contains(&c.client_id.as_str()) {
                ids.push(&c.client_id);
            }
        }
        ids
    }

    /// The clients sessions of `idp` use, in `environment` if given.
    fn clients_for(&self, idp: Idp, environment: Option<&str>) -> Vec<&PlannedClient> {
        self.clients
            .iter()
            .filter(|c| c.serves(idp) && environment.is_none_or(|e| c.environment == e))
            .collect()
    }

    /// Session `index` (0-based), the same whatever the number of sessions.
    pub fn session(&self, index: usize) -> SessionPlan {
        let mut rng = SplitMix64::lane(self.seed, index as u64);
        let idp = Idp::ALL[index % Idp::ALL.len()];
        let choices = self.clients_for(idp, None);
        let first = choices[rng.below(choices.len() as u64) as usize];
        let login = login_members(idp, &mut rng);
        let mut b = Builder {
            plan: self,
            session_id: format!("sim-{}-s{index}", self.seed),
            idp,
            environment: first.environment,
            login,
            rng,
            transactions: Vec::new(),
            steps: Vec::new(),
        };
        match index {
            0 if idp == Idp::Mitid => b.mitid_tour(&first.client_id),
            1 => b.logout_tour(&first.client_id),
            i if idp == Idp::Ftn && i < Idp::ALL.len() => b.ftn_tour(&first.client_id),
            _ => b.random(&first.client_id),
        }
        SessionPlan {
            index,
            session_id: b.session_id,
            idp,
            environment: b.environment,
            transactions: b.transactions,
            steps: b.steps,
        }
    }

    pub fn sessions(&self) -> impl Iterator<Item = SessionPlan> + '_ {
        (0..self.sessions).map(|i| self.session(i))
    }
}

fn windows(seed: u64) -> Vec<Request> {
    let mut rng = SplitMix64::lane(seed, u64::MAX);
    let mut window = |n: u32, note: &str| {
        let idp = rng.pick(Idp::ALL);
        let (month, day) = (1 + rng.below(12), 1 + rng.below(28));
        let mut body = json!({
            "window_id": format!("sim-{seed}-w{n}"),
            "idp": idp.as_str(),
            "from": format!("2030-{month:02}-{day:02}T01:00:00+01:00"),
            "to": format!("2030-{month:02}-{day:02}T05:00:00+01:00"),
            "note": note,
        });
        if rng.chance(50) {
            body["environment"] = rng.pick(&["CURRENT", "PROD"]).into();
        }
        Request {
            path: "/v1/maintenance-windows".into(),
            body,
            idempotency_key: format!("sim-{seed}-w{n}"),
            expect: Expect::Recorded,
        }
    };
    let first = window(1, "Planned maintenance at the IdP: logins may fail");
    let second = window(2, "Database upgrade at the IdP");
    vec![
        first,
        second,
        Request {
            path: format!("/v1/maintenance-windows/sim-{seed}-w2/cancel"),
            body: json!({"note": "This change has been rolled back"}),
            idempotency_key: format!("sim-{seed}-w2-cancel"),
            expect: Expect::Recorded,
        },
    ]
}

// ---------------------------------------------------------------------------------------
// What each IdP issues (seed 002), as `tests/it/broker.rs` sends it

const SUBSTANTIAL: &str = "https://data.gov.dk/concept/core/nsis/Substantial";
const HIGH: &str = "https://data.gov.dk/concept/core/nsis/High";
const LOW: &str = "https://data.gov.dk/concept/core/nsis/Low";

/// The login members of a session's logins: one person per session.
fn login_members(idp: Idp, rng: &mut SplitMix64) -> Map<String, Value> {
    let mut m = Map::new();
    let mut set = |k: &str, v: Value| {
        m.insert(k.into(), v);
    };
    match idp {
        Idp::Mitid => {
            // (ial, aal, loa): loa is the lower of the two.
            let (ial, aal, loa) = rng.pick(&[
                (SUBSTANTIAL, HIGH, SUBSTANTIAL),
                (SUBSTANTIAL, SUBSTANTIAL, SUBSTANTIAL),
                (HIGH, HIGH, HIGH),
                (LOW, SUBSTANTIAL, LOW),
            ]);
            let amr: &[&str] = rng.pick(&[
                &["code_app"][..],
                &["password", "code_app"],
                &["code_app_enhanced"],
                &["password", "code_token"],
                &["u2f_token"],
            ]);
            set("identity_type", "private".into());
            set("loa", loa.into());
            set("ial", ial.into());
            set("aal", aal.into());
            set("amr", json!(amr));
            set("subject", json!({"mitid.uuid": rng.uuid()}));
            psd2(rng, &mut set);
        }
        Idp::MitidErhverv => {
            let aal = rng.pick(&[SUBSTANTIAL, HIGH]);
            let amr: &[&str] = rng.pick(&[
                &["mitid:code_app"][..],
                &["mitid:password", "mitid:code_token"],
            ]);
            let mut subject = json!({
                "nemlogin.persistent_professional_id": format!("urn:uuid:{}", rng.uuid()),
                "nemlogin.cvr": rng.digits(8),
            });
            if rng.chance(30) {
                subject["nemlogin.nemid.rid"] = rng.digits(6).into();
            }
            set("identity_type", "professional".into());
            set("loa", SUBSTANTIAL.into());
            set("ial", SUBSTANTIAL.into());
            set("aal", aal.into());
            set("amr", json!(amr));
            set("subject", subject);
            psd2(rng, &mut set);
        }
        Idp::Nemid => {
            set("amr", json!([rng.pick(&["nemid.keyfile", "nemid.otp"])]));
            if rng.chance(80) {
                set("identity_type", "private".into());
                let pid = format!("9208-2002-2-{}", rng.digits(12));
                set("subject", json!({"nemid.pid": pid}));
            } else {
                set("identity_type", "professional".into());
                set(
                    "subject",
                    json!({"nemid.rid": rng.digits(6), "nemid.cvr": rng.digits(8)}),
                );
            }
        }
        Idp::BankidNo | Idp::BankidMobileNo => {
            // SEID 2.0 presents the PID with `UN:NO-`; older logins without it.
            let prefix = if rng.chance(50) { "UN:NO-" } else { "" };
            let pid = format!("{prefix}9578-6000-4-{}", rng.digits(7));
            set("identity_type", "private".into());
            let amr = if idp == Idp::BankidNo {
                "BankID"
            } else {
                "BankID-mobil"
            };
            set("amr", json!([amr]));
            let mut subject = Map::new();
            subject.insert(format!("{idp}.pid"), pid.into());
            set("subject", Value::Object(subject));
        }
        Idp::BuypassNo => {
            set("identity_type", "private".into());
            let pid = format!("9578-4050-{}", rng.digits(9));
            set("subject", json!({"buypass_no.pid": pid}));
        }
        Idp::BankidSe => {
            let amr = rng.pick(&["bankid_se.mobile", "bankid_se.file", "bankid_se.smartcard"]);
            set("identity_type", "private".into());
            set("amr", json!([amr]));
            set(
                "subject",
                json!({"bankid_se.pid": format!("se-{}", rng.uuid())}),
            );
        }
        Idp::Ftn => {
            set("identity_type", "private".into());
            set("amr", json!(["ftn"]));
            let sub = format!("FTN-{:016x}", rng.next_u64());
            set("subject", json!({ "sub": sub }));
        }
    }
    m
}

/// `mitid.psd2`, which MitID reports for some logins.
fn psd2(rng: &mut SplitMix64, set: &mut impl FnMut(&str, Value)) {
    if rng.chance(60) {
        set("psd2", rng.chance(80).into());
    }
}

/// Flow error codes per IdP, from the seed's tables where it has them (MitID, MitID
/// Erhverv, NemID) and otherwise short codes of the kind the broker reports.
fn flow_error_codes(idp: Idp) -> &'static [&'static str] {
    match idp {
        Idp::Mitid => &[
            "mitid_user_aborted",
            "mitid_user_aborted",
            "mitid_timeout",
            "mitid_no_ctx",
            "mitid_identity_not_found",
            "mitid_auth_code_already_used",
        ],
        Idp::MitidErhverv => &[
            "mitid_erhverv_user_aborted",
            "mitid_erhverv.no_identities",
            "mitid_timeout",
        ],
        Idp::Nemid => &[
            "nemid_user_aborted",
            "nemid_flow_error_TIMESTAMP_EXPIRED",
            "nemid_unspecified_error",
            "nemid_srv001",
            "nemid_client_flow_error_SRV004",
        ],
        Idp::BankidNo | Idp::BankidMobileNo | Idp::BuypassNo => {
            &["user_cancelled", "session_timeout", "bankid_unavailable"]
        }
        Idp::BankidSe => &["user_cancel", "expired_transaction", "start_failed"],
        Idp::Ftn => &["user_cancelled", "bank_unavailable", "s_pankki.maintenance"],
    }
}

const BAD_HTML: &[&str] = &[
    "<p onclick=\"steal()\">Godkend betaling</p>",
    "<a href=\"javascript:steal()\">Godkend betaling</a>",
    "<p style=\"width: expression(alert(1))\">Godkend</p>",
];

fn b64(s: &str) -> String {
    BASE64.encode(s)
}

// ---------------------------------------------------------------------------------------
// Building a session

struct Builder<'a> {
    plan: &'a Plan,
    session_id: String,
    idp: Idp,
    environment: &'static str,
    login: Map<String, Value>,
    rng: SplitMix64,
    transactions: Vec<PlannedTransaction>,
    steps: Vec<Step>,
}

impl Builder<'_> {
    fn path(&self, tail: &str) -> String {
        format!("/v1/sessions/{}/{tail}", self.session_id)
    }

    fn push(&mut self, action: Action, tx: &str, path: String, body: Value, expect: Expect) {
        self.push_step(Step {
            action,
            transaction_id: tx.to_owned(),
            request: Request {
                path,
                body,
                idempotency_key: String::new(),
                expect,
            },
            cpr: None,
            expires_in_secs: None,
        });
    }

    fn push_step(&mut self, mut step: Step) {
        step.request.idempotency_key = format!("{}-{}", self.session_id, self.steps.len());
        self.steps.push(step);
    }

    /// A client of the session's environment; `other_than` one, if given.
    fn client(&mut self, other_than: Option<&str>) -> String {
        let choices: Vec<&str> = self
            .plan
            .clients_for(self.idp, Some(self.environment))
            .into_iter()
            .map(|c| c.client_id.as_str())
            .filter(|c| Some(*c) != other_than)
            .collect();
        self.rng.pick(&choices).to_owned()
    }

    fn client_name(&self, client_id: &str) -> &'static str {
        self.plan
            .clients
            .iter()
            .find(|c| c.client_id == client_id)
            .map_or("the SP", |c| c.name)
    }

    fn last_transaction(&self) -> String {
        self.transactions
            .last()
            .map(|t| t.transaction_id.clone())
            .unwrap_or_default()
    }

    /// Starts a transaction, with its login or not; the session's first goes to
    /// `POST /v1/sessions`.
    fn start(&mut self, client_id: &str, signed_request: bool, with_login: bool) -> String {
        self.start_expecting(client_id, signed_request, with_login, Expect::Recorded)
    }

    fn start_expecting(
        &mut self,
        client_id: &str,
        signed_request: bool,
        with_login: bool,
        expect: Expect,
    ) -> String {
        let tx = format!("{}-t{}", self.session_id, self.transactions.len() + 1);
        let mut body = json!({
            "transaction_id": tx,
            "client_id": client_id,
            "environment": self.environment,
            "idp": self.idp.as_str(),
        });
        if signed_request {
            body["signed_request"] = true.into();
        }
        if with_login {
            for (k, v) in &self.login {
                body[k] = v.clone();
            }
        }
        let path = if self.transactions.is_empty() {
            body["session_id"] = self.session_id.clone().into();
            "/v1/sessions".to_owned()
        } else {
            self.path("transactions")
        };
        self.transactions.push(PlannedTransaction {
            transaction_id: tx.clone(),
            client_id: client_id.to_owned(),
        });
        let action = if with_login {
            Action::StartWithLogin
        } else {
            Action::Start
        };
        self.push(action, &tx, path, body, expect);
        tx
    }

    fn login(&mut self, tx: &str) {
        let mut body = Value::Object(self.login.clone());
        body["transaction_id"] = tx.into();
        let path = self.path("logins");
        self.push(Action::Login, tx, path, body, Expect::Recorded);
    }

    fn sso_reuse(&mut self, tx: &str) {
        let action = self.rng.pick(&["mitid.sso_login", "mitid.reuse_jwt"]);
        let body = json!({"transaction_id": tx, "action": action});
        let path = self.path("sso-reuse");
        self.push(Action::SsoReuse, tx, path, body, Expect::Recorded);
    }

    fn sign(&mut self, tx: &str, html: bool, reference: bool, expect: Expect) {
        let kroner = 1 + self.rng.below(25_000);
        let ore = self.rng.below(100);
        let to = self
            .transactions
            .first()
            .map_or("the SP", |t| self.client_name(&t.client_id));
        let text = if html {
            format!(
                "<html><body><h2>Betaling</h2><p>Overfør <b>{kroner},{ore:02} kr</b> til {to}</p></body></html>"
            )
        } else {
            format!("Overfør {kroner},{ore:02} kr til {to}")
        };
        let mut body = json!({
            "transaction_id": tx,
            "transaction_text": b64(&text),
            "transaction_text_type": if html { "html" } else { "text" },
        });
        if reference {
            body["reference_text"] = b64(&format!("Faktura {}", self.rng.digits(6))).into();
        }
        let path = self.path("signings");
        self.push(Action::Sign, tx, path, body, expect);
    }

    fn sign_bad_html(&mut self, tx: &str) {
        let html = self.rng.pick(BAD_HTML);
        let body = json!({
            "transaction_id": tx,
            "transaction_text": b64(html),
            "transaction_text_type": "html",
        });
        let path = self.path("signings");
        let expect = Expect::refused(codes::MITID_TRANSACTION_TEXT_INVALID);
        self.push(Action::Sign, tx, path, body, expect);
    }

    fn sign_long_reference(&mut self, tx: &str) {
        let reference = format!("Reference {}", "x".repeat(121));
        let body = json!({
            "transaction_id": tx,
            "transaction_text": b64("Godkend aftale"),
            "transaction_text_type": "text",
            "reference_text": b64(&reference),
        });
        let path = self.path("signings");
        self.push(
            Action::Sign,
            tx,
            path,
            body,
            Expect::refused(REFERENCE_TEXT_TOO_LONG),
        );
    }

    fn cpr_match(&mut self, tx: &str, matched: bool, expect: Expect) {
        let cpr = FakeCpr::draw(&mut self.rng);
        let path = self.path("cpr-matches");
        self.push_step(Step {
            action: Action::CprMatch,
            transaction_id: tx.to_owned(),
            request: Request {
                path,
                body: json!({"transaction_id": tx, "matched": matched}),
                idempotency_key: String::new(),
                expect,
            },
            cpr: Some(cpr),
            expires_in_secs: None,
        });
    }

    /// The 4th CPR match since the session's MitID login: recorded, then refused.
    fn cpr_match_fourth(&mut self, tx: &str) {
        let expect = Expect::Refused {
            error_description: codes::MITID_CPR_MATCH_FAILED,
            recorded: true,
        };
        self.cpr_match(tx, true, expect);
    }

    fn pid_lookup(&mut self, tx: &str, success: bool) {
        let path = self.path("pid-lookups");
        let (body, cpr) = if success {
            let pid = format!("9208-2002-2-{}", self.rng.digits(12));
            let body = json!({"transaction_id": tx, "pid_status": "success", "pid": pid});
            let cpr = self.rng.chance(50).then(|| FakeCpr::draw(&mut self.rng));
            (body, cpr)
        } else {
            let body = json!({"transaction_id": tx, "pid_status": "unable_to_lookup"});
            (body, None)
        };
        self.push_step(Step {
            action: Action::PidLookup,
            transaction_id: tx.to_owned(),
            request: Request {
                path,
                body,
                idempotency_key: String::new(),
                expect: Expect::Recorded,
            },
            cpr,
            expires_in_secs: None,
        });
    }

    /// A Controlled Transfer: SP A's transaction `tx` issues a code for SP B, SP B's
    /// transaction (started in this session) exchanges it and logs in; then, if asked, SP B
    /// presents the used code again, and a code nobody issued.
    fn transfer(&mut self, tx: &str, reuse: bool, unknown: bool) {
        let a = self
            .transactions
            .iter()
            .find(|t| t.transaction_id == tx)
            .map(|t| t.client_id.clone())
            .unwrap_or_default();
        let b = self.client(Some(&a));
        let code = self.rng.uuid();
        let text = format!("Fortsæt hos {} med MitID", self.client_name(&b));
        let path = self.path("transfers");
        self.push_step(Step {
            action: Action::TransferIssue,
            transaction_id: tx.to_owned(),
            request: Request {
                path,
                body: json!({
                    "transaction_id": tx,
                    "code": code,
                    "target_broker_id": "vidne-sim-broker",
                    "target_service_provider_id": b,
                    "transfer_token_text": text,
                }),
                idempotency_key: String::new(),
                expect: Expect::Recorded,
            },
            cpr: None,
            expires_in_secs: Some(TRANSFER_VALID_SECS),
        });
        let tx_b = self.start(&b, false, false);
        let exchange = json!({
            "transfer_token_text": text,
            "client_id": b,
            "session_id": self.session_id,
            "transaction_id": tx_b,
        });
        let exchange_path = format!("/v1/transfers/{code}/exchange");
        self.push(
            Action::TransferExchange,
            &tx_b,
            exchange_path.clone(),
            exchange.clone(),
            Expect::Recorded,
        );
        self.login(&tx_b);
        self.complete(&tx_b);
        if reuse {
            let expect = Expect::Refused {
                error_description: codes::MITID_TRANSFER_TOKEN_EXCHANGE_CODE_ALREADY_USED,
                recorded: true,
            };
            self.push(
                Action::TransferExchange,
                &tx_b,
                exchange_path,
                exchange.clone(),
                expect,
            );
        }
        if unknown {
            let path = format!("/v1/transfers/{}/exchange", self.rng.uuid());
            let expect = Expect::Refused {
                error_description: codes::MITID_INVALID_TRANSFER_TOKEN_CODE,
                recorded: true,
            };
            self.push(Action::TransferExchange, &tx_b, path, exchange, expect);
        }
    }

    fn flow_error(&mut self, tx: &str, expect: Expect) {
        let code = self.rng.pick(flow_error_codes(self.idp));
        let body = json!({
            "session_id": self.session_id,
            "transaction_id": tx,
            "error": "access_denied",
            "error_description": code,
        });
        self.push(
            Action::FlowError,
            tx,
            "/v1/flow-errors".into(),
            body,
            expect,
        );
    }

    /// The transaction ends well: the broker answered the SP.
    fn complete(&mut self, tx: &str) {
        let path = self.path("completions");
        let body = json!({ "transaction_id": tx });
        self.push(Action::Complete, tx, path, body, Expect::Recorded);
    }

    fn logout(&mut self) {
        let tx = self.last_transaction();
        let body = if self.rng.chance(50) {
            json!({})
        } else {
            json!({"channel": "back_channel"})
        };
        let path = self.path("logout");
        self.push(Action::Logout, &tx, path, body, Expect::Recorded);
    }

    /// Something arrives after the logout: refused, as the session accepts nothing more.
    fn after_logout(&mut self) {
        let expect = Expect::refused(SESSION_LOGGED_OUT);
        if self.rng.chance(50) {
            let client = self.client(None);
            self.start_expecting(&client, false, true, expect);
        } else {
            let tx = self.last_transaction();
            self.flow_error(&tx, expect);
        }
    }

    /// Session 0: every MitID flow and every MitID refusal.
    fn mitid_tour(&mut self, a: &str) {
        let tx = self.start(a, true, true);
        self.sign_bad_html(&tx);
        self.sign_long_reference(&tx);
        self.sign(&tx, true, true, Expect::Recorded);
        for matched in [true, false, true] {
            self.cpr_match(&tx, matched, Expect::Recorded);
        }
        self.cpr_match_fourth(&tx);
        self.pid_lookup(&tx, true);
        self.pid_lookup(&tx, false);
        self.transfer(&tx, true, true);
        self.complete(&tx);
        let other = self.client(None);
        let sso = self.start(&other, false, false);
        self.sso_reuse(&sso);
        let limited =
            Expect::refused(codes::MITID_TRANSACTION_SIGNING_FLOW_LIMITED_TO_SIGNED_REQUEST);
        self.sign(&sso, false, false, limited);
        self.complete(&sso);
        let failing = self.start(a, false, false);
        self.flow_error(&failing, Expect::Recorded);
        self.logout();
    }

    /// Session 1: a login, the logout, and a flow error reported after it.
    fn logout_tour(&mut self, a: &str) {
        let tx = self.start(a, false, true);
        self.complete(&tx);
        self.logout();
        self.flow_error(&tx, Expect::refused(SESSION_LOGGED_OUT));
    }

    /// The first FTN session: a login and a completion with each FTN client of its
    /// environment, so that every client registered with an encryption key has a token
    /// from `MIN_SESSIONS` sessions on.
    fn ftn_tour(&mut self, a: &str) {
        let others: Vec<String> = self
            .plan
            .clients_for(self.idp, Some(self.environment))
            .into_iter()
            .map(|c| c.client_id.clone())
            .filter(|c| c != a)
            .collect();
        for client in std::iter::once(a.to_owned()).chain(others) {
            let tx = self.start(&client, false, true);
            self.complete(&tx);
        }
        self.logout();
    }

    /// Any other session, drawn from the seed.
    fn random(&mut self, a: &str) {
        // The user gives up on the first attempt, and maybe tries again.
        if self.rng.chance(12) {
            let tx = self.start(a, false, false);
            self.flow_error(&tx, Expect::Recorded);
            if self.rng.chance(30) {
                return;
            }
        }
        let signed = self.idp == Idp::Mitid && self.rng.chance(50);
        let tx = if self.rng.chance(80) {
            self.start(a, signed, true)
        } else {
            let tx = self.start(a, signed, false);
            self.login(&tx);
            tx
        };
        match self.idp {
            Idp::Mitid => self.random_mitid(&tx, signed),
            Idp::Nemid if self.rng.chance(30) => {
                // NemID CPR matches have no limit.
                for _ in 0..=self.rng.below(2) {
                    let matched = self.rng.chance(85);
                    self.cpr_match(&tx, matched, Expect::Recorded);
                }
            }
            _ => {}
        }
        // Most transactions end with the broker's answer to the SP; the rest are
        // abandoned.
        if self.rng.chance(85) {
            self.complete(&tx);
        }
        // Another SP in the same session: SSO for MitID, a new login for the others.
        if self.rng.chance(25) {
            let other = self.client(None);
            let tx2 = if self.idp == Idp::Mitid {
                let tx2 = self.start(&other, false, false);
                self.sso_reuse(&tx2);
                tx2
            } else {
                self.start(&other, false, true)
            };
            if self.rng.chance(85) {
                self.complete(&tx2);
            }
        }
        if self.rng.chance(10) {
            let client = self.client(None);
            let tx3 = self.start(&client, false, false);
            self.flow_error(&tx3, Expect::Recorded);
        }
        if self.rng.chance(60) {
            self.logout();
            if self.rng.chance(8) {
                self.after_logout();
            }
        }
    }

    fn random_mitid(&mut self, tx: &str, signed: bool) {
        if signed && self.rng.chance(85) {
            if self.rng.chance(6) {
                self.sign_bad_html(tx);
            }
            if self.rng.chance(6) {
                self.sign_long_reference(tx);
            }
            let html = self.rng.chance(40);
            let reference = self.rng.chance(40);
            self.sign(tx, html, reference, Expect::Recorded);
        } else if !signed && self.rng.chance(4) {
            let limited =
                Expect::refused(codes::MITID_TRANSACTION_SIGNING_FLOW_LIMITED_TO_SIGNED_REQUEST);
            self.sign(tx, false, false, limited);
        }
        let matches = self.rng.pick(&[0, 0, 0, 0, 0, 1, 1, 1, 2, 3]);
        for _ in 0..matches {
            let matched = self.rng.chance(85);
            self.cpr_match(tx, matched, Expect::Recorded);
        }
        if matches == 3 && self.rng.chance(30) {
            self.cpr_match_fourth(tx);
        }
        if self.rng.chance(30) {
            let success = self.rng.chance(70);
            self.pid_lookup(tx, success);
        }
        if self.rng.chance(12) {
            let reuse = self.rng.chance(30);
            let unknown = self.rng.chance(10);
            self.transfer(tx, reuse, unknown);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::domain::codes::flow_error_allowed;
    use crate::domain::values::{Cpr, IdentityType, ReferenceText, Subject, TransactionText};

    fn all_steps(plan: &Plan) -> Vec<(SessionPlan, Step)> {
        plan.sessions()
            .flat_map(|s| {
                let steps = s.steps.clone();
                steps.into_iter().map(move |step| (s.clone(), step))
            })
            .collect()
    }

    #[test]
    fn same_seed_same_plan_and_another_seed_another() {
        let a = serde_json::to_string(&Plan::new(7, 40).sessions().collect::<Vec<_>>()).unwrap();
        let b = serde_json::to_string(&Plan::new(7, 40).sessions().collect::<Vec<_>>()).unwrap();
        let c = serde_json::to_string(&Plan::new(8, 40).sessions().collect::<Vec<_>>()).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Session i does not depend on N.
        let short = serde_json::to_string(&Plan::new(7, 10).session(9)).unwrap();
        let long = serde_json::to_string(&Plan::new(7, 40).session(9)).unwrap();
        assert_eq!(short, long);
    }

    #[test]
    fn the_minimum_covers_every_idp_and_every_refusal() {
        for seed in [0, 1, 2, 42, u64::MAX] {
            let plan = Plan::new(seed, MIN_SESSIONS);
            let idps: BTreeSet<&str> = plan.sessions().map(|s| s.idp.as_str()).collect();
            assert_eq!(idps.len(), Idp::ALL.len(), "seed {seed}");
            let refusals: BTreeSet<&str> = all_steps(&plan)
                .iter()
                .filter_map(|(_, step)| match step.request.expect {
                    Expect::Refused {
                        error_description, ..
                    } => Some(error_description),
                    Expect::Recorded => None,
                })
                .collect();
            let planned: BTreeSet<&str> = PLANNED_REFUSALS.iter().copied().collect();
            assert_eq!(refusals, planned, "seed {seed}");
            let environments: BTreeSet<&str> = plan.clients.iter().map(|c| c.environment).collect();
            assert_eq!(environments.len(), 2);
        }
    }

    /// FTN sessions use the FTN clients and no others; from `MIN_SESSIONS` sessions on,
    /// each client registered with an encryption key has a completed FTN transaction.
    #[test]
    fn ftn_sessions_complete_a_transaction_for_each_encrypted_client() {
        let ftn = |plan: &Plan, id: &str| {
            plan.clients
                .iter()
                .filter(|c| c.client_id == id)
                .all(|c| c.ftn)
        };
        for seed in [0, 1, 2, 42, u64::MAX] {
            let plan = Plan::new(seed, MIN_SESSIONS);
            let encrypted: BTreeSet<(&str, &str)> = plan
                .clients
                .iter()
                .filter_map(|c| Some((c.client_id.as_str(), c.token_encryption?.alg())))
                .collect();
            let algs: BTreeSet<&str> = encrypted.iter().map(|(_, alg)| *alg).collect();
            assert_eq!(algs, BTreeSet::from(["RSA-OAEP-256", "ECDH-ES+A256KW"]));
            assert!(plan
                .clients
                .iter()
                .any(|c| c.token_encryption.is_some() && c.signing_alg() == "ES256"));
            assert!(plan
                .clients
                .iter()
                .all(|c| c.ftn == c.token_encryption.is_some()));
            let completed: BTreeSet<String> = plan
                .sessions()
                .filter(|s| s.idp == Idp::Ftn)
                .flat_map(|s| {
                    s.steps
                        .iter()
                        .filter(|st| st.action == Action::Complete)
                        .filter_map(|st| {
                            s.transactions
                                .iter()
                                .find(|t| t.transaction_id == st.transaction_id)
                        })
                        .map(|t| t.client_id.clone())
                        .collect::<Vec<_>>()
                })
                .collect();
            for (client, _) in &encrypted {
                assert!(completed.contains(*client), "seed {seed}: {client}");
            }
            for s in Plan::new(seed, 80).sessions() {
                for t in &s.transactions {
                    assert_eq!(ftn(&plan, &t.client_id), s.idp == Idp::Ftn, "{t:?}");
                }
            }
        }
        // The others' registrations ask for nothing: EdDSA, no encryption.
        let plan = Plan::new(1, 1);
        let plain: Vec<&PlannedClient> = plan.clients.iter().filter(|c| !c.ftn).collect();
        assert_eq!(plain.len(), 6);
        assert!(plain
            .iter()
            .all(|c| c.token_signing_alg.is_none() && c.token_encryption.is_none()));
    }

    #[test]
    fn ids_are_unique_and_first_steps_create_the_session() {
        let plan = Plan::new(3, 300);
        let mut keys = BTreeSet::new();
        let mut transactions = BTreeSet::new();
        for s in plan.sessions() {
            assert_eq!(s.steps[0].request.path, "/v1/sessions");
            assert_eq!(s.steps[0].request.body["session_id"], s.session_id);
            assert!(s
                .steps
                .iter()
                .skip(1)
                .all(|st| st.request.path != "/v1/sessions"));
            for t in &s.transactions {
                assert!(transactions.insert(t.transaction_id.clone()));
            }
            for st in &s.steps {
                assert!(keys.insert(st.request.idempotency_key.clone()));
                assert!(s
                    .transactions
                    .iter()
                    .any(|t| t.transaction_id == st.transaction_id));
            }
        }
    }

    /// The bodies are ones the domain accepts, or refuses as planned.
    #[test]
    fn bodies_pass_the_domain_rules_they_should() {
        let plan = Plan::new(11, 400);
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        for (session, step) in all_steps(&plan) {
            let body = &step.request.body;
            let ok = step.request.expect == Expect::Recorded;
            match step.action {
                Action::StartWithLogin | Action::Login => {
                    let identity_type =
                        IdentityType::parse(body["identity_type"].as_str().unwrap()).unwrap();
                    let claims: BTreeMap<String, String> =
                        serde_json::from_value(body["subject"].clone()).unwrap();
                    Subject::parse(session.idp, identity_type, &claims).unwrap();
                }
                Action::Sign => {
                    let text = TransactionText::parse(
                        body["transaction_text"].as_str(),
                        body["transaction_text_type"].as_str(),
                    );
                    let reference = body["reference_text"]
                        .as_str()
                        .map(ReferenceText::parse)
                        .transpose();
                    match step.request.expect {
                        Expect::Refused {
                            error_description, ..
                        } if error_description == codes::MITID_TRANSACTION_TEXT_INVALID => {
                            assert!(text.is_err())
                        }
                        Expect::Refused {
                            error_description, ..
                        } if error_description == REFERENCE_TEXT_TOO_LONG => {
                            assert!(text.is_ok() && reference.is_err())
                        }
                        _ => assert!(text.is_ok() && reference.is_ok()),
                    }
                }
                Action::CprMatch | Action::PidLookup => {
                    if let Some(cpr) = &step.cpr {
                        Cpr::parse(cpr.reveal()).unwrap();
                    }
                }
                Action::FlowError => {
                    let code = body["error_description"].as_str().unwrap();
                    assert!(flow_error_allowed(session.idp, code), "{code}");
                }
                _ => {}
            }
            if ok {
                *counts.entry(step.action.as_str()).or_default() += 1;
            }
        }
        // Every kind of step is recorded somewhere in 400 sessions.
        assert_eq!(counts.len(), 12, "{counts:?}");
    }

    #[test]
    fn no_cpr_number_in_the_plans_serialized_or_debug_form() {
        let plan = Plan::new(5, 200);
        let sessions: Vec<SessionPlan> = plan.sessions().collect();
        let text = serde_json::to_string(&sessions).unwrap();
        let debug = format!("{sessions:?}");
        let cprs: Vec<String> = sessions
            .iter()
            .flat_map(|s| s.steps.iter().filter_map(|st| st.cpr.clone()))
            .map(|c| c.reveal().to_owned())
            .collect();
        assert!(cprs.len() > 20, "{}", cprs.len());
        for cpr in &cprs {
            let digits: String = cpr.chars().filter(char::is_ascii_digit).collect();
            let hyphenated = format!("{}-{}", &digits[..6], &digits[6..]);
            for form in [&digits, &hyphenated] {
                assert!(!text.contains(form.as_str()));
                assert!(!debug.contains(form.as_str()));
            }
        }
        // Sent, they are in the body.
        let step = sessions
            .iter()
            .flat_map(|s| s.steps.iter())
            .find(|st| st.cpr.is_some())
            .unwrap();
        let sent = step.body_at(chrono::Utc::now());
        assert_eq!(sent["cpr"].as_str(), step.cpr.as_ref().map(FakeCpr::reveal));
    }

    #[test]
    fn action_names_are_the_serialized_ones() {
        for action in [
            Action::Start,
            Action::StartWithLogin,
            Action::Login,
            Action::SsoReuse,
            Action::Sign,
            Action::CprMatch,
            Action::PidLookup,
            Action::TransferIssue,
            Action::TransferExchange,
            Action::FlowError,
            Action::Complete,
            Action::Logout,
        ] {
            assert_eq!(serde_json::to_value(action).unwrap(), action.as_str());
        }
    }

    #[test]
    fn uuids_and_digits_have_their_shape() {
        let mut rng = SplitMix64::new(1);
        for _ in 0..100 {
            let u = rng.uuid();
            assert_eq!(u.len(), 36);
            assert_eq!(&u[14..15], "4");
            assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "{u}");
        }
        assert_eq!(rng.digits(12).len(), 12);
        // SplitMix64's published first output for seed 0.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }
}
