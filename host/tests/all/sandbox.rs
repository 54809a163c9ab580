//! Hostile guests built from source: each misbehaviour is stopped by its limit
//! with the right error, and the engine keeps serving the next decision.

use healer::policy::{PolicyContext, PolicyEngine, PolicyError, PolicyLimits, SandboxLimit};
use healer_test_artifacts as artifacts;

use crate::support::{alarm, engine, load, now};

fn run(engine: &PolicyEngine, reason: &str) -> healer::policy::DecisionOutcome {
    let policy = load(engine, artifacts::HOSTILE);
    engine.decide(&policy, &alarm(reason), &PolicyContext::default(), now())
}

fn summary(engine: &PolicyEngine, reason: &str) -> String {
    match run(engine, reason).result {
        Ok(d) => d.summary,
        Err(e) => panic!("{reason}: unexpected error {e}"),
    }
}

/// After any failure the same engine still decides correctly.
fn still_serving(engine: &PolicyEngine) {
    let policy = load(engine, artifacts::ECS_TASK_RESTART);
    let inc = crate::support::incident(
        r#"{"kind":"task-crashed","resource":{"kind":"ecs-task","id":"arn:aws:ecs:r:1:task/c/t"},
            "group":{"kind":"ecs-service","id":"arn:aws:ecs:r:1:service/c/s"},"detected-at":"2024-05-01T10:00:00Z"}"#,
    );
    let out = engine.decide(&policy, &inc, &PolicyContext::default(), now());
    assert!(
        out.result.is_ok(),
        "engine stopped serving: {:?}",
        out.result
    );
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let engine = engine();
    let out = run(&engine, "loop");
    assert_eq!(
        out.result,
        Err(PolicyError::OutOfFuel(PolicyLimits::default().fuel))
    );
    assert_eq!(out.fuel_used, PolicyLimits::default().fuel);
    still_serving(&engine);
}

#[test]
fn infinite_loop_hits_the_deadline_when_fuel_is_ample() {
    let limits = PolicyLimits {
        fuel: u64::MAX / 4,
        deadline_ms: 50,
        ..PolicyLimits::default()
    };
    let engine = PolicyEngine::new(limits, None).expect("engine");
    let out = run(&engine, "loop");
    assert_eq!(out.result, Err(PolicyError::Timeout(50)));
    assert!(
        out.duration.as_millis() < 2_000,
        "stopped late: {:?}",
        out.duration
    );
    assert!(
        out.result
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("deadline of 50 ms")
    );
    still_serving(&engine);
}

#[test]
fn unbounded_allocation_hits_the_memory_cap() {
    let engine = engine();
    let out = run(&engine, "alloc");
    match out.result {
        Err(PolicyError::MemoryLimit { limit, requested }) => {
            assert_eq!(limit, 16 << 20);
            assert!(requested > limit);
        }
        other => panic!("expected memory limit, got {other:?}"),
    }
    still_serving(&engine);
}

#[test]
fn panic_is_a_trap_with_the_panic_message() {
    let engine = engine();
    let out = run(&engine, "panic");
    match &out.result {
        Err(PolicyError::Trap(msg)) => {
            assert!(msg.contains("hostile policy panicked on purpose"), "{msg}")
        }
        other => panic!("expected trap, got {other:?}"),
    }
    still_serving(&engine);
}

#[test]
fn abort_and_stack_overflow_are_traps() {
    let engine = engine();
    for reason in ["unreachable", "stack"] {
        let out = run(&engine, reason);
        assert!(
            matches!(out.result, Err(PolicyError::Trap(_))),
            "{reason}: {:?}",
            out.result
        );
    }
    // Depending on where it runs out first, unbounded recursion exhausts the
    // engine's call stack or the guest's 64 KiB shadow stack (an out-of-bounds
    // store below address 0): both are traps that name the cause.
    let stack = run(&engine, "stack").result.unwrap_err().to_string();
    assert!(
        stack.contains("stack") || stack.contains("out of bounds memory"),
        "{stack}"
    );
    still_serving(&engine);
}

#[test]
fn gigantic_decisions_are_rejected() {
    // Megabytes of output never reach the host: lifting stops at the hostcall
    // budget (twice the output cap), before anything is copied.
    let engine = engine();
    for reason in ["huge", "huge-summary"] {
        let out = run(&engine, reason);
        assert!(
            matches!(
                &out.result,
                Err(PolicyError::SandboxLimit {
                    limit: SandboxLimit::HostcallData,
                    ..
                })
            ),
            "{reason}: {:?}",
            out.result.as_ref().map(|d| d.summary.len())
        );
    }
    still_serving(&engine);
}

