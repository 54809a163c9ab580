//! The service's HTTP API through `tower::ServiceExt::oneshot`: auth (none,
//! wrong, right), the one error shape on every route, body limits, policy
//! swaps persisted and followed by a second replica on the same store, a
//! broken push leaving the old version serving, the kill switch, and
//! `POST /events`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Method, Request, StatusCode};
use healer::api::{AdminToken, Api, Health, Ingest};
use healer::policy::blobs::BlobDir;
use healer::policy::catalog::Catalog;
use healer::policy::{PolicyContext, PolicyRegistry};
use healer::sources::{Handled, Origin};
use healer::store::{SqliteStore, Store};
use healer_test_artifacts as artifacts;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::support::{alarm, engine, now};

const TOKEN: &str = "test-admin-token-0123456789";

/// One replica: its registry, catalog and router, on a shared store and blob dir.
struct Replica {
    registry: Arc<PolicyRegistry>,
    catalog: Arc<Catalog>,
    router: Router,
}

struct Echo;

#[async_trait::async_trait]
impl Ingest for Echo {
    async fn ingest(&self, payload: &[u8], _: Origin) -> Handled {
        match serde_json::from_slice::<serde_json::Value>(payload) {
            Ok(_) => Handled::Done {
                incidents: 1,
                healed: 0,
                ignored: 0,
                reasons: Vec::new(),
                truncated: 0,
                acting: Vec::new(),
            },
            Err(e) => Handled::Rejected(format!("invalid JSON: {e}")),
        }
    }
}

fn replica(store: Arc<dyn Store>, blobs: &std::path::Path, peer: &str, token: bool) -> Replica {
    let registry = Arc::new(PolicyRegistry::new(engine()));
    let catalog = Arc::new(Catalog::new(
        registry.clone(),
        Arc::new(BlobDir::new(blobs)),
        store.clone(),
    ));
    let health = Arc::new(Health::new(Vec::new(), true, None));
    let router = Api::new(health)
        .token(token.then(|| AdminToken::new(TOKEN).expect("strong token")))
        .catalog(catalog.clone())
        .store(store)
        .ingest(Arc::new(Echo))
        .max_policy_bytes(4 << 20)
        .router()
        .layer(MockConnectInfo(peer.parse::<SocketAddr>().expect("addr")));
    Replica {
        registry,
        catalog,
        router,
    }
}

async fn sqlite(dir: &std::path::Path) -> Arc<dyn Store> {
    let store = SqliteStore::open(&dir.join("healer.db"))
        .await
        .expect("sqlite");
    store.init().await.expect("init");
    Arc::new(store)
}

