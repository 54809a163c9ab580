//! `healer replay`, run as a user would: record decisions with `healer
//! decide` on the real AWS payloads in tests/fixtures, then replay a policy
//! on them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use healer_test_artifacts as artifacts;
use serde_json::Value;

fn fixtures(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/aws-events")
        .join(sub)
}

fn healer(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_healer"))
        .args(args)
        .env("HEALER_DATA_DIR", data)
        .env("HEALER_STORE", "sqlite")
        .env_remove("HEALER_POLICIES")
        .output()
        .expect("runs healer")
}

/// Records the decisions of `policies` (component paths) on the payloads
/// under `events` into a new SQLite store in `dir`; returns its data dir.
fn record(dir: &Path, policies: &[&str], events: &Path) -> PathBuf {
    let pdir = dir.join("policies");
    std::fs::create_dir_all(&pdir).expect("mkdir");
    for p in policies {
        let name = Path::new(p).file_name().expect("file name");
        std::fs::copy(p, pdir.join(name)).expect("copy");
    }
    let data = dir.join("data");
    let pdir = pdir.to_str().expect("utf-8 path");
    let events = events.to_str().expect("utf-8 path");
    let out = healer(&data, &["decide", "--no-cache", "--policies", pdir, events]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    data
}

fn replay_json(data: &Path, policy: &str, extra: &[&str]) -> (Output, Value) {
    let mut args = vec!["replay", "--no-cache", "--json", "--policy", policy];
    args.extend_from_slice(extra);
    let out = healer(data, &args);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, json)
}

/// Every example policy, replayed on the decisions it made on every fixture,
/// reproduces each one exactly: same plan, same summary, same fuel.
#[test]
fn the_recorded_version_reproduces_every_decision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let examples = [
        artifacts::ECS_TASK_RESTART,
        artifacts::EC2_REPLACE,
        artifacts::LAMBDA_FAILURE_RATE,
    ];
    let data = record(dir.path(), &examples, &fixtures(""));
    let (mut replayed, mut judged) = (0, 0);
    for policy in examples {
        // With the governor too: the same plans are judged alike.
        let (out, json) = replay_json(
            &data,
            policy,
            &["--fail-on", "changed,errors,denied-more", "--verdicts"],
        );
        assert!(
            out.status.success(),
            "{policy}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = &json["summary"];
        assert_eq!(s["total"], s["same"], "{policy}: {s}");
        assert_eq!(s["determinism-failures"], 0, "{policy}: {s}");
        assert_eq!(s["skipped"]["missing-input"], 0, "{policy}: {s}");
        assert_eq!(s["denied-more"], 0, "{policy}: {s}");
        for case in json["cases"].as_array().expect("cases") {
            if let Some(v) = case.get("verdicts") {
                assert_eq!(v["recorded"], v["candidate"], "{case}");
                judged += 1;
            }
            assert_eq!(case["deterministic"], true, "{case}");
            assert_eq!(
                case["fuel"]["recorded"], case["fuel"]["candidate"],
                "{case}"
            );
        }
        replayed += s["total"].as_u64().expect("total");
    }
    // The fixtures hold ECS, EC2 and alarm failures: several decisions each.
    assert!(replayed >= 5, "only {replayed} decisions replayed");
    assert!(judged >= 1, "no plan with steps was judged");
}