#[test]
fn policy_err_is_recorded_as_rejected() {
    let engine = engine();
    let out = run(&engine, "err");
    assert_eq!(
        out.result,
        Err(PolicyError::Rejected(
            "hostile policy refuses to decide".into()
        ))
    );
}

#[test]
fn log_flood_is_capped() {
    let engine = engine();
    let out = run(&engine, "log-flood");
    assert!(out.result.is_ok(), "{:?}", out.result);
    let limits = PolicyLimits::default();
    assert_eq!(out.logs.len(), limits.max_log_lines);
    assert_eq!(out.logs_dropped as usize, 10_000 - limits.max_log_lines);
    assert!(
        out.logs
            .iter()
            .all(|l| l.message.len() <= limits.max_log_line_bytes + 3)
    );
    assert!(
        out.logs[0].message.ends_with('…'),
        "the 64 KiB line is truncated"
    );
}

#[test]
fn wasi_gives_no_files_env_network_or_real_clock() {
    let engine = engine();
    assert!(
        summary(&engine, "file").starts_with("file denied"),
        "{}",
        summary(&engine, "file")
    );
    assert!(summary(&engine, "dir").starts_with("dir denied"));
    assert_eq!(summary(&engine, "env"), "env vars: 0, args: 0");
    assert!(
        summary(&engine, "net").starts_with("net denied"),
        "{}",
        summary(&engine, "net")
    );
    assert_eq!(summary(&engine, "stdout"), "printed");
    let now_ms = now().timestamp_millis();
    assert_eq!(
        summary(&engine, "clock"),
        format!("wall {now_ms} host-now {now_ms} elapsed 0 spin 49995000"),
        "clocks are frozen at the virtual now"
    );
}

#[test]
fn randomness_is_seeded_so_decisions_replay() {
    let engine = engine();
    let a = summary(&engine, "random");
    let b = summary(&engine, "random");
    assert_eq!(a, b);
}

#[test]
fn components_of_another_world_are_refused() {
    let engine = engine();
    let err = engine
        .load(&artifacts::bytes(artifacts::OTHER_WORLD))
        .expect_err("other world");
    assert!(matches!(err, PolicyError::WrongWorld(_)), "{err}");
    assert!(err.to_string().contains("healing-policy"), "{err}");
}

#[test]
fn policies_of_world_0_1_keep_loading_beside_0_2() {
    use healer::decision::{Action, ActionKind};
    use healer::policy::PastAction;
    let engine = engine();
    let old = load(&engine, artifacts::WORLD_0_1);
    assert_eq!(old.world(), "0.1.0");
    assert_eq!(load(&engine, artifacts::EC2_REPLACE).world(), "0.2.0");
    let inc = crate::support::incident(
        r#"{"kind":"instance-impaired","resource":{"kind":"ec2-instance","id":"i-0old"},
            "detected-at":"2024-05-01T10:00:00Z"}"#,
    );
    // A 0.1.0 world cannot name recover-instance: it is left out of the
    // context the old policy sees, the others are kept.
    let past = |kind| PastAction {
        kind,
        target: "i-0old".into(),
        at: now(),
        outcome: "succeeded".into(),
    };
    let ctx = PolicyContext {
        last_actions: vec![
            past(ActionKind::RecoverInstance),
            past(ActionKind::RebootInstance),
        ],
        resource_config: healer::policy::ResourceConfig {
            allowed_actions: Some(vec![
                ActionKind::RecoverInstance,
                ActionKind::RebootInstance,
            ]),
            ..Default::default()
        },
        ..PolicyContext::default()
    };
    let d = engine
        .decide(&old, &inc, &ctx, now())
        .result
        .expect("decides");
    assert_eq!(d.summary, "seen: [ActionKind::RebootInstance]");
    assert_eq!(
        d.steps[0].action,
        Action::RebootInstance {
            instance_id: "i-0old".into()
        }
    );
}

#[test]
fn non_components_are_refused_with_a_hint() {
    let engine = engine();
    let core = engine.load(b"\0asm\x01\0\0\0").expect_err("core module");
    assert!(core.to_string().contains("core Wasm module"), "{core}");
    let garbage = engine.load(b"{\"not\": \"wasm\"}").expect_err("garbage");
    assert!(
        garbage.to_string().contains("not a WebAssembly binary"),
        "{garbage}"
    );
    let full = artifacts::bytes(artifacts::ECS_TASK_RESTART);
    let truncated = engine.load(&full[..full.len() / 2]).expect_err("truncated");
    assert!(
        matches!(truncated, PolicyError::InvalidComponent(_)),
        "{truncated}"
    );
    still_serving(&engine);
}