async fn call(
    router: &Router,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, serde_json::Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    let resp = router
        .clone()
        .oneshot(req.body(Body::from(body)).expect("request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{path}: not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, json)
}

/// Every error is `{"error": code, "message": text}`.
fn assert_error(status: StatusCode, body: &serde_json::Value, code: StatusCode, error: &str) {
    assert_eq!(status, code, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

fn decided_by(registry: &PolicyRegistry) -> Option<String> {
    let d = registry.decide(&alarm("api"), &PolicyContext::default(), now());
    d.active.first().map(|o| o.policy.version.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_need_the_token_and_read_routes_loopback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sqlite(dir.path()).await;
    let blobs = dir.path().join("blobs");
    let v1 = artifacts::bytes(artifacts::SWAP_V1);

    // No token configured: admin off, reads only from loopback.
    let off = replica(store.clone(), &blobs, "127.0.0.1:5000", false);
    let (s, b) = call(
        &off.router,
        Method::PUT,
        "/policies/swap-test",
        None,
        v1.clone(),
    )
    .await;
    assert_error(s, &b, StatusCode::FORBIDDEN, "admin-off");
    let (s, _) = call(&off.router, Method::GET, "/policies", None, Vec::new()).await;
    assert_eq!(s, StatusCode::OK);
    // A proxy on the same host forwards: not a loopback caller.
    let req = Request::get("/policies")
        .header("x-forwarded-for", "203.0.113.9")
        .body(Body::empty())
        .expect("request");
    let resp = off.router.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let remote = replica(store.clone(), &blobs, "10.0.0.7:5000", false);
    let (s, b) = call(&remote.router, Method::GET, "/policies", None, Vec::new()).await;
    assert_error(s, &b, StatusCode::FORBIDDEN, "loopback-only");

    // Token configured: missing and wrong are 401, right is served.
    let on = replica(store.clone(), &blobs, "10.0.0.7:5000", true);
    for token in [None, Some("wrong-token-0123456789")] {
        let (s, b) = call(
            &on.router,
            Method::PUT,
            "/policies/swap-test",
            token,
            v1.clone(),
        )
        .await;
        assert_error(s, &b, StatusCode::UNAUTHORIZED, "unauthorized");
        let (s, b) = call(&on.router, Method::GET, "/policies", token, Vec::new()).await;
        assert_error(s, &b, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let (s, b) = call(
        &on.router,
        Method::GET,
        "/policies",
        Some(TOKEN),
        Vec::new(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = call(&on.router, Method::GET, "/health", None, Vec::new()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // An anonymous upload is refused before its body is read.
    let big = vec![0; 5 << 20];
    let (s, b) = call(&on.router, Method::PUT, "/policies/swap-test", None, big).await;
    assert_error(s, &b, StatusCode::UNAUTHORIZED, "unauthorized");

    // Unknown routes and methods answer the same shape.
    let (s, b) = call(&on.router, Method::GET, "/nope", Some(TOKEN), Vec::new()).await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not-found");
    let (s, b) = call(
        &on.router,
        Method::PATCH,
        "/policies",
        Some(TOKEN),
        Vec::new(),
    )
    .await;
    assert_error(s, &b, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_swaps_on_every_replica_and_a_broken_one_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sqlite(dir.path()).await;
    let blobs = dir.path().join("blobs");
    let a = replica(store.clone(), &blobs, "10.0.0.1:1", true);
    let b = replica(store.clone(), &blobs, "10.0.0.2:1", true);
    let (v1, v2) = (
        artifacts::bytes(artifacts::SWAP_V1),
        artifacts::bytes(artifacts::SWAP_V2),
    );

    let (s, out) = call(
        &a.router,
        Method::PUT,
        "/policies/swap-test",
        Some(TOKEN),
        v1.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out["policy"]["version"], "1");
    assert!(
        out["swap-ms"]
            .as_f64()
            .is_some_and(|ms| ms >= out["compile-ms"].as_f64().unwrap_or(0.0))
    );
    assert_eq!(decided_by(&a.registry).as_deref(), Some("1"));
    // The other replica follows the persisted set.
    assert_eq!(decided_by(&b.registry), None);
    assert!(b.catalog.follow().await.expect("follow"));
    assert_eq!(decided_by(&b.registry).as_deref(), Some("1"));

    // A push under the wrong name, a non-component and an oversized body:
    // refused with the shape, and v1 keeps serving everywhere.
    let (s, e) = call(
        &a.router,
        Method::PUT,
        "/policies/other",
        Some(TOKEN),
        v2.clone(),
    )
    .await;
    assert_error(s, &e, StatusCode::UNPROCESSABLE_ENTITY, "invalid-policy");
    let (s, e) = call(
        &a.router,
        Method::PUT,
        "/policies/swap-test",
        Some(TOKEN),
        b"not wasm".to_vec(),
    )
    .await;
    assert_error(s, &e, StatusCode::UNPROCESSABLE_ENTITY, "invalid-policy");
    let (s, e) = call(
        &a.router,
        Method::PUT,
        "/policies/swap-test",
        Some(TOKEN),
        vec![0; 5 << 20],
    )
    .await;
    assert_error(s, &e, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large");
    let (s, e) = call(
        &a.router,
        Method::PUT,
        "/policies/swap-test",
        Some(TOKEN),
        Vec::new(),
    )
    .await;
    assert_error(s, &e, StatusCode::BAD_REQUEST, "bad-request");
    assert!(!b.catalog.follow().await.expect("follow"));
    assert_eq!(decided_by(&a.registry).as_deref(), Some("1"));

    // v2 through POST /policies (name from metadata), then rollback on b.
    let (s, out) = call(
        &a.router,
        Method::POST,
        "/policies",
        Some(TOKEN),
        v2.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out["policy"]["version"], "2");
    b.catalog.follow().await.expect("follow");
    assert_eq!(decided_by(&b.registry).as_deref(), Some("2"));
    let (s, out) = call(
        &b.router,
        Method::POST,
        "/policies/swap-test/rollback",
        Some(TOKEN),
        Vec::new(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out["active"]["version"], "1");
    assert_eq!(decided_by(&b.registry).as_deref(), Some("1"));
    a.catalog.follow().await.expect("follow");
    assert_eq!(decided_by(&a.registry).as_deref(), Some("1"));
    let (s, e) = call(
        &b.router,
        Method::POST,
        "/policies/swap-test/rollback",
        Some(TOKEN),
        Vec::new(),
    )
    .await;
    assert_error(s, &e, StatusCode::CONFLICT, "conflict");

    // Shadow v2, then activate it.
    let sha2 = healer_sha(&v2);
    let body = serde_json::to_vec(&serde_json::json!({"sha256": sha2})).expect("json");
    let (s, out) = call(
        &a.router,
        Method::POST,
        "/policies/swap-test/shadow",
        Some(TOKEN),
        body,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    let d = a
        .registry
        .decide(&alarm("api"), &PolicyContext::default(), now());
    assert_eq!(d.active[0].policy.version, "1");
    assert_eq!(d.shadow[0].policy.version, "2");
    let (s, out) = call(
        &a.router,
        Method::POST,
        "/policies/swap-test/activate",
        Some(TOKEN),
        Vec::new(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    let d = a
        .registry
        .decide(&alarm("api"), &PolicyContext::default(), now());
    assert_eq!(d.active[0].policy.version, "2");
    assert!(d.shadow.is_empty());

    // The listing shows roles and counts; a restarted replica comes back
    // with the last active set.
    let (s, list) = call(&a.router, Method::GET, "/policies", Some(TOKEN), Vec::new()).await;
    assert_eq!(s, StatusCode::OK);
    let versions = &list["policies"][0]["versions"];
    let active: Vec<_> = versions
        .as_array()
        .expect("versions")
        .iter()
        .filter(|v| v["role"] == "active")
        .collect();
    assert_eq!(active.len(), 1, "{list}");
    assert_eq!(active[0]["version"], "2");
    assert!(
        active[0]["decisions"].as_u64().is_some_and(|n| n >= 1),
        "{list}"
    );
    let restarted = replica(store.clone(), &blobs, "10.0.0.3:1", true);
    restarted.catalog.start(Vec::new()).await.expect("start");
    assert_eq!(decided_by(&restarted.registry).as_deref(), Some("2"));

    // Retire: gone everywhere.
    let (s, _) = call(
        &a.router,
        Method::DELETE,
        "/policies/swap-test",
        Some(TOKEN),
        Vec::new(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    b.catalog.follow().await.expect("follow");
    assert_eq!(decided_by(&b.registry), None);
    // A restart with the file still in the image does not bring it back.
    let again = replica(store.clone(), &blobs, "10.0.0.4:1", true);
    let image = vec![healer::policy::follow::WasmFile {
        path: "swap.wasm".into(),
        bytes: v2.clone(),
        modified: None,
    }];
    again
        .registry
        .swap(&v2, healer::policy::PolicyRole::Active)
        .expect("image");
    again.catalog.start(image).await.expect("start");
    assert_eq!(decided_by(&again.registry), None, "retired stays retired");
    let (s, e) = call(
        &a.router,
        Method::DELETE,
        "/policies/swap-test",
        Some(TOKEN),
        Vec::new(),
    )
    .await;
    assert_error(s, &e, StatusCode::NOT_FOUND, "not-found");
}

fn healer_sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_switch_and_events_answer_in_one_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sqlite(dir.path()).await;
    let r = replica(
        store.clone(),
        &dir.path().join("blobs"),
        "127.0.0.1:9",
        true,
    );
    // With a token configured, even loopback reads need it.
    let (s, e) = call(&r.router, Method::GET, "/kill-switch", None, Vec::new()).await;
    assert_error(s, &e, StatusCode::UNAUTHORIZED, "unauthorized");
    let (s, out) = call(
        &r.router,
        Method::GET,
        "/kill-switch",
        Some(TOKEN),
        Vec::new(),
    )
    .await;
    assert_eq!((s, out["state"].as_str()), (StatusCode::OK, Some("off")));
    let on = br#"{"state":"on"}"#.to_vec();
    let (s, e) = call(&r.router, Method::PUT, "/kill-switch", None, on.clone()).await;
    assert_error(s, &e, StatusCode::UNAUTHORIZED, "unauthorized");
    let (s, _) = call(&r.router, Method::PUT, "/kill-switch", Some(TOKEN), on).await;
    assert_eq!(s, StatusCode::OK);
    let flag = healer::safety::kill_switch_flag(store.as_ref())
        .await
        .expect("flag");
    assert_eq!(flag, healer::safety::KillSwitch::On);
    let (s, e) = call(
        &r.router,
        Method::PUT,
        "/kill-switch",
        Some(TOKEN),
        br#"{"state":"maybe"}"#.to_vec(),
    )
    .await;
    assert_error(s, &e, StatusCode::BAD_REQUEST, "bad-request");

    let (s, out) = call(
        &r.router,
        Method::POST,
        "/events",
        Some(TOKEN),
        br#"{"detail-type":"x"}"#.to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{out}");
    assert_eq!(out["incidents"], 1);
    let (s, e) = call(
        &r.router,
        Method::POST,
        "/events",
        Some(TOKEN),
        b"{not json".to_vec(),
    )
    .await;
    assert_error(s, &e, StatusCode::BAD_REQUEST, "bad-request");
    let (s, e) = call(
        &r.router,
        Method::POST,
        "/events",
        Some(TOKEN),
        vec![b' '; 2 << 20],
    )
    .await;
    assert_error(s, &e, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_without_resource_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sqlite(dir.path()).await;
    let r = replica(store, &dir.path().join("blobs"), "10.9.9.9:1", true);
    let v1 = artifacts::bytes(artifacts::SWAP_V1);
    let (s, _) = call(&r.router, Method::POST, "/policies", Some(TOKEN), v1).await;
    assert_eq!(s, StatusCode::OK);
    decided_by(&r.registry);
    let resp = r
        .router
        .clone()
        .oneshot(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = resp.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(ct.starts_with("text/plain"), "{ct}");
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec(),
    )
    .expect("utf-8");
    for needle in [
        "healer_build_info{version=",
        "# TYPE healer_policy_swaps_total counter",
        "# TYPE healer_decisions_total counter",
        "healer_decisions_total{policy=\"swap-test\",version=\"1\",mode=\"active\",result=\"ok\"}",
        "# TYPE healer_policy_evaluation_seconds histogram",
        "healer_policy_fuel_units_count{policy=\"swap-test\"}",
        "healer_policies_active 1",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert!(!text.contains("arn:aws"), "resource ids in labels:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventbridge_deliveries_need_the_shared_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sqlite(dir.path()).await;
    let secret = "eventbridge-shared-secret-42";
    let health = Arc::new(Health::new(Vec::new(), true, None));
    let off = Api::new(health.clone()).ingest(Arc::new(Echo)).router();
    let on = Api::new(health)
        .store(store)
        .ingest(Arc::new(Echo))
        .eventbridge_secret(Some(AdminToken::new(secret).expect("strong")))
        .router();
    let send = |router: &Router, header: Option<&str>| {
        let mut req = Request::post("/events/eventbridge");
        if let Some(h) = header {
            req = req.header(healer::api::SECRET_HEADER, h);
        }
        let req = req
            .body(Body::from(r#"{"detail-type":"x"}"#))
            .expect("request");
        let router = router.clone();
        async move {
            let resp = router.oneshot(req).await.expect("infallible");
            let status = resp.status();
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&body).expect("json"),
            )
        }
    };
    let (s, b) = send(&off, Some(secret)).await;
    assert_error(s, &b, StatusCode::FORBIDDEN, "admin-off");
    let (s, b) = send(&on, None).await;
    assert_error(s, &b, StatusCode::UNAUTHORIZED, "unauthorized");
    let (s, b) = send(&on, Some("eventbridge-shared-secret-43")).await;
    assert_error(s, &b, StatusCode::UNAUTHORIZED, "unauthorized");
    let (s, b) = send(&on, Some(secret)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
}

fn incident_of(resource: &str, kind: &str, minute: u32) -> healer::Incident {
    crate::support::incident(&format!(
        r#"{{"kind":"{kind}","source":"test","reason":"r-{resource}-{minute}",
            "resource":{{"kind":"alarm","id":"{resource}"}},
            "detected-at":"2024-05-01T10:{minute:02}:00Z"}}"#
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_page_with_signed_cursors_and_filters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sqlite(dir.path()).await;
    for m in 0..7 {
        let kind = if m % 2 == 0 {
            "alarm"
        } else {
            "function-errors"
        };
        let resource = if m < 4 { "res-a" } else { "res-b" };
        let r = healer::store::IncidentRecord::detected(incident_of(resource, kind, m));
        store.insert_if_absent(&r).await.expect("insert");
    }
    let a = replica(
        store.clone(),
        &dir.path().join("blobs"),
        "127.0.0.1:1",
        false,
    );
    // A second replica on the same store honours the first one's cursors.
    let b = replica(
        store.clone(),
        &dir.path().join("blobs"),
        "127.0.0.1:2",
        false,
    );

    let mut seen = Vec::new();
    let mut path = "/incidents?limit=3".to_owned();
    for page in 0.. {
        let router = if page % 2 == 0 { &a.router } else { &b.router };
        let (s, body) = call(router, Method::GET, &path, None, Vec::new()).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        for r in body["items"].as_array().expect("items") {
            seen.push(r["incident"]["id"].as_str().expect("id").to_owned());
        }
        match body["next"].as_str() {
            Some(next) => path = format!("/incidents?limit=3&cursor={next}"),
            None => break,
        }
        assert!(page < 10, "paging never ends");
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 7, "every incident once: {seen:?}");

    // Filters: kind (in the store), resource (applied per page).
    let (_, body) = call(
        &a.router,
        Method::GET,
        "/incidents?kind=function-errors&resource=res-b&limit=500",
        None,
        Vec::new(),
    )
    .await;
    let items = body["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{body}");
    assert_eq!(items[0]["incident"]["resource"]["id"], "res-b");

    // A cursor is bound to its filters and cannot be forged.
    let (_, body) = call(
        &a.router,
        Method::GET,
        "/incidents?limit=2",
        None,
        Vec::new(),
    )
    .await;
    let next = body["next"].as_str().expect("more pages").to_owned();
    let (s, e) = call(
        &a.router,
        Method::GET,
        &format!("/incidents?limit=2&kind=alarm&cursor={next}"),
        None,
        Vec::new(),
    )
    .await;
    assert_error(s, &e, StatusCode::BAD_REQUEST, "bad-request");
    // The last hex digit of the MAC, changed.
    let flipped = if next.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{flipped}", &next[..next.len() - 1]);
    let (s, e) = call(
        &a.router,
        Method::GET,
        &format!("/incidents?cursor={forged}"),
        None,
        Vec::new(),
    )
    .await;
    assert_error(s, &e, StatusCode::BAD_REQUEST, "bad-request");
    let (s, e) = call(
        &a.router,
        Method::GET,
        "/incidents?state=nonsense",
        None,
        Vec::new(),
    )
    .await;
    assert_error(s, &e, StatusCode::BAD_REQUEST, "bad-request");
    let (s, e) = call(
        &a.router,
        Method::GET,
        "/incidents?colour=red",
        None,
        Vec::new(),
    )
    .await;
    assert_error(s, &e, StatusCode::BAD_REQUEST, "bad-request");

    // One incident's whole record; an unknown one is 404.
    let id = seen[0].clone();
    let (s, one) = call(
        &a.router,
        Method::GET,
        &format!("/incidents/{id}"),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["incident"]["id"], id.as_str());
    assert_eq!(one["state"], "detected");
    let (s, e) = call(&a.router, Method::GET, "/incidents/nope", None, Vec::new()).await;
    assert_error(s, &e, StatusCode::NOT_FOUND, "not-found");

    let (s, stats) = call(
        &a.router,
        Method::GET,
        "/stats?by=kind&since=2024-01-01T00:00:00Z",
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{stats}");
    let rows = stats["rows"].as_array().expect("rows");
    assert_eq!(
        rows.iter()
            .map(|r| r["count"].as_u64().unwrap_or(0))
            .sum::<u64>(),
        7,
        "{stats}"
    );
}

/// Two replicas push alternately and concurrently; every change lands in the
/// set (no lost update), and after a follow both decide with the set's active
/// version.
async fn concurrent_pushes_converge(
    a_store: Arc<dyn Store>,
    b_store: Arc<dyn Store>,
    blobs: &std::path::Path,
) {
    let a = replica(a_store, blobs, "10.0.0.1:1", true);
    let b = replica(b_store, blobs, "10.0.0.2:1", true);
    let (v1, v2) = (
        artifacts::bytes(artifacts::SWAP_V1),
        artifacts::bytes(artifacts::SWAP_V2),
    );
    let rounds = 6;
    let push = |r: &Replica, bytes: Vec<u8>| {
        let catalog = r.catalog.clone();
        async move {
            catalog
                .push(bytes, healer::policy::PolicyRole::Active, None, "test")
                .await
                .expect("push")
        }
    };
    for _ in 0..rounds {
        let (x, y) = tokio::join!(push(&a, v1.clone()), push(&b, v2.clone()));
        assert!(x.swap_ms >= 0.0 && y.swap_ms >= 0.0);
    }
    a.catalog.follow().await.expect("follow");
    b.catalog.follow().await.expect("follow");
    let (set, version) = a.catalog.read().await.expect("read");
    let pointer = &set.policies["swap-test"];
    // Each round changed the active version at least once (the later push
    // of a round may find its version already active).
    assert!(pointer.activations.len() >= rounds, "{pointer:?}");
    assert!(version >= rounds as u64);
    let active = pointer.activations.last().expect("active").clone();
    for r in [&a, &b] {
        let d = r
            .registry
            .decide(&alarm("api"), &PolicyContext::default(), now());
        assert_eq!(d.active[0].policy.sha256, active);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_on_sqlite_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("healer.db");
    let a = SqliteStore::open(&path).await.expect("open");
    a.init().await.expect("init");
    let b = SqliteStore::open(&path).await.expect("open again");
    concurrent_pushes_converge(Arc::new(a), Arc::new(b), &dir.path().join("blobs")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_on_dynamodb_lose_nothing() {
    let Some(moto) = crate::moto::start_serial("concurrent_pushes_on_dynamodb") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let tables = healer::store::DynamoTables::with_prefix("swaps");
    let a = healer::store::DynamoStore::new(crate::moto::dynamodb(&moto).await, tables.clone());
    a.init().await.expect("init");
    let b = healer::store::DynamoStore::new(crate::moto::dynamodb(&moto).await, tables);
    concurrent_pushes_converge(Arc::new(a), Arc::new(b), &dir.path().join("blobs")).await;
}

/// 100 swaps through the API while decisions flow: every decision is
/// answered, by exactly one complete version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_api_swaps_under_load_lose_and_mix_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sqlite(dir.path()).await;
    let r = replica(store, &dir.path().join("blobs"), "10.0.0.1:1", true);
    let (v1, v2) = (
        artifacts::bytes(artifacts::SWAP_V1),
        artifacts::bytes(artifacts::SWAP_V2),
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let load = {
        let (registry, stop, answered) = (r.registry.clone(), stop.clone(), answered.clone());
        std::thread::spawn(move || {
            let mut asked = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                asked += 1;
                let d = registry.decide(
                    &alarm(&format!("load-{asked}")),
                    &PolicyContext::default(),
                    now(),
                );
                if let Some(out) = d.active.first() {
                    let decision = out.result.as_ref().expect("decides");
                    let v = &out.policy.version;
                    assert_eq!(
                        decision.summary,
                        format!("decided-by {v}"),
                        "one version per decision"
                    );
                    assert_eq!(&decision.steps[0].reason, v);
                    answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            asked
        })
    };
    let (s, _) = call(
        &r.router,
        Method::POST,
        "/policies",
        Some(TOKEN),
        v1.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    for n in 0..100 {
        let bytes = if n % 2 == 0 { v2.clone() } else { v1.clone() };
        let (s, out) = call(&r.router, Method::POST, "/policies", Some(TOKEN), bytes).await;
        assert_eq!(s, StatusCode::OK, "{out}");
        assert_eq!(out["changed"], true, "{out}");
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let asked = load.join().expect("load thread");
    let answered = answered.load(std::sync::atomic::Ordering::Relaxed);
    // Before the first push nothing handles the kind; after it every one is answered.
    assert!(answered > 0 && answered <= asked, "{answered} of {asked}");
    assert_eq!(decided_by(&r.registry).as_deref(), Some("1"));
    assert_eq!(r.catalog.swaps(), 101);
}

/// Reads server-sent events off `body` until `seen` holds `needle`.
async fn stream_until(body: &mut Body, seen: &mut String, needle: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !seen.contains(needle) {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in 5 s; got {seen}"))
            .expect("the stream is open")
            .expect("frame");
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
}

/// `GET /incidents/stream`: `ready`, then each change the store records as
/// an `incident` event with the whole record (whoever wrote it); the caller
/// needs the token; the stream ends when the service stops.
#[tokio::test]
async fn the_incident_stream_sends_changes_and_ends_when_the_service_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sqlite(dir.path()).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let router = Api::new(Arc::new(Health::new(Vec::new(), true, None)))
        .token(Some(AdminToken::new(TOKEN).expect("strong token")))
        .store(store.clone())
        .stop(stopped)
        .router()
        .layer(MockConnectInfo(
            "127.0.0.1:9".parse::<SocketAddr>().expect("addr"),
        ));
    let open = |token: Option<&str>| {
        let mut req = Request::get("/incidents/stream");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        router
            .clone()
            .oneshot(req.body(Body::empty()).expect("request"))
    };
    let refused = open(None).await.expect("infallible");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    // A first subscriber that goes away while the watcher starts leaves
    // the feed working for the next one.
    tokio::spawn(open(Some(TOKEN))).abort();
    let resp = open(Some(TOKEN)).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let mut seen = String::new();
    stream_until(&mut body, &mut seen, "event: ready").await;

    // Detected now: the stream follows the last week's newest incidents.
    let inc = healer::Incident::from_json(
        format!(
            r#"{{"kind":"alarm","source":"test","reason":"streamed",
                "resource":{{"kind":"alarm","id":"arn:aws:cloudwatch:us-east-1:1:alarm:streamed"}},
                "detected-at":"{}"}}"#,
            chrono::Utc::now().to_rfc3339()
        )
        .as_bytes(),
    )
    .expect("incident");
    let (created, _) = store.create_incident(&inc).await.expect("create");
    stream_until(&mut body, &mut seen, &format!("\"id\":\"{}\"", inc.id)).await;
    assert!(seen.contains("event: incident"), "{seen}");
    store
        .transition(
            &created.incident.id,
            healer::store::LifecycleState::Escalated,
            chrono::Utc::now(),
            Some("by hand".into()),
        )
        .await
        .expect("escalate");
    stream_until(&mut body, &mut seen, "\"state\":\"escalated\"").await;

    stop.send(true).expect("stop");
    let end = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while let Some(frame) = body.frame().await {
            frame.expect("frame");
        }
    })
    .await;
    assert!(end.is_ok(), "the stream outlived the service's stop");
}
