//! Two server instances over one PostgreSQL database (the test cluster, see
//! tests/event_store.rs) and one blob directory, over real HTTP on loopback: what one stores,
//! the other serves; a retried push that lands on the other instance is stored once; the
//! delete-while-referenced rule holds across them.

use filesync_server::Config;
use reqwest::StatusCode;

mod common;
use common::{attached, created, deleted, pg_database, read_sse, seqs, start_with, Server, TOKENS};

/// Two instances on `url`, sharing blobs and signing secret (their data dirs are one dir).
async fn two_instances(url: &str, dir: &std::path::Path) -> (Server, Server) {
    let cfg = || Config {
        database_url: Some(url.to_string()),
        ..common::config(dir, TOKENS)
    };
    (start_with(cfg(), None).await, start_with(cfg(), None).await)
}

#[tokio::test]
async fn two_instances_serve_one_store() {
    let url = pg_database("instances").await;
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = two_instances(&url, dir.path()).await;
    let content = b"shared".to_vec();

    let (s, pushed) = one
        .push("ta", "storeA", vec![created("c", 1, "f1", &content)])
        .await;
    assert_eq!(s, StatusCode::OK, "{pushed}");
    // Pulled from the other instance.
    let (_, pulled) = two.pull("ta", "storeA", "after=0").await;
    assert_eq!(seqs(&pulled), [1]);
    // A retry of the same push through the other instance, with one more event: stored once.
    let (s, retried) = two
        .push(
            "ta",
            "storeA",
            vec![created("c", 1, "f1", &content), deleted("c", 2, "f9")],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{retried}");
    assert_eq!(seqs(&retried), [1, 2]);

    // Uploaded through one, attached through the other: the blob is referenced, so neither
    // instance deletes it.
    let key = one.upload("ta", "storeA", &content).await;
    let (s, body) = two
        .push(
            "ta",
            "storeA",
            vec![attached("storeA", "c", 3, "f1", &content)],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["events"][0]["args"]["remoteKey"], key.as_str());
    for server in [&one, &two] {
        let (s, body) = server.delete("ta", &key).await;
        assert_eq!(s, StatusCode::CONFLICT, "{body}");
    }
    let (s, _) = one.push("ta", "storeA", vec![deleted("c", 4, "f1")]).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = two.delete("ta", &key).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(one.download("ta", &key).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_subscribers_of_one_instance_hear_pushes_through_another() {
    use futures_util::StreamExt;
    let url = pg_database("relay").await;
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = two_instances(&url, dir.path()).await;
    let resp = two
        .http
        .get(two.url("/api/v1/stores/storeA/events/live?after=0"))
        .bearer_auth("ta")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut stream = resp.bytes_stream().boxed();
    let mut buf = String::new();
    let ready = read_sse(&mut stream, &mut buf, 1).await;
    assert_eq!(ready[0].0, "ready");

    let (s, _) = one
        .push("ta", "storeA", vec![created("c", 1, "f1", b"1")])
        .await;
    assert_eq!(s, StatusCode::OK);
    let got = read_sse(&mut stream, &mut buf, 1).await;
    assert_eq!(got[0].0, "events");
    assert_eq!(got[0].1["events"][0]["id"]["n"], 1);
    assert_eq!(got[0].1["events"][0]["seq"], 1);

    // The listeners lose their connections: a push meanwhile sends a notification nobody
    // hears. The relay catches up when it is back.
    let (admin, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 2, "one listener per instance");
    let (s, _) = one
        .push("ta", "storeA", vec![created("c", 2, "f2", b"2")])
        .await;
    assert_eq!(s, StatusCode::OK);
    let got = read_sse(&mut stream, &mut buf, 1).await;
    assert_eq!(got[0].0, "events");
    assert_eq!(got[0].1["events"][0]["id"]["n"], 2);
}