#[test]
fn hostile_decisions_in_parallel_do_not_disturb_good_ones() {
    let engine = engine();
    std::thread::scope(|s| {
        for reason in ["loop", "alloc", "panic", "stack", "huge"] {
            let engine = &engine;
            s.spawn(move || assert!(run(engine, reason).result.is_err()));
        }
        for _ in 0..4 {
            let engine = &engine;
            s.spawn(move || still_serving(engine));
        }
    });
}

// Issue 11, sandbox holes: every hostile guest ends in its named limit, at once
// (nothing waits in real time), and the engine keeps serving.

fn expect_sandbox_limit(out: &healer::policy::DecisionOutcome, want: SandboxLimit) {
    match &out.result {
        Err(PolicyError::SandboxLimit { limit, detail }) => {
            assert_eq!(*limit, want, "{detail}");
            assert!(
                out.result
                    .as_ref()
                    .unwrap_err()
                    .to_string()
                    .contains(want.name()),
                "the error names the limit"
            );
        }
        other => panic!("expected the {want} limit, got {other:?}"),
    }
}

#[test]
fn sleep_past_the_deadline_is_a_timeout_without_waiting() {
    let engine = engine();
    let out = run(&engine, "sleep");
    assert_eq!(out.result, Err(PolicyError::Timeout(100)));
    assert!(out.duration.as_secs() < 5, "waited {:?}", out.duration);
    still_serving(&engine);
}

#[test]
fn poll_past_the_deadline_is_a_timeout_without_waiting() {
    let engine = engine();
    let out = run(&engine, "poll");
    assert_eq!(out.result, Err(PolicyError::Timeout(100)));
    assert!(out.duration.as_secs() < 5, "waited {:?}", out.duration);
    still_serving(&engine);
}

#[test]
fn a_short_sleep_moves_only_the_virtual_clock() {
    let engine = engine();
    assert_eq!(summary(&engine, "nap"), "napped 5 ms");
}

#[test]
fn handle_flood_hits_the_handle_cap() {
    let engine = engine();
    expect_sandbox_limit(&run(&engine, "handles"), SandboxLimit::Handles);
    still_serving(&engine);
}

#[test]
fn stderr_flood_hits_the_stdio_cap() {
    let engine = engine();
    expect_sandbox_limit(&run(&engine, "stderr-flood"), SandboxLimit::Stdio);
    still_serving(&engine);
}

#[test]
fn aliased_strings_result_hits_the_hostcall_budget() {
    let engine = engine();
    expect_sandbox_limit(&run(&engine, "alias"), SandboxLimit::HostcallData);
    still_serving(&engine);
}

#[test]
fn metadata_bomb_is_refused_at_load() {
    let engine = engine();
    let err = engine
        .load(&artifacts::bytes(artifacts::METADATA_BOMB))
        .expect_err("metadata bomb");
    assert!(matches!(err, PolicyError::InvalidMetadata(_)), "{err}");
    still_serving(&engine);
}

/// componentize-py's `_socket.getaddrinfo` passes the inert network handle to
/// the denied `resolve-addresses`: the stub releases it and denies, instead
/// of trapping with "borrow handles still remain".
#[test]
fn denied_socket_calls_answer_access_denied() {
    let engine = engine();
    let text = summary(&engine, "resolve");
    assert_eq!(text.matches("\"access-denied\"").count(), 2, "{text}");
    still_serving(&engine);
}

#[test]
fn exit_is_a_trap_that_names_it() {
    let engine = engine();
    let out = run(&engine, "exit");
    assert_eq!(
        out.result,
        Err(PolicyError::Trap("policy called exit(1)".into()))
    );
    still_serving(&engine);
}

#[test]
fn memory_cap_holds_for_the_sum_of_memories() {
    // One decision's memories together stay under the cap: a guest that
    // allocates right up to it is stopped at the cap, not at cap × memories.
    let limits = PolicyLimits {
        memory_bytes: 4 << 20,
        ..PolicyLimits::default()
    };
    let engine = PolicyEngine::new(limits, None).expect("engine");
    match run(&engine, "alloc").result {
        Err(PolicyError::MemoryLimit { limit, requested }) => {
            assert_eq!(limit, 4 << 20);
            assert!(requested > limit);
        }
        other => panic!("expected memory limit, got {other:?}"),
    }
}

/// The hostile set inside a multi-threaded tokio runtime, as `healer run`,
/// `decide` and `plan` run them: no guest panics, blocks or slows the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_inside_tokio_never_panic_or_block_the_host() {
    let engine = engine();
    let started = std::time::Instant::now();
    for reason in [
        "panic",
        "sleep",
        "poll",
        "handles",
        "stderr-flood",
        "alias",
        "exit",
        "stdout",
    ] {
        let out = run(&engine, reason);
        if reason != "stdout" {
            assert!(out.result.is_err(), "{reason}: {:?}", out.result);
        }
    }
    assert!(
        started.elapsed().as_secs() < 20,
        "the hostile set held the runtime for {:?}",
        started.elapsed()
    );
    still_serving(&engine);
}

