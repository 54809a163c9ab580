//! Hot swap under load: decisions keep flowing while versions are swapped; each
//! is answered by exactly one complete version; rollback restores the previous one.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use healer::policy::{PolicyContext, PolicyRegistry, PolicyRole};
use healer_test_artifacts as artifacts;

use crate::support::{alarm, engine, now};

#[test]
fn concurrent_decisions_during_200_swaps_are_never_lost_or_mixed() {
    let registry = PolicyRegistry::new(engine());
    let v1 = artifacts::bytes(artifacts::SWAP_V1);
    let v2 = artifacts::bytes(artifacts::SWAP_V2);
    let id1 = registry.swap(&v1, PolicyRole::Active).expect("v1 loads");
    let id2 = registry.swap(&v2, PolicyRole::Active).expect("v2 loads");
    assert_ne!(id1.sha256, id2.sha256);

    let stop = AtomicBool::new(false);
    let answered = AtomicUsize::new(0);
    let by_version = [AtomicUsize::new(0), AtomicUsize::new(0)];
    let swaps = 200;
    std::thread::scope(|s| {
        for t in 0..3 {
            let (registry, stop, answered, by_version) = (&registry, &stop, &answered, &by_version);
            let (id1, id2) = (&id1, &id2);
            s.spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Acquire) {
                    let inc = alarm(&format!("load-{t}-{i}"));
                    let decisions = registry.decide(&inc, &PolicyContext::default(), now());
                    assert_eq!(decisions.active.len(), 1, "exactly one answer per decision");
                    assert!(decisions.shadow.is_empty());
                    let out = &decisions.active[0];
                    let d = out.result.as_ref().expect("decides");
                    let v = &out.policy.version;
                    // Every part of the decision comes from the version that is credited.
                    assert_eq!(d.summary, format!("decided-by {v}"));
                    assert_eq!(&d.steps[0].reason, v);
                    match &d.steps[0].action {
                        healer::Action::Notify { subject, .. } => assert_eq!(subject, v),
                        other => panic!("unexpected {other:?}"),
                    }
                    let expected_sha = if v == "1" { &id1.sha256 } else { &id2.sha256 };
                    assert_eq!(&out.policy.sha256, expected_sha);
                    by_version[usize::from(v == "2")].fetch_add(1, Ordering::Relaxed);
                    answered.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            });
        }
        for n in 0..swaps {
            let bytes = if n % 2 == 0 { &v1 } else { &v2 };
            registry.swap(bytes, PolicyRole::Active).expect("swap");
            std::thread::sleep(std::time::Duration::from_micros(300));
        }
        stop.store(true, Ordering::Release);
    });
    let total = answered.load(Ordering::Relaxed);
    assert!(total > swaps, "only {total} decisions during {swaps} swaps");
    assert!(by_version[0].load(Ordering::Relaxed) > 0);
    assert!(by_version[1].load(Ordering::Relaxed) > 0);
    // The last swap (n = 199) activated v2.
    assert_eq!(
        registry.active("swap-test").map(|p| p.sha256),
        Some(id2.sha256.clone())
    );
}

#[test]
fn rollback_restores_the_previous_sha256() {
    let registry = PolicyRegistry::new(engine());
    let id1 = registry
        .swap(&artifacts::bytes(artifacts::SWAP_V1), PolicyRole::Active)
        .expect("v1");
    let id2 = registry
        .swap(&artifacts::bytes(artifacts::SWAP_V2), PolicyRole::Active)
        .expect("v2");
    assert_eq!(registry.active("swap-test"), Some(id2));
    let back = registry.rollback("swap-test").expect("rollback");
    assert_eq!(back, id1);
    assert_eq!(registry.active("swap-test"), Some(id1));
    let err = registry.rollback("swap-test").expect_err("nothing older");
    assert!(err.to_string().contains("no earlier version"), "{err}");
    assert!(registry.rollback("nope").is_err());
    let decided = registry.decide(&alarm("after-rollback"), &PolicyContext::default(), now());
    assert_eq!(decided.active[0].policy.version, "1");
}

