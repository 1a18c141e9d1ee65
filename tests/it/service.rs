//! The HTTP service on a real port, on both backends, and the command line's help.

use serde_json::Value;

use crate::both_backends;
use crate::helpers::{spawn_app as spawn, vidne, Backend, TestDb};

both_backends!(health_and_readiness);

async fn health_and_readiness(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (url, handle) = spawn(&db).await;
    let client = reqwest::Client::new();
    let r = client.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");
    let r = client.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["status"].as_str(), body["records"].as_u64()),
        (Some("ready"), Some(0))
    );
    let r = client
        .get(format!("{url}/no/such/route"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "not_found");

    if backend == Backend::Postgres {
        // The database goes away under the running service: not ready, but alive.
        let name = db
            .url_string()
            .rsplit('/')
            .next()
            .unwrap()
            .split('?')
            .next()
            .unwrap()
            .to_owned();
        let admin = crate::helpers::pg_admin_url();
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .execute(&mut c)
            .await
            .unwrap();
        let r = client.get(format!("{url}/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "unavailable");
        assert_eq!(
            client
                .get(format!("{url}/healthz"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    handle.stop(true).await;
}

#[test]
fn help_documents_every_setting() {
    let (code, out, _) = vidne(&["--help"]);
    assert_eq!(code, 0);
    for word in [
        "serve",
        "migrate",
        "verify",
        "bench",
        "VIDNE_LOG",
        "VIDNE_LOG_FORMAT",
    ] {
        assert!(out.contains(word), "--help lacks {word}: {out}");
    }
    let (_, out, _) = vidne(&["serve", "--help"]);
    for word in [
        "DATABASE_URL",
        "VIDNE_LISTEN",
        "sqlite://vidne.db",
        "127.0.0.1:8080",
        "VIDNE_READ_CONNECTIONS",
    ] {
        assert!(out.contains(word), "serve --help lacks {word}: {out}");
    }
    let (code, _, err) = vidne(&["verify", "--database", "mysql://x"]);
    assert_eq!(code, 2);
    assert!(err.contains("postgres://"), "{err}");
}
