//! The safety governor: the seed scenarios, and property tests over random
//! sequences on a simulated clock that no limit is ever exceeded.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use healer::decision::{Action, ActionKind, Decision, Step};
use healer::incident::{Incident, IncidentKind, IncidentParts, ResourceKind, ResourceRef};
use healer::pipeline::{Pipeline, Recorded};
use healer::policy::{PolicyContext, PolicyRegistry, PolicyRole};
use healer::safety::{
    Facts, Governor, GovernorConfig, History, KillSwitch, ResourceFacts, Rule, StaticFacts, Verdict,
};
use healer::store::{ActionRecord, LifecycleState, Outcome, SqliteStore};
use healer_test_artifacts as artifacts;
use proptest::prelude::*;

fn t0() -> DateTime<Utc> {
    Utc.timestamp_opt(1_714_557_600, 0).single().expect("valid")
}

fn incident(
    kind: IncidentKind,
    rkind: ResourceKind,
    id: &str,
    group: Option<ResourceRef>,
    at: DateTime<Utc>,
) -> Incident {
    Incident::new(IncidentParts {
        kind,
        source: "test".into(),
        resource: ResourceRef::new(rkind, id),
        group,
        reason: "test".into(),
        detail: BTreeMap::new(),
        detected_at: at,
        dedupe_key: format!("{id}#{}", at.timestamp_millis()),
    })
}

fn decision(action: Action) -> Decision {
    Decision {
        steps: vec![Step {
            action,
            reason: "seed".into(),
        }],
        verify: None,
        summary: "seed".into(),
    }
}