#[test]
fn shadow_versions_decide_beside_the_active_one_and_never_count() {
    let registry = PolicyRegistry::new(engine());
    registry
        .swap(&artifacts::bytes(artifacts::SWAP_V1), PolicyRole::Active)
        .expect("v1");
    let shadow = registry
        .swap(&artifacts::bytes(artifacts::SWAP_V2), PolicyRole::Shadow)
        .expect("v2 shadow");
    let d = registry.decide(&alarm("shadowed"), &PolicyContext::default(), now());
    assert_eq!(d.active.len(), 1);
    assert_eq!(d.active[0].policy.version, "1");
    assert_eq!(d.shadow.len(), 1);
    assert_eq!(d.shadow[0].policy, shadow);
    let listed = registry.list();
    let roles: Vec<_> = listed[0].versions.iter().map(|v| v.role).collect();
    assert_eq!(roles, [Some(PolicyRole::Active), Some(PolicyRole::Shadow)]);

    registry.clear_shadow("swap-test");
    let d = registry.decide(&alarm("unshadowed"), &PolicyContext::default(), now());
    assert!(d.shadow.is_empty());
}

#[test]
fn routing_sends_an_incident_only_to_policies_that_handle_its_kind() {
    let registry = PolicyRegistry::new(engine());
    for path in [
        artifacts::ECS_TASK_RESTART,
        artifacts::EC2_REPLACE,
        artifacts::LAMBDA_FAILURE_RATE,
    ] {
        registry
            .swap(&artifacts::bytes(path), PolicyRole::Active)
            .expect("loads");
    }
    let d = registry.decide(&alarm("unrouted"), &PolicyContext::default(), now());
    assert!(
        d.active.is_empty(),
        "no example policy handles plain alarms"
    );
    let inc = crate::support::incident(
        r#"{"kind":"function-errors","resource":{"kind":"lambda-function","id":"f"},"detected-at":"2024-05-01T10:00:00Z"}"#,
    );
    let d = registry.decide(&inc, &PolicyContext::default(), now());
    assert_eq!(d.active.len(), 1);
    assert_eq!(d.active[0].policy.name, "lambda-failure-rate");
}

#[test]
fn load_dir_reports_bad_files_and_keeps_good_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(artifacts::EC2_REPLACE, dir.path().join("ec2.wasm")).expect("copy");
    std::fs::write(dir.path().join("broken.wasm"), b"nope").expect("write");
    std::fs::write(dir.path().join("README.txt"), b"ignored").expect("write");
    let registry = PolicyRegistry::new(engine());
    let report = registry.load_dir(dir.path()).expect("reads dir");
    let (loaded, failed) = (report.loaded, report.failed);
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].name, "ec2-replace");
    assert_eq!(failed.len(), 1);
    assert!(failed[0].0.ends_with("broken.wasm"));
}

/// Issue 11: several active policies handle one kind. They decide in the
/// configured priority order (unlisted ones by name after it), and the first
/// that proposes steps acts; every outcome is kept, none dropped.
#[test]
fn routing_follows_the_configured_priority_and_the_first_plan_acts() {
    let registry = PolicyRegistry::new(engine());
    registry
        .swap(&artifacts::bytes(artifacts::HOSTILE), PolicyRole::Active)
        .expect("hostile");
    registry
        .swap(&artifacts::bytes(artifacts::SWAP_V1), PolicyRole::Active)
        .expect("swap");
    let names = |d: &healer::policy::Decisions| {
        d.active
            .iter()
            .map(|o| o.policy.name.clone())
            .collect::<Vec<_>>()
    };
    // By name: hostile decides first but proposes nothing; swap-test acts.
    let d = registry.decide(&alarm("calm"), &PolicyContext::default(), now());
    assert_eq!(names(&d), ["hostile", "swap-test"]);
    assert_eq!(
        d.acting().map(|o| o.policy.name.as_str()),
        Some("swap-test")
    );
    // A policy error does not hide the next policy's plan either.
    let d = registry.decide(&alarm("err"), &PolicyContext::default(), now());
    assert!(d.active[0].result.is_err());
    assert_eq!(
        d.acting().map(|o| o.policy.name.as_str()),
        Some("swap-test")
    );
    // Configured order.
    registry.set_priority(vec!["swap-test".into(), "hostile".into()]);
    let d = registry.decide(&alarm("calm"), &PolicyContext::default(), now());
    assert_eq!(names(&d), ["swap-test", "hostile"]);
    assert_eq!(
        d.acting().map(|o| o.policy.name.as_str()),
        Some("swap-test")
    );
}
