//! Per-policy limits on real components: the toolchain read from the
//! component, a `healer:limits` section it declares, the operator's limits
//! by name, the ceiling, and refusals that name the limit.

use healer::policy::{
    LimitName, LimitOverride, LimitSource, LimitsConfig, PolicyContext, PolicyEngine, PolicyError,
    PolicyLimits, Toolchain,
};
use healer_test_artifacts as artifacts;

use crate::support::{incident, now};

const FUNCTION_ERRORS: &str = r#"{"kind":"function-errors","source":"cloudwatch-alarm",
  "resource":{"kind":"lambda-function","id":"fragile-fn","region":"us-east-1"},
  "reason":"Threshold Crossed","detected-at":"2024-05-01T10:00:00Z"}"#;

/// `bytes` with a top-level custom section appended (valid in a component
/// as in a module): how the kits' build commands write `healer:limits`.
pub fn with_custom_section(mut bytes: Vec<u8>, name: &str, payload: &[u8]) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    bytes.push(0);
    leb(body.len(), &mut bytes);
    bytes.extend_from_slice(&body);
    bytes
}

fn declaring(json: &str) -> Vec<u8> {
    with_custom_section(
        artifacts::bytes(artifacts::LAMBDA_FAILURE_RATE),
        "healer:limits",
        json.as_bytes(),
    )
}

fn engine_with(config: LimitsConfig) -> std::sync::Arc<PolicyEngine> {
    PolicyEngine::with_config(PolicyLimits::default(), &config, None).expect("engine")
}

#[test]
fn a_rust_component_is_rust_and_runs_under_the_defaults() {
    let engine = engine_with(LimitsConfig::default());
    let p = engine
        .load(&artifacts::bytes(artifacts::LAMBDA_FAILURE_RATE))
        .expect("loads");
    assert_eq!(p.profile.toolchain, Toolchain::Rust);
    assert!(p.profile.core_instances > 0 && p.profile.core_instances <= 16);
    let r = engine.limits_of(&p).expect("resolves");
    assert_eq!(r.limits, PolicyLimits::default());
    assert!(r.sources.iter().all(|(_, s)| *s == LimitSource::Default));
}

#[test]
fn declared_limits_apply_and_one_above_the_ceiling_is_refused_by_name() {
    let engine = engine_with(LimitsConfig::default());
    let p = engine
        .load(&declaring(r#"{"max-output-bytes": 10}"#))
        .expect("a declaration within the ceiling loads");
    assert_eq!(p.profile.declared.max_output_bytes, Some(10));
    let out = engine.decide(
        &p,
        &incident(FUNCTION_ERRORS),
        &PolicyContext::default(),
        now(),
    );
    assert!(
        matches!(out.result, Err(PolicyError::InvalidDecision(ref m)) if m.contains("limit of 10 bytes")),
        "{:?}",
        out.result
    );

    let e = engine
        .load(&declaring(r#"{"memory-bytes": 4294967296}"#))
        .expect_err("4 GiB is above the ceiling");
    assert!(
        matches!(
            e,
            PolicyError::LimitRefused {
                limit: LimitName::MemoryBytes,
                needs: 4294967296,
                ..
            }
        ),
        "{e}"
    );
    let text = e.to_string();
    assert!(
        text.contains("memory-bytes") && text.contains("declared"),
        "{text}"
    );

    let e = engine
        .load(&declaring(r#"{"memory": 1}"#))
        .expect_err("an unknown key");
    assert!(
        matches!(e, PolicyError::InvalidComponent(ref m) if m.contains("healer:limits")),
        "{e}"
    );
}

#[test]
fn the_operator_wins_over_the_declaration_and_can_refuse_a_component() {
    let mut config = LimitsConfig::default();
    config.policies.insert(
        "lambda-failure-rate".into(),
        LimitOverride {
            max_output_bytes: Some(20),
            ..LimitOverride::default()
        },
    );
    let engine = engine_with(config);
    let p = engine
        .load(&declaring(r#"{"max-output-bytes": 10}"#))
        .expect("loads");
    let r = engine.limits_of(&p).expect("resolves");
    assert_eq!(r.limits.max_output_bytes, 20);
    assert!(
        r.sources
            .contains(&(LimitName::MaxOutputBytes, LimitSource::Operator))
    );
    let out = engine.decide(
        &p,
        &incident(FUNCTION_ERRORS),
        &PolicyContext::default(),
        now(),
    );
    assert!(
        matches!(out.result, Err(PolicyError::InvalidDecision(ref m)) if m.contains("limit of 20 bytes")),
        "{:?}",
        out.result
    );

    // One core instance is fewer than any component has: refused at load.
    let mut config = LimitsConfig::default();
    config.policies.insert(
        "lambda-failure-rate".into(),
        LimitOverride {
            core_instances: Some(1),
            ..LimitOverride::default()
        },
    );
    let e = engine_with(config)
        .load(&artifacts::bytes(artifacts::LAMBDA_FAILURE_RATE))
        .expect_err("refused");
    assert!(
        matches!(
            e,
            PolicyError::LimitRefused {
                limit: LimitName::CoreInstances,
                allowed: 1,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("core-instances"), "{e}");
}

#[test]
fn an_operator_limit_above_the_ceiling_is_a_configuration_error() {
    let mut config = LimitsConfig::default();
    config.ceiling.memory_bytes = Some(32 << 20);
    config.policies.insert(
        "big".into(),
        LimitOverride {
            memory_bytes: Some(64 << 20),
            ..LimitOverride::default()
        },
    );
    let e = PolicyEngine::with_config(PolicyLimits::default(), &config, None)
        .expect_err("above the ceiling");
    assert!(e.to_string().contains("memory-bytes"), "{e}");
    let engine = engine_with(LimitsConfig::default());
    assert!(
        engine
            .check_operator_limits(&LimitOverride {
                deadline_ms: Some(60_000),
                ..LimitOverride::default()
            })
            .is_err()
    );
}
