//! Hostile guests built from source: each misbehaviour is stopped by its limit
//! with the right error, and the engine keeps serving the next decision.

use healer::policy::{PolicyContext, PolicyEngine, PolicyError, PolicyLimits};
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
    let engine = engine();
    let steps = run(&engine, "huge");
    assert!(
        matches!(&steps.result, Err(PolicyError::InvalidDecision(m)) if m.contains("2000 steps")),
        "{:?}",
        steps.result
    );
    let bytes = run(&engine, "huge-summary");
    assert!(
        matches!(&bytes.result, Err(PolicyError::InvalidDecision(m)) if m.contains("output limit")),
        "{:?}",
        bytes.result.as_ref().map(|d| d.summary.len())
    );
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
