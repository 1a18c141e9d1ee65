//! The `/v1` API over HTTP on both backends: bearer keys and roles, and client
//! registration appended to the ledger through the `Client` aggregate.

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::both_backends;
use crate::helpers::{spawn_app, vidne, Backend, TestDb};

/// A key made the way an operator makes the first one: `vidne keys create`.
pub fn cli_key(db: &TestDb, role: &str) -> String {
    let url = db.url_string();
    let (code, out, err) = vidne(&[
        "keys",
        "create",
        "--database",
        &url,
        "--role",
        role,
        "--name",
        "ops team",
    ]);
    assert_eq!(code, 0, "{err}");
    let key = out.trim().to_owned();
    assert_eq!(out, format!("{key}\n"), "stdout holds the key alone");
    assert!(key.starts_with("vk_") && key.len() == 46, "{key}");
    assert!(!err.contains(&key), "the key is not logged");
    key
}

pub async fn post(http: &Client, url: &str, key: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut req = http.post(url).json(&body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    if status == StatusCode::UNAUTHORIZED {
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
    }
    (status, r.json().await.unwrap())
}

/// The OpenAPI document is generated from the code and Swagger UI is served from files
/// built into the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_and_swagger_ui() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (base, handle) = spawn_app(&db).await;
    let http = Client::new();
    let doc: Value = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    // Every route the service has, each with its body, its answers and its header.
    let routes = [
        "/v1/keys",
        "/v1/clients",
        "/v1/sessions",
        "/v1/sessions/{session_id}/transactions",
        "/v1/sessions/{session_id}/logins",
        "/v1/sessions/{session_id}/sso-reuse",
        "/v1/sessions/{session_id}/signings",
        "/v1/sessions/{session_id}/cpr-matches",
        "/v1/sessions/{session_id}/pid-lookups",
        "/v1/sessions/{session_id}/transfers",
        "/v1/sessions/{session_id}/completions",
        "/v1/sessions/{session_id}/logout",
        "/v1/flow-errors",
        "/v1/transfers/{code}/exchange",
        "/v1/maintenance-windows",
        "/v1/maintenance-windows/{window_id}/cancel",
    ];
    let reads = [
        "/v1/log/records/{seq}",
        "/v1/log/checkpoint",
        "/v1/log/checkpoints/{tree_size}",
        "/v1/log/key",
        "/v1/log/proof/inclusion",
        "/v1/log/proof/consistency",
        "/v1/transactions/{transaction_id}/token",
        "/.well-known/jwks.json",
        "/v1/audit/records",
        "/v1/reports/compliance",
    ];
    let paths = doc["paths"].as_object().unwrap();
    // Plus `POST /v1/log/checkpoints`, which takes no body, and `POST /v1/exports`,
    // which answers a tar.
    assert_eq!(
        paths.len(),
        routes.len() + reads.len() + 2,
        "{:?}",
        paths.keys()
    );
    let sign = &doc["paths"]["/v1/log/checkpoints"]["post"];
    assert_eq!(sign["security"][0]["bearer"], json!([]));
    assert!(sign["responses"]["409"].is_object());
    let export = &doc["paths"]["/v1/exports"]["post"];
    assert_eq!(export["security"][0]["bearer"], json!([]));
    assert!(export["responses"]["200"]["content"]["application/x-tar"].is_object());
    assert!(export["responses"]["400"].is_object());
    let report = &doc["paths"]["/v1/reports/compliance"]["get"];
    assert!(report["responses"]["503"].is_object());
    for path in reads {
        let op = &doc["paths"][path]["get"];
        assert!(op["responses"]["200"].is_object(), "{path}");
        let public = path.starts_with("/.well-known/");
        assert_eq!(op["security"].is_null(), public, "{path}");
    }
    let schemas = &doc["components"]["schemas"];
    let schema_of = |v: &Value| {
        let name = v["$ref"]
            .as_str()
            .unwrap_or_else(|| panic!("not a $ref: {v}"));
        let name = name.strip_prefix("#/components/schemas/").unwrap();
        assert!(schemas[name].is_object(), "{name} is not in components");
        schemas[name].clone()
    };
    for path in routes {
        let op = &doc["paths"][path]["post"];
        assert_eq!(op["security"][0]["bearer"], json!([]), "{path}");
        let body = schema_of(&op["requestBody"]["content"]["application/json"]["schema"]);
        assert!(body["properties"].is_object(), "{path}: {body}");
        let created = schema_of(&op["responses"]["201"]["content"]["application/json"]["schema"]);
        assert!(created["properties"].is_object(), "{path}: {created}");
        for status in ["400", "401", "403"] {
            let error = &op["responses"][status]["content"]["application/json"]["schema"];
            assert_eq!(
                schema_of(error)["required"],
                json!(["error", "error_description"])
            );
        }
        let params = op["parameters"].as_array().unwrap();
        assert!(params
            .iter()
            .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header"));
        for name in path.split('{').skip(1).map(|s| &s[..s.find('}').unwrap()]) {
            assert!(
                params
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "path"),
                "{path}: {name}"
            );
        }
    }
    // Wire types say what they take: the login start's members, its required ones.
    let start = &schemas["StartIn"];
    assert_eq!(
        start["required"],
        json!(["transaction_id", "client_id", "environment", "idp"])
    );
    assert!(start["properties"]["subject"].is_object());
    assert_eq!(
        schemas["RecordedEvent"]["properties"]["type"]["type"],
        "string"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let page = http
        .get(format!("{base}/swagger/index.html"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("swagger-ui"));
    let css = http
        .get(format!("{base}/swagger/swagger-ui.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), 200);
    handle.stop(true).await;
}

both_backends!(
    admin_routes_role_matrix,
    keys_and_roles,
    clients_are_registered_per_environment,
    idempotency_keys_replay_the_first_answer,
    idempotency_key_is_freed_when_nothing_was_appended,
    log_records_are_their_canonical_bytes
);

async fn keys_and_roles(backend: Backend) {
    let db = TestDb::new(backend).await;
    let admin = cli_key(&db, "admin");
    let (base, handle) = spawn_app(&db).await;
    let http = Client::new();
    let keys = format!("{base}/v1/keys");
    let body = json!({"role": "broker", "name": "neb-prod-1"});

    let unknown = format!("vk_{}", "A".repeat(43));
    let garbled = format!("Bearer {admin}x");
    for auth in [None, Some("Basic b3BzOm9wcw=="), Some(garbled.as_str())] {
        let mut req = http.post(&keys).json(&body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "unauthorized");
    }
    let (status, err) = post(&http, &keys, Some(&unknown), body.clone()).await;
    assert_eq!(
        (status.as_u16(), err["error"].as_str()),
        (401, Some("unauthorized"))
    );

    let (status, made) = post(&http, &keys, Some(&admin), body.clone()).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["role"], "broker");
    assert_eq!(made["name"], "neb-prod-1");
    let broker = made["key"].as_str().unwrap().to_owned();
    assert!(made["key_id"].as_str().unwrap().starts_with("key_"));

    // A broker key works, but may not make keys.
    let (status, err) = post(&http, &keys, Some(&broker), body.clone()).await;
    assert_eq!(
        (status.as_u16(), err["error"].as_str()),
        (403, Some("forbidden"))
    );

    for (bad, field) in [
        (json!({"role": "root", "name": "x"}), Some("role")),
        (json!({"role": "sp:", "name": "x"}), Some("role")),
        (json!({"role": "auditor", "name": ""}), Some("name")),
        (json!({"role": "auditor", "name": "x", "extra": 1}), None),
        (json!({"role": "auditor"}), None),
    ] {
        let (status, err) = post(&http, &keys, Some(&admin), bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {err}");
        assert_eq!(err["error"], "invalid_request");
        assert_eq!(err["field"].as_str(), field, "{bad}: {err}");
    }

    // Keys are stored as their SHA-256 only.
    let hashes: Vec<Vec<u8>> = match db.pool(1).await {
        vidne::db::Db::Postgres(p) => sqlx::query_scalar("SELECT key_hash FROM api_keys")
            .fetch_all(&p)
            .await
            .unwrap(),
        vidne::db::Db::Sqlite(p) => sqlx::query_scalar("SELECT key_hash FROM api_keys")
            .fetch_all(&p)
            .await
            .unwrap(),
    };
    assert_eq!(hashes.len(), 2);
    for key in [&admin, &broker] {
        let digest = Sha256::digest(key.as_bytes()).to_vec();
        assert!(hashes.contains(&digest));
    }
    handle.stop(true).await;
}

async fn clients_are_registered_per_environment(backend: Backend) {
    let db = TestDb::new(backend).await;
    let admin = cli_key(&db, "admin");
    let broker = cli_key(&db, "broker");
    let (base, handle) = spawn_app(&db).await;
    let http = Client::new();
    let clients = format!("{base}/v1/clients");
    let acme = json!({"client_id": "sp-acme", "environment": "PROD", "name": "Acme Bank"});

    let (status, _) = post(&http, &clients, None, acme.clone()).await;
    assert_eq!(status, 401);
    let (status, _) = post(&http, &clients, Some(&broker), acme.clone()).await;
    assert_eq!(status, 403);

    let (status, first) = post(&http, &clients, Some(&admin), acme.clone()).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["seq"], 0);
    assert_eq!(first["environment"], "PROD");

    // The same client in the same environment again: refused, nothing appended.
    let (status, err) = post(&http, &clients, Some(&admin), acme.clone()).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error_description"], "client_already_registered");
    assert_eq!(err["field"], "environment");

    for (bad, field) in [
        (
            json!({"client_id": "sp acme", "environment": "PROD", "name": "A"}),
            "client_id",
        ),
        (
            json!({"client_id": "sp-acme", "environment": "prod", "name": "A"}),
            "environment",
        ),
        (
            json!({"client_id": "sp-acme", "environment": "CURRENT", "name": ""}),
            "name",
        ),
    ] {
        let (status, err) = post(&http, &clients, Some(&admin), bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {err}");
        assert_eq!(err["field"], field, "{bad}: {err}");
    }

    let current = json!({"client_id": "sp-acme", "environment": "CURRENT", "name": "Acme Bank"});
    let (status, second) = post(&http, &clients, Some(&admin), current).await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["seq"], 1);

    // Two records, both on the client's stream, appended by the admin key, and the
    // ledger verifies.
    let reader = vidne::ledger::Reader::new(db.pool(1).await);
    assert_eq!(reader.count().await.unwrap(), 2);
    let rows = reader.stream("client:sp-acme", 0, 10).await.unwrap();
    assert_eq!(rows.len(), 2);
    for (row, env) in rows.iter().zip(["PROD", "CURRENT"]) {
        let record: Value = serde_json::from_slice(&row.canonical).unwrap();
        assert_eq!(record["type"], "client.registered");
        assert_eq!(record["data"]["environment"], env);
        assert!(record["actor"].as_str().unwrap().starts_with("admin:key_"));
    }
    assert_eq!(rows[1].stream_seq, 2);
    assert_eq!(
        first["hash"].as_str().unwrap(),
        hex::encode(&rows[0].hash),
        "the answer names the record's hash"
    );
    let url = db.url_string();
    let (code, _, err) = vidne(&["verify", "--database", &url]);
    assert_eq!(code, 0, "{err}");
    handle.stop(true).await;
}

async fn post_idem(
    http: &Client,
    url: &str,
    key: &str,
    idem: &str,
    body: &Value,
) -> (StatusCode, bool, Value) {
    let r = http
        .post(url)
        .bearer_auth(key)
        .header("Idempotency-Key", idem)
        .json(body)
        .send()
        .await
        .unwrap();
    let replayed = r.headers().get("idempotent-replayed").is_some();
    (r.status(), replayed, r.json().await.unwrap())
}

async fn idempotency_keys_replay_the_first_answer(backend: Backend) {
    let db = TestDb::new(backend).await;
    let admin = cli_key(&db, "admin");
    let other_admin = cli_key(&db, "admin");
    let (base, handle) = spawn_app(&db).await;
    let http = Client::new();
    let clients = format!("{base}/v1/clients");
    let reader = vidne::ledger::Reader::new(db.pool(1).await);
    let acme = json!({"client_id": "sp-acme", "environment": "PROD", "name": "Acme Bank"});

    let (status, replayed, first) = post_idem(&http, &clients, &admin, "reg-1", &acme).await;
    assert_eq!((status.as_u16(), replayed), (201, false), "{first}");
    let (status, replayed, again) = post_idem(&http, &clients, &admin, "reg-1", &acme).await;
    assert_eq!((status.as_u16(), replayed), (201, true));
    assert_eq!(again, first, "a retry gets the first answer");
    assert_eq!(reader.count().await.unwrap(), 1, "and appends nothing");

    // The same key with another request is refused.
    let other = json!({"client_id": "sp-other", "environment": "PROD", "name": "Other"});
    let (status, _, err) = post_idem(&http, &clients, &admin, "reg-1", &other).await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["field"], "Idempotency-Key");
    assert_eq!(reader.count().await.unwrap(), 1);

    // Keys belong to their caller: another key's "reg-1" is a request of its own.
    let (status, replayed, err) = post_idem(&http, &clients, &other_admin, "reg-1", &acme).await;
    assert_eq!((status.as_u16(), replayed), (400, false), "{err}");
    assert_eq!(err["error_description"], "client_already_registered");
    // A refusal is an answer too, and is replayed.
    let (status, replayed, _) = post_idem(&http, &clients, &other_admin, "reg-1", &acme).await;
    assert_eq!((status.as_u16(), replayed), (400, true));

    for bad in ["", "caf\u{e9}", &"k".repeat(256), "two words"] {
        let r = http
            .post(&clients)
            .bearer_auth(&admin)
            .header("Idempotency-Key", bad)
            .json(&other)
            .send()
            .await;
        // reqwest refuses some header values itself; the server must refuse the rest.
        if let Ok(r) = r {
            assert_eq!(r.status(), 400, "{bad:?}");
            assert_eq!(r.json::<Value>().await.unwrap()["field"], "Idempotency-Key");
        }
    }
    assert_eq!(reader.count().await.unwrap(), 1);

    // A new API key is shown once: a retry is told so, and no second key is made.
    let keys = format!("{base}/v1/keys");
    let body = json!({"role": "auditor", "name": "supervisor"});
    let (status, _, made) = post_idem(&http, &keys, &admin, "key-1", &body).await;
    assert_eq!(status, 201);
    let (status, _, err) = post_idem(&http, &keys, &admin, "key-1", &body).await;
    assert_eq!(status, 409, "{err}");
    assert!(!err.to_string().contains(made["key"].as_str().unwrap()));

    // Concurrent retries: one runs, the others wait their turn or are replayed.
    let current = json!({"client_id": "sp-acme", "environment": "CURRENT", "name": "Acme"});
    let tries = (0..8).map(|_| post_idem(&http, &clients, &admin, "reg-2", &current));
    let answers = futures::future::join_all(tries).await;
    let ran = answers.iter().filter(|(s, r, _)| *s == 201 && !*r).count();
    assert_eq!(ran, 1, "{answers:?}");
    assert!(
        answers.iter().all(|(s, _, _)| *s == 201 || *s == 409),
        "{answers:?}"
    );
    assert_eq!(reader.count().await.unwrap(), 2);
    handle.stop(true).await;
}

/// A request that failed before appending (the database refused the insert: 503) frees
/// its key, so the retry with the same key runs, once.
async fn idempotency_key_is_freed_when_nothing_was_appended(backend: Backend) {
    let db = TestDb::new(backend).await;
    let admin = cli_key(&db, "admin");
    let (base, handle) = spawn_app(&db).await;
    let http = Client::new();
    let clients = format!("{base}/v1/clients");
    let reader = vidne::ledger::Reader::new(db.pool(1).await);
    let acme = json!({"client_id": "sp-acme", "environment": "PROD", "name": "Acme Bank"});
    let (block, unblock) = match backend {
        Backend::Postgres => (
            "CREATE FUNCTION test_block() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'blocked by the test'; END $$; \
             CREATE TRIGGER test_block BEFORE INSERT ON ledger_records \
             FOR EACH ROW EXECUTE FUNCTION test_block();",
            "DROP TRIGGER test_block ON ledger_records; DROP FUNCTION test_block();",
        ),
        Backend::Sqlite => (
            "CREATE TRIGGER test_block BEFORE INSERT ON ledger_records \
             BEGIN SELECT RAISE(ABORT, 'blocked by the test'); END;",
            "DROP TRIGGER test_block;",
        ),
    };
    db.exec(block).await;
    let (status, replayed, err) = post_idem(&http, &clients, &admin, "reg-1", &acme).await;
    assert_eq!((status.as_u16(), replayed), (503, false), "{err}");
    assert_eq!(err["error"], "unavailable");
    assert!(!err.to_string().contains("blocked by the test"), "{err}");
    assert_eq!(reader.count().await.unwrap(), 0);

    db.exec(unblock).await;
    let (status, replayed, first) = post_idem(&http, &clients, &admin, "reg-1", &acme).await;
    assert_eq!((status.as_u16(), replayed), (201, false), "{first}");
    let (status, replayed, again) = post_idem(&http, &clients, &admin, "reg-1", &acme).await;
    assert_eq!((status.as_u16(), replayed), (201, true));
    assert_eq!(again, first);
    assert_eq!(reader.count().await.unwrap(), 1);
    handle.stop(true).await;
}

/// `GET /v1/log/records/{seq}`: the bytes that were hashed, for auditors and SPs only.
async fn log_records_are_their_canonical_bytes(backend: Backend) {
    let db = TestDb::new(backend).await;
    let admin = cli_key(&db, "admin");
    let broker = cli_key(&db, "broker");
    let auditor = cli_key(&db, "auditor");
    let sp = cli_key(&db, "sp:sp-acme");
    let (base, handle) = spawn_app(&db).await;
    let http = Client::new();
    let acme = json!({"client_id": "sp-acme", "environment": "PROD", "name": "Acme Bank"});
    let (status, made) = post(&http, &format!("{base}/v1/clients"), Some(&admin), acme).await;
    assert_eq!(status, 201, "{made}");
    let url = format!("{base}/v1/log/records/0");
    for key in [&auditor, &sp] {
        let r = http.get(&url).bearer_auth(key).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");
        let bytes = r.bytes().await.unwrap();
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(&bytes);
        assert_eq!(hex::encode(h.finalize()), made["hash"].as_str().unwrap());
        let record: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(record["type"], "client.registered");
    }
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    for key in [&admin, &broker] {
        let r = http.get(&url).bearer_auth(key).send().await.unwrap();
        assert_eq!(r.status(), 403);
    }
    let r = http
        .get(format!("{base}/v1/log/records/1"))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .get(format!("{base}/v1/log/records/first"))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    handle.stop(true).await;
}

/// `/v1/keys` and `/v1/clients` with every role's key and with none, each with a valid and
/// an invalid body: the role is decided before the body is read.
async fn admin_routes_role_matrix(backend: Backend) {
    let db = TestDb::new(backend).await;
    let admin = cli_key(&db, "admin");
    let others = [
        cli_key(&db, "broker"),
        cli_key(&db, "auditor"),
        cli_key(&db, "sp:sp-acme"),
    ];
    let (base, handle) = spawn_app(&db).await;
    let http = Client::new();
    let routes = [
        ("/v1/keys", json!({"role": "auditor", "name": "x"})),
        (
            "/v1/clients",
            json!({"client_id": "sp-acme", "environment": "PROD", "name": "Acme"}),
        ),
    ];
    for (path, good) in &routes {
        let url = format!("{base}{path}");
        for body in [good.clone(), json!({"nonsense": true})] {
            let (status, _) = post(&http, &url, None, body.clone()).await;
            assert_eq!(status, 401, "{path} without a key");
            for key in &others {
                let (status, err) = post(&http, &url, Some(key), body.clone()).await;
                assert_eq!(status, 403, "{path} {body}: {err}");
                assert_eq!(err["error"], "forbidden");
            }
        }
        let (status, err) = post(&http, &url, Some(&admin), json!({"nonsense": true})).await;
        assert_eq!(status, 400, "{path}: {err}");
        let (status, made) = post(&http, &url, Some(&admin), good.clone()).await;
        assert_eq!(status, 201, "{path}: {made}");
    }
    handle.stop(true).await;
}