/// The hostile set through `Pipeline::on_incident` inside a multi-threaded
/// runtime: each incident is recorded as escalated with the named error, and
/// the pipeline decides the next incident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_through_the_pipeline_are_recorded_and_the_host_keeps_serving() {
    use healer::pipeline::{Pipeline, Recorded};
    use healer::policy::{PolicyRegistry, PolicyRole};
    use healer::safety::{Governor, GovernorConfig, StaticFacts};
    use healer::store::{LifecycleState, SqliteStore};

    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("healer.db"))
        .await
        .expect("open");
    let registry = PolicyRegistry::new(engine());
    registry
        .swap(&artifacts::bytes(artifacts::HOSTILE), PolicyRole::Active)
        .expect("hostile loads");
    let governor = Governor::new(GovernorConfig::default());
    let facts = StaticFacts::default();
    let pipeline = Pipeline {
        store: &store,
        registry: &registry,
        governor: &governor,
        facts: &facts,
    };
    for (reason, error) in [
        ("panic", "trap"),
        ("sleep", "deadline"),
        ("poll", "deadline"),
        ("handles", "max-handles"),
        ("stderr-flood", "max-stdio-bytes"),
        ("alias", "max-output-bytes"),
        ("loop", "out of fuel"),
    ] {
        let (_, recorded) = pipeline
            .on_incident(&alarm(reason), &PolicyContext::default(), now())
            .await
            .expect("recorded");
        let Recorded::New(record) = recorded else {
            panic!("{reason}: not a new incident");
        };
        assert_eq!(record.state, LifecycleState::Escalated, "{reason}");
        let note = record.note.clone().unwrap_or_default();
        assert!(note.contains(error), "{reason}: {note}");
    }
    let (_, recorded) = pipeline
        .on_incident(&alarm("calm"), &PolicyContext::default(), now())
        .await
        .expect("recorded");
    assert!(
        matches!(&recorded, Recorded::New(r) if r.state != LifecycleState::Escalated),
        "{recorded:?}"
    );
}

/// The hostile set through `healer run`: alarm notifications whose reasons
/// select each misbehaviour arrive on SQS; every one is recorded (escalated
/// with its error), and the service stays up and healthy to take the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_through_healer_run_leave_the_service_serving() {
    use std::process::Command;
    use std::time::{Duration, Instant};

    let Some(moto) = crate::moto::start("hostile_guests_through_healer_run") else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let sqs = aws_sdk_sqs::Client::new(&shared);
    let queue = crate::support::queue(&sqs, "healer-hostile").await;
    let template: serde_json::Value =
        serde_json::from_str(
            &std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
                "../tests/fixtures/aws-events/cloudwatch/sns-message-body-rds-cpu-alarm.json",
            ))
            .expect("fixture"),
        )
        .expect("JSON");
    let reasons = [
        "panic",
        "sleep",
        "poll",
        "handles",
        "stderr-flood",
        "alias",
        "calm",
    ];
    for reason in reasons {
        let mut alarm = template.clone();
        alarm["AlarmName"] = format!("hostile-{reason}").into();
        alarm["AlarmArn"] =
            format!("arn:aws:cloudwatch:us-east-1:123456789012:alarm:hostile-{reason}").into();
        alarm["NewStateReason"] = reason.into();
        sqs.send_message()
            .queue_url(&queue)
            .message_body(alarm.to_string())
            .send()
            .await
            .expect("send_message");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("mkdir");
    std::fs::copy(artifacts::HOSTILE, policies.join("hostile.wasm")).expect("copy");
    let data = dir.path().join("data");
    let listen = format!("127.0.0.1:{}", crate::support::free_port());
    let mut child = crate::support::spawn_run(&policies, &queue, &listen, &data, &moto.endpoint);
    let health = || crate::support::health(&listen);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = health()
            && v["processed"] == reasons.len()
        {
            assert_eq!(v["status"], "ok", "{v}");
            break;
        }
        if Instant::now() > deadline || child.try_wait().expect("wait").is_some() {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "healer run did not get through the hostile set: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = Command::new(env!("CARGO_BIN_EXE_healer"))
        .args(["incidents", "list", "--json"])
        .env("HEALER_DATA_DIR", &data)
        .output()
        .expect("runs");
    let states: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            format!(
                "{}={}",
                v["incident"]["reason"].as_str().unwrap_or(""),
                v["state"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(states.len(), reasons.len(), "{states:?}");
    for reason in &reasons[..reasons.len() - 1] {
        assert!(
            states.contains(&format!("{reason}=escalated")),
            "{reason}: {states:?}"
        );
    }
}