/// A new version that changes the plan: every difference named, field by
/// field; `--fail-on changed` fails the gate, `--fail-on errors` does not.
#[test]
fn a_changed_plan_is_named_and_fails_the_gate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = record(dir.path(), &[artifacts::SWAP_V1], &fixtures("cloudwatch"));
    let (out, json) = replay_json(&data, artifacts::SWAP_V2, &["--fail-on", "changed"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("replay gate failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = &json["summary"];
    let total = s["total"].as_u64().expect("total");
    assert!(total >= 3, "{s}");
    assert_eq!(s["changed"], total);
    assert_eq!(s["by-kind"]["alarm"]["changed"], total);
    let case = &json["cases"][0];
    assert_eq!(case["comparison"]["result"], "changed");
    assert_eq!(case["recorded"]["version"], "1");
    // The candidate is another build: no determinism verdict.
    assert!(case.get("deterministic").is_none(), "{case}");
    let fields = &case["comparison"]["changed"][0]["fields"];
    assert!(
        fields
            .as_array()
            .expect("fields")
            .iter()
            .any(|f| f["field"] == "subject" && f["from"] == "1" && f["to"] == "2"),
        "{fields}"
    );

    let (out, _) = replay_json(&data, artifacts::SWAP_V2, &["--fail-on", "errors"]);
    assert!(out.status.success());
    // The text report names each change.
    let text = healer(
        &data,
        &[
            "replay",
            "--no-cache",
            "--policy",
            artifacts::SWAP_V2,
            "--verdicts",
            "--mttr",
        ],
    );
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("CHANGED step 0:"), "{text}");
    assert!(text.contains(r#"subject "1" -> "2""#), "{text}");
    // Each change with the governor's word on the candidate's plan, and the
    // backtest (nothing healed in a `decide` store: nothing known).
    assert!(text.contains("| governor: every step approved"), "{text}");
    assert!(
        text.contains("0 -> 0 steps denied; 0 incidents with more denied"),
        "{text}"
    );
    assert!(
        text.contains("MTTR backtest: 0 replayed incidents healed"),
        "{text}"
    );
}

/// A candidate that traps where the recorded version decided is a new
/// error; one that does not handle the kind is reported as such, never
/// counted as the same.
#[test]
fn new_errors_and_unhandled_kinds_are_told_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = record(dir.path(), &[artifacts::SWAP_V1], &fixtures("cloudwatch"));
    // The ECS example does not handle alarms: compared against swap-test.
    let (out, json) = replay_json(
        &data,
        artifacts::ECS_TASK_RESTART,
        &["--against", "swap-test", "--fail-on", "changed,errors"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = &json["summary"];
    assert_eq!(s["not-handled"], s["total"], "{s}");
    assert_eq!(s["same"], 0);
    // Filters: a kind with no decision, and a window before every incident.
    let (_, json) = replay_json(&data, artifacts::SWAP_V1, &["--kind", "task-crashed"]);
    assert_eq!(json["summary"]["total"], 0);
    let (_, json) = replay_json(
        &data,
        artifacts::SWAP_V1,
        &["--until", "2000-01-01T00:00:00Z"],
    );
    assert_eq!(json["summary"]["total"], 0);
    let bad = healer(
        &data,
        &["replay", "--policy", artifacts::SWAP_V1, "--kind", "nope"],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown incident kind"));

    // Alarms the hostile guest panics on, or refuses: new errors.
    let dir = tempfile::tempdir().expect("tempdir");
    let events = dir.path().join("events");
    std::fs::create_dir(&events).expect("mkdir");
    for (i, reason) in ["panic", "err", "calm"].iter().enumerate() {
        let incident = format!(
            r#"{{"kind":"alarm","source":"test","reason":"{reason}","resource":{{"kind":"alarm","id":"a{i}"}},"detected-at":"2024-05-01T10:00:0{i}Z"}}"#
        );
        std::fs::write(events.join(format!("{i}.json")), incident).expect("write");
    }
    let data = record(dir.path(), &[artifacts::SWAP_V1], &events);
    let (out, json) = replay_json(
        &data,
        artifacts::HOSTILE,
        &["--against", "swap-test", "--fail-on", "errors"],
    );
    assert_eq!(out.status.code(), Some(1));
    let s = &json["summary"];
    assert_eq!(s["total"], 3, "{s}");
    assert_eq!(s["new-errors"], 2, "{s}");
    // "calm": hostile proposes no step where swap-test notified.
    assert_eq!(s["changed"], 1, "{s}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 new errors"));
}

/// A shadow version decides beside the active one in the pipeline; the
/// shadow report sets each of its recorded decisions beside the active's,
/// and the recorded active version replays to the same decisions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shadow_report_compares_recorded_shadow_decisions() {
    use healer::pipeline::Pipeline;
    use healer::policy::{PolicyContext, PolicyRegistry, PolicyRole};
    use healer::replay::{Comparison, Selection};
    use healer::safety::{Governor, GovernorConfig, StaticFacts};
    use healer::store::SqliteStore;

    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("healer.db"))
        .await
        .expect("open");
    let registry = PolicyRegistry::new(crate::support::engine());
    registry
        .swap(&artifacts::bytes(artifacts::SWAP_V1), PolicyRole::Active)
        .expect("v1");
    registry
        .swap(&artifacts::bytes(artifacts::SWAP_V2), PolicyRole::Shadow)
        .expect("v2");
    let governor = Governor::new(GovernorConfig::default());
    let facts = StaticFacts::default();
    let pipeline = Pipeline {
        store: &store,
        registry: &registry,
        governor: &governor,
        facts: &facts,
    };
    for n in 0..4 {
        let inc = crate::support::alarm(&format!("alarm-{n}"));
        pipeline
            .on_incident(&inc, &PolicyContext::default(), inc.detected_at)
            .await
            .expect("decided");
    }

    let (cases, summary) =
        healer::replay::shadow_report(&store, &Selection::default(), "swap-test", None)
            .await
            .expect("report");
    assert_eq!(summary.counts.total, 4);
    assert_eq!(summary.counts.changed, 4);
    assert_eq!(summary.candidate.version, "2");
    assert_eq!(cases[0].recorded.version, "1");
    assert!(matches!(cases[0].comparison, Comparison::Changed(_)));
    // Another name has no shadow: nothing to compare, every incident skipped.
    let (_, none) = healer::replay::shadow_report(&store, &Selection::default(), "other", None)
        .await
        .expect("report");
    assert_eq!(none.counts.total, 0);
    assert_eq!(none.skipped.not_decided_by, 4);

    // The same through the API the dashboard reads.
    {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let shared: std::sync::Arc<dyn healer::store::Store> = std::sync::Arc::new(
            SqliteStore::open(&dir.path().join("healer.db"))
                .await
                .expect("open"),
        );
        let router = healer::api::Api::new(std::sync::Arc::new(healer::api::Health::new(
            Vec::new(),
            true,
            None,
        )))
        .token(Some(
            healer::api::AdminToken::new("shadow-token-0123456789").expect("token"),
        ))
        .store(shared)
        .governor(
            Governor::new(GovernorConfig::default()),
            healer::safety::Facts::default(),
        )
        .router();
        let req =
            axum::http::Request::get("/stats/shadow?policy=swap-test&since=2000-01-01T00:00:00Z")
                .header("authorization", "Bearer shadow-token-0123456789")
                .body(axum::body::Body::empty())
                .expect("request");
        let resp = router.clone().oneshot(req).await.expect("infallible");
        assert_eq!(resp.status(), axum::http::StatusCode::OK);
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let v: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(v["summary"]["total"], 4, "{v}");
        assert_eq!(v["summary"]["same"], 0, "{v}");
        assert_eq!(v["differing"].as_array().map(Vec::len), Some(4), "{v}");
        assert!(v["summary"].get("denied").is_none(), "{v}");
        // With the service's governor: both plans judged, nothing denied.
        let req = axum::http::Request::get(
            "/stats/shadow?policy=swap-test&since=2000-01-01T00:00:00Z&verdicts=true",
        )
        .header("authorization", "Bearer shadow-token-0123456789")
        .body(axum::body::Body::empty())
        .expect("request");
        let resp = router.clone().oneshot(req).await.expect("infallible");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let v: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            v["summary"]["denied"],
            serde_json::json!({"recorded": 0, "candidate": 0}),
            "{v}"
        );
        assert!(v["differing"][0]["verdicts"]["candidate"].is_array(), "{v}");
    }

    // The active version, replayed through the library: all reproduced.
    let engine = crate::support::engine();
    let v1 = crate::support::load(&engine, artifacts::SWAP_V1);
    let (reports, summary) = healer::replay::run(
        &store,
        &engine,
        &v1,
        &Selection::default(),
        "swap-test",
        2,
        None,
    )
    .await
    .expect("replay");
    assert_eq!(summary.counts.same, 4);
    assert_eq!(summary.determinism_failures, 0);
    assert!(reports.iter().all(|r| r.deterministic == Some(true)));

    // With verdicts: both plans judged against the store as it was at each
    // decision (10:00). Notifications sent after it do not count; two sent
    // before it fill a limit of two per hour, so every notify is denied.
    let v2 = crate::support::load(&engine, artifacts::SWAP_V2);
    let governor = healer::safety::Governor::new(healer::safety::GovernorConfig {
        notify_per_hour: 2,
        ..healer::safety::GovernorConfig::default()
    });
    let facts = healer::safety::Facts::default();
    let all = Selection::default();
    let (store, engine, v2, governor, facts) = (&store, &engine, &v2, &governor, &facts);
    let judged = || {
        healer::replay::run(
            store,
            engine,
            v2,
            &all,
            "swap-test",
            2,
            Some((governor, facts)),
        )
    };
    let notified = |minutes: i64| healer::store::ActionRecord {
        incident_id: format!("earlier-{minutes}"),
        step: 0,
        kind: healer::decision::ActionKind::Notify,
        target: "default".into(),
        group: None,
        started_at: crate::support::alarm("x").detected_at + chrono::Duration::minutes(minutes),
        ended_at: None,
        result: healer::store::Outcome::Succeeded,
        created: Vec::new(),
    };
    for m in [20, 30] {
        healer::store::Store::put_action(store, &notified(m))
            .await
            .expect("action");
    }
    let (reports, summary) = judged().await.expect("replay");
    assert_eq!(
        summary.denied.map(|d| (d.recorded, d.candidate)),
        Some((0, 0))
    );
    let v = reports[0].verdicts.as_ref().expect("judged");
    assert_eq!((v.recorded.len(), v.candidate.len()), (1, 1));
    for m in [-20, -10] {
        healer::store::Store::put_action(store, &notified(m))
            .await
            .expect("action");
    }
    let (reports, summary) = judged().await.expect("replay");
    assert_eq!(
        summary.denied.map(|d| (d.recorded, d.candidate)),
        Some((4, 4))
    );
    assert_eq!(summary.denied_more, 0, "the same limit denies both alike");
    let v = &reports[0].verdicts.as_ref().expect("judged").candidate[0];
    assert_eq!(v.verdict.rule(), Some(healer::safety::Rule::RateLimit));
    assert!(
        summary
            .failures(&[healer::replay::FailOn::DeniedMore])
            .is_empty()
    );

    // The MTTR backtest: two incidents recover a minute after v1's plan.
    let listed = healer::store::Store::list(store, &healer::store::ListFilter::default(), None, 10)
        .await
        .expect("list");
    for r in listed.items.iter().take(2) {
        healer::store::Store::transition(
            store,
            &r.incident.id,
            healer::store::LifecycleState::Healed,
            r.incident.detected_at + chrono::Duration::seconds(60),
            None,
        )
        .await
        .expect("healed");
    }
    let (_, same) = healer::replay::run(store, engine, &v1, &all, "swap-test", 2, None)
        .await
        .expect("replay");
    let m = &same.mttr;
    assert_eq!((m.healed, m.known, m.unknown), (2, 2, 0), "{m:?}");
    assert_eq!(m.known_p50_ms, Some(60_000));
    let (_, other) = judged().await.expect("replay");
    let m = &other.mttr;
    assert_eq!((m.healed, m.known, m.unknown), (2, 0, 2), "{m:?}");
    assert_eq!((m.recorded_p50_ms, m.known_p50_ms), (Some(60_000), None));

    // The shadow report with the governor: the shadow's notifications would
    // have been denied by the same full rate limit as the active's.
    let (cases, summary) =
        healer::replay::shadow_report(store, &all, "swap-test", Some((governor, facts)))
            .await
            .expect("report");
    assert_eq!(
        summary.denied.map(|d| (d.recorded, d.candidate)),
        Some((4, 4))
    );
    assert!(cases.iter().all(|c| c.verdicts.is_some()));
}

/// `--events DIR`: no store, raw AWS events; the baseline decides each
/// incident where a recorded decision would stand.
#[test]
fn raw_events_are_replayed_beside_a_baseline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("unused");
    let events = fixtures("cloudwatch");
    let events = events.to_str().expect("utf-8 path");
    let run = |policy: &str, extra: &[&str]| {
        let mut args = vec![
            "replay",
            "--no-cache",
            "--json",
            "--policy",
            policy,
            "--baseline",
            artifacts::SWAP_V1,
            "--events",
            events,
        ];
        args.extend_from_slice(extra);
        let out = healer(&data, &args);
        let json: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
        (out, json)
    };
    // The baseline against itself: every alarm the same, reproduced.
    let (out, same) = run(artifacts::SWAP_V1, &["--fail-on", "changed"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = &same["summary"];
    assert!(s["total"].as_u64().expect("total") >= 3, "{s}");
    assert_eq!(s["total"], s["same"], "{s}");
    assert_eq!(s["determinism-failures"], 0, "{s}");
    // Version 2 changes every plan; the gate fails.
    let (out, changed) = run(artifacts::SWAP_V2, &["--fail-on", "changed"]);
    assert!(!out.status.success());
    assert_eq!(changed["summary"]["changed"], s["total"], "{changed}");
    // Nothing was recorded, and nothing history-based is offered.
    assert!(!data.exists());
    let (out, _) = healer_raw(
        &data,
        &["replay", "--policy", artifacts::SWAP_V2, "--events", events],
    );
    assert!(!out.status.success());
    let (out, err) = healer_raw(
        &data,
        &[
            "replay",
            "--policy",
            artifacts::SWAP_V2,
            "--baseline",
            artifacts::SWAP_V1,
            "--events",
            events,
            "--verdicts",
        ],
    );
    assert!(!out.status.success());
    assert!(err.contains("not with --events"), "{err}");
}

fn healer_raw(data: &Path, args: &[&str]) -> (Output, String) {
    let out = healer(data, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, err)
}
