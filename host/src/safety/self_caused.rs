//! Self-caused suppression: an incident on a resource that one of our own
//! actions created, replaced, restarted or deregistered within the window is
//! linked to that action and not acted on again automatically.

use chrono::{DateTime, Utc};

use crate::decision::ActionKind;
use crate::incident::Incident;
use crate::store::ActionRecord;

use super::{Ctx, GovernorConfig, History, Rule, Verdict};

/// Actions whose aftermath raises incidents on the same resource.
fn disruptive(kind: ActionKind) -> bool {
    matches!(
        kind,
        ActionKind::ReplaceInstance
            | ActionKind::DeregisterTarget
            | ActionKind::RestartTask
            | ActionKind::SetInstanceUnhealthy
            | ActionKind::RebootInstance
    )
}

/// Our own action, within the window and before the incident, that touched or
/// created the incident's resource.
pub(crate) fn cause<'a>(
    incident: &Incident,
    history: &'a History,
    config: &GovernorConfig,
    now: DateTime<Utc>,
) -> Option<&'a ActionRecord> {
    let since = now - Ctx::minutes(config.self_caused_window_minutes);
    let resource = &incident.resource.id;
    history.all.iter().find(|a| {
        a.started_at > since
            && a.started_at <= incident.detected_at
            && disruptive(a.kind)
            && (&a.target == resource
                // The executor records what it created ("launched i-0new…").
                || (!resource.is_empty() && a.result.contains(resource.as_str())))
            && a.incident_id != incident.id.as_str()
    })
}

pub(crate) fn check(ctx: &Ctx<'_>) -> Option<Verdict> {
    let cause = ctx.tally.cause?;
    Some(Verdict::deny(
        Rule::SelfCaused,
        format!(
            "caused by our own {} on {} at {} (incident {})",
            cause.kind, cause.target, cause.started_at, cause.incident_id
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;

    #[test]
    fn incidents_after_our_own_actions_are_linked_not_acted_on() {
        let cfg = GovernorConfig::default();
        let replaced = History {
            all: vec![action(ActionKind::DeregisterTarget, "i-1", 5, false)],
            ..History::default()
        };
        let v = judge_one(replace("i-1"), &tagged(), &replaced, cfg.clone());
        assert!(
            matches!(v, Verdict::Denied { rule: Rule::SelfCaused, ref reason } if reason.contains("deregister-target")),
            "{v:?}"
        );
        let mut launched = action(ActionKind::ReplaceInstance, "i-0old", 5, false);
        launched.result = "succeeded: launched i-1".into();
        let created = History {
            all: vec![launched],
            ..History::default()
        };
        assert!(matches!(
            judge_one(replace("i-1"), &tagged(), &created, cfg.clone()),
            Verdict::Denied {
                rule: Rule::SelfCaused,
                ..
            }
        ));
        let long_ago = History {
            all: vec![action(ActionKind::DeregisterTarget, "i-1", 31, false)],
            ..History::default()
        };
        assert!(judge_one(replace("i-1"), &tagged(), &long_ago, cfg).is_approved());
    }
}