fn tags(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

/// Facts of one resource, by id.
fn facts_of(entries: &[(&str, ResourceFacts)]) -> Facts {
    Facts(
        entries
            .iter()
            .map(|(id, f)| ((*id).to_owned(), f.clone()))
            .collect(),
    )
}

#[test]
fn an_instance_without_selfheal_true_is_not_replaced() {
    let governor = Governor::new(GovernorConfig::default());
    let inc = incident(
        IncidentKind::InstanceImpaired,
        ResourceKind::Ec2Instance,
        "i-0abc",
        None,
        t0(),
    );
    let replace = decision(Action::ReplaceInstance {
        instance_id: "i-0abc".into(),
        move_elastic_ip: true,
    });
    let declared = [ActionKind::ReplaceInstance];
    let own = |t| {
        facts_of(&[(
            "i-0abc",
            ResourceFacts {
                tags: t,
                ..ResourceFacts::default()
            },
        )])
    };
    for facts in [
        Facts::default(),
        own(tags(&[])),
        own(tags(&[("SelfHeal", "false")])),
    ] {
        let j = governor.judge(&inc, &replace, &declared, &facts, &History::default(), t0());
        assert!(
            matches!(
                &j.verdicts[0].verdict,
                Verdict::Denied {
                    rule: Rule::OptIn,
                    ..
                }
            ),
            "{facts:?}: {j:?}"
        );
    }
    let opted_in = own(tags(&[("SelfHeal", "true")]));
    let j = governor.judge(
        &inc,
        &replace,
        &declared,
        &opted_in,
        &History::default(),
        t0(),
    );
    assert!(j.verdicts[0].verdict.is_approved());
}

#[test]
fn a_flapping_target_is_not_replaced_six_times() {
    let governor = Governor::new(GovernorConfig::default());
    let group = ResourceRef::new(
        ResourceKind::TargetGroup,
        "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/web/1",
    );
    let facts = facts_of(&[
        (
            "i-flap",
            ResourceFacts {
                tags: tags(&[("SelfHeal", "true")]),
                ..ResourceFacts::default()
            },
        ),
        (
            &group.id,
            ResourceFacts {
                group_size: Some(3),
                ..ResourceFacts::default()
            },
        ),
    ]);
    let declared = [ActionKind::ReplaceInstance];
    let mut history = History::default();
    let mut approved = 0;
    // Unhealthy/healthy six times in ten minutes.
    for (n, minute) in [0.0, 1.8, 3.6, 5.4, 7.2, 9.0].into_iter().enumerate() {
        let now = t0() + Duration::milliseconds((minute * 60_000.0) as i64);
        let inc = incident(
            IncidentKind::TargetUnhealthy,
            ResourceKind::Target,
            "i-flap",
            Some(group.clone()),
            now,
        );
        let d = decision(Action::ReplaceInstance {
            instance_id: "i-flap".into(),
            move_elastic_ip: true,
        });
        let j = governor.judge(&inc, &d, &declared, &facts, &history, now);
        if j.verdicts[0].verdict.is_approved() {
            approved += 1;
            let a = ActionRecord {
                incident_id: format!("inc-{n}"),
                step: 0,
                kind: ActionKind::ReplaceInstance,
                target: "i-flap".into(),
                group: Some(group.id.clone()),
                started_at: now,
                ended_at: Some(now + Duration::seconds(90)),
                result: Outcome::Succeeded,
                created: Vec::new(),
            };
            history.resource.push(a.clone());
            history.group.push(a.clone());
            history.all.push(a);
        }
    }
    assert_eq!(approved, 1, "replaced once, not six times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_of_six_tasks_failing_at_once_is_a_storm_with_one_notification() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("healer.db"))
        .await
        .expect("open");
    let registry = PolicyRegistry::new(crate::support::engine());
    registry
        .swap(
            &artifacts::bytes(artifacts::ECS_TASK_RESTART),
            PolicyRole::Active,
        )
        .expect("policy");
    let governor = Governor::new(GovernorConfig::default());
    let service = ResourceRef::new(
        ResourceKind::EcsService,
        "arn:aws:ecs:us-east-1:1:service/prod/api",
    );
    let tasks: Vec<String> = (1..=5)
        .map(|n| format!("arn:aws:ecs:us-east-1:1:task/prod/{n:032}"))
        .collect();
    // The service's size is the service's fact (its tasks have none of their own).
    let facts = StaticFacts(BTreeMap::from([(
        service.id.clone(),
        ResourceFacts {
            group_size: Some(6),
            ..ResourceFacts::default()
        },
    )]));
    let pipeline = Pipeline {
        store: &store,
        registry: &registry,
        governor: &governor,
        facts: &facts,
    };
    let mut restarts = 0;
    let mut notices = 0;
    let mut denied = 0;
    let mut stop_task = PolicyContext::default();
    stop_task
        .config
        .insert("restart-mode".into(), "stop-task".into());
    for task in &tasks {
        let inc = incident(
            IncidentKind::TaskCrashed,
            ResourceKind::EcsTask,
            task,
            Some(service.clone()),
            t0(),
        );
        let (plan, recorded) = pipeline
            .on_incident(&inc, &stop_task, t0() + Duration::seconds(1))
            .await
            .expect("recorded");
        let plan = plan.expect("decided");
        let j = plan.judgement.as_ref().expect("judged");
        restarts += j
            .verdicts
            .iter()
            .filter(|v| v.verdict.is_approved() && v.action == ActionKind::RestartTask)
            .count();
        notices += usize::from(plan.storm_notice);
        if let Recorded::New(r) = recorded
            && r.state == LifecycleState::Denied
        {
            denied += 1;
            assert!(
                r.note.as_deref().is_some_and(|n| n.contains("storm mode")),
                "{:?}",
                r.note
            );
        }
    }
    assert_eq!(restarts, 2, "2 of 6 is within 34%; no mass restart");
    assert_eq!(denied, 3);
    assert_eq!(notices, 1, "one storm notification for the group");
}

/// One step of a random scenario.
#[derive(Debug, Clone)]
struct Event {
    advance_secs: i64,
    target: usize,
    reboot: bool,
    duration_secs: i64,
}

fn event() -> impl Strategy<Value = Event> {
    (0i64..600, 0usize..8, any::<bool>(), 0i64..1800).prop_map(
        |(advance_secs, target, reboot, duration_secs)| Event {
            advance_secs,
            target,
            reboot,
            duration_secs,
        },
    )
}

fn cases() -> u32 {
    std::env::var("HEALER_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(128)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_sequence_breaks_a_limit(
        events in proptest::collection::vec(event(), 1..80),
        tagged in proptest::collection::vec(any::<bool>(), 8),
        max_in_flight in 1u32..4,
        cooldown in 1u32..20,
    ) {
        let config = GovernorConfig {
            max_in_flight,
            max_in_flight_per_group: max_in_flight,
            cooldown_minutes: cooldown,
            rate_per_kind_per_hour: 1_000,
            rate_global_per_hour: 1_000,
            ..GovernorConfig::default()
        };
        let governor = Governor::new(config.clone());
        let group_size = 8u32;
        let group = ResourceRef::new(ResourceKind::AutoscalingGroup, "web");
        let declared = [ActionKind::ReplaceInstance, ActionKind::RebootInstance];
        let mut log: Vec<(ActionRecord, DateTime<Utc>)> = Vec::new(); // (action, real end)
        let mut now = t0();
        for (n, e) in events.iter().enumerate() {
            now += Duration::seconds(e.advance_secs);
            let id = format!("i-{}", e.target);
            // What the store would show at `now`: an action's end only once it happened.
            let visible: Vec<ActionRecord> = log
                .iter()
                .map(|(a, end)| ActionRecord { ended_at: (*end <= now).then_some(*end), ..a.clone() })
                .collect();
            let history = History {
                resource: visible.iter().filter(|a| a.target == id).cloned().collect(),
                group: visible.clone(),
                all: visible.clone(),
                kill_switch: KillSwitch::Off,
            };
            let facts = facts_of(&[
                (
                    id.as_str(),
                    ResourceFacts {
                        tags: tags(&[("SelfHeal", if tagged[e.target] { "true" } else { "false" })]),
                        ..ResourceFacts::default()
                    },
                ),
                (
                    "web",
                    ResourceFacts {
                        group_size: Some(group_size),
                        ..ResourceFacts::default()
                    },
                ),
            ]);
            let inc = incident(IncidentKind::InstanceImpaired, ResourceKind::Ec2Instance, &id, Some(group.clone()), now);
            let action = if e.reboot {
                Action::RebootInstance { instance_id: id.clone() }
            } else {
                Action::ReplaceInstance { instance_id: id.clone(), move_elastic_ip: true }
            };
            let kind = action.kind();
            let j = governor.judge(&inc, &decision(action), &declared, &facts, &history, now);
            if !j.verdicts[0].verdict.is_approved() {
                continue;
            }
            // Invariants at the moment of approval.
            prop_assert!(tagged[e.target], "untagged instance {id} approved");
            let stale = now - Duration::minutes(i64::from(config.in_flight_minutes));
            let running = log.iter().filter(|(a, end)| *end > now && a.started_at > stale).count();
            prop_assert!(running < max_in_flight as usize, "in flight {running} + 1 > {max_in_flight}");
            let cool = now - Duration::minutes(i64::from(cooldown));
            prop_assert!(
                !log.iter().any(|(a, _)| a.target == id && a.kind == kind && a.started_at > cool),
                "{kind} on {id} inside its cooldown"
            );
            let blast_since = now - Duration::minutes(i64::from(config.blast_window_minutes));
            let mut members: std::collections::BTreeSet<&str> =
                log.iter().filter(|(a, _)| a.started_at > blast_since).map(|(a, _)| a.target.as_str()).collect();
            members.insert(&id);
            prop_assert!(members.len() as u32 * 100 <= config.blast_radius_percent * group_size, "blast radius");
            let loop_since = now - Duration::minutes(i64::from(config.loop_breaker_window_minutes));
            let heals = log.iter().filter(|(a, _)| a.target == id && a.started_at > loop_since).count();
            prop_assert!(heals < config.loop_breaker_count as usize, "acted after the loop breaker tripped");
            log.push((
                ActionRecord {
                    incident_id: format!("inc-{n}"),
                    step: 0,
                    kind,
                    target: id.clone(),
                    group: Some("web".into()),
                    started_at: now,
                    ended_at: None,
                    result: Outcome::Succeeded,
                    created: Vec::new(),
                },
                now + Duration::seconds(e.duration_secs),
            ));
        }
    }
}
