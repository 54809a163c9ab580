//! Governor verdict for a 5-step decision with its state in memory (a realistic
//! history: 200 recent actions, 20 on the group, 3 on the resource).
//!
//! Run: `cargo bench -p healer --bench governor`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group};
use healer::decision::{Action, ActionKind, Decision, Step};
use healer::incident::{Incident, IncidentKind, IncidentParts, ResourceKind, ResourceRef};
use healer::safety::{Facts, Governor, GovernorConfig, History, KillSwitch, ParamsConfig};
use healer::store::{ActionRecord, Outcome};

fn bench(c: &mut Criterion) {
    let now = Utc
        .timestamp_opt(1_714_557_600, 0)
        .single()
        .unwrap_or_default();
    let incident = Incident::new(IncidentParts {
        kind: IncidentKind::InstanceImpaired,
        source: "bench".into(),
        resource: ResourceRef::new(ResourceKind::Ec2Instance, "i-1"),
        group: Some(ResourceRef::new(ResourceKind::AutoscalingGroup, "web")),
        reason: "bench".into(),
        detail: BTreeMap::new(),
        detected_at: now,
        dedupe_key: "i-1#bench".into(),
    });
    let step = |action| Step {
        action,
        reason: "bench".into(),
    };
    let decision = Decision {
        steps: vec![
            step(Action::RunDiagnostics {
                instance_id: "i-1".into(),
                document: "AWSSupport-CollectEC2Logs".into(),
            }),
            step(Action::RebootInstance {
                instance_id: "i-1".into(),
            }),
            step(Action::ReplaceInstance {
                instance_id: "i-1".into(),
                move_elastic_ip: true,
            }),
            step(Action::Notify {
                channel: "default".into(),
                subject: "s".into(),
                message: "m".into(),
            }),
            step(Action::Escalate {
                message: "e".into(),
            }),
        ],
        verify: None,
        summary: "bench".into(),
    };
    let declared = [
        ActionKind::RunDiagnostics,
        ActionKind::RebootInstance,
        ActionKind::ReplaceInstance,
        ActionKind::Notify,
        ActionKind::Escalate,
    ];
    let mut facts = Facts::default();
    facts.entry("i-1").tags = Some(BTreeMap::from([("SelfHeal".to_owned(), "true".to_owned())]));
    facts.entry("web").group_size = Some(50);
    let action = |i: usize, target: String, group: &str| ActionRecord {
        incident_id: format!("inc-{i}"),
        step: 0,
        kind: ActionKind::RebootInstance,
        target,
        group: Some(group.into()),
        started_at: now - chrono::Duration::minutes((i % 60) as i64 + 11),
        ended_at: Some(now - chrono::Duration::minutes((i % 60) as i64 + 10)),
        result: Outcome::Succeeded,
        created: Vec::new(),
    };
    // In time order, as the store returns them.
    let mut all: Vec<ActionRecord> = (0..200)
        .map(|i| action(i, format!("i-x{i}"), "other"))
        .collect();
    all.sort_by_key(|a| a.started_at);
    let history = History {
        resource: (0..2).map(|i| action(i, "i-1".into(), "web")).collect(),
        group: (0..20)
            .map(|i| action(i, format!("i-g{}", i % 10), "web"))
            .collect(),
        all,
        kill_switch: KillSwitch::Off,
    };
    // Limits high enough that no rule short-circuits: every rule runs per step.
    let governor = Governor::new(GovernorConfig {
        rate_per_kind_per_hour: 1000,
        rate_global_per_hour: 1000,
        max_in_flight_per_group: 100,
        loop_breaker_count: 100,
        params: ParamsConfig {
            ssm_documents: vec!["AWSSupport-CollectEC2Logs".into()],
            ..ParamsConfig::default()
        },
        ..GovernorConfig::default()
    });
    c.bench_function("governor/5-step decision", |b| {
        b.iter(|| governor.judge(&incident, &decision, &declared, &facts, &history, now))
    });
    let mut samples: Vec<Duration> = (0..20_000)
        .map(|_| {
            let t = Instant::now();
            let j = governor.judge(&incident, &decision, &declared, &facts, &history, now);
            let d = t.elapsed();
            assert_eq!(j.verdicts.len(), 5);
            d
        })
        .collect();
    samples.sort();
    println!(
        "governor 5-step verdict: p50 {:?}, p99 {:?}",
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100]
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
