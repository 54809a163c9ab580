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
            | ActionKind::RecoverInstance
    )
}

/// How our own earlier action is linked to an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// It acted on the incident's resource (restarted, deregistered, rebooted).
    Touched,
    /// It created the incident's resource (a replacement instance), as its
    /// action record's `created` says.
    Created,
}

/// Our own action that caused an incident.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cause<'a> {
    pub action: &'a ActionRecord,
    pub link: Link,
}

/// Our own action, within the window and before the incident, that touched or
/// created the incident's resource.
pub(crate) fn cause<'a>(
    incident: &Incident,
    history: &'a History,
    config: &GovernorConfig,
    now: DateTime<Utc>,
) -> Option<Cause<'a>> {
    let since = now - Ctx::minutes(config.self_caused_window_minutes);
    let resource = &incident.resource.id;
    history.all.iter().find_map(|a| {
        let recent = a.started_at > since
            && a.started_at <= incident.detected_at
            && disruptive(a.kind)
            && a.incident_id != incident.id.as_str();
        let link = if &a.target == resource {
            Link::Touched
        } else if a.created.iter().any(|c| c == resource) {
            Link::Created
        } else {
            return None;
        };
        recent.then_some(Cause { action: a, link })
    })
}

pub(crate) fn check(ctx: &Ctx<'_>) -> Option<Verdict> {
    let Cause { action: a, link } = ctx.tally.cause?;
    let how = match link {
        Link::Touched => "",
        Link::Created => ", which created it",
    };
    Some(Verdict::deny(
        Rule::SelfCaused,
        format!(
            "caused by our own {} on {} at {}{how} (incident {})",
            a.kind, a.target, a.started_at, a.incident_id
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
            matches!(v, Verdict::Denied { rule: Rule::SelfCaused, ref reason, .. } if reason.contains("deregister-target")),
            "{v:?}"
        );
        let mut launched = action(ActionKind::ReplaceInstance, "i-0old", 5, false);
        launched.created = vec!["i-1".into()];
        let created = History {
            all: vec![launched],
            ..History::default()
        };
        let v = judge_one(replace("i-1"), &tagged(), &created, cfg.clone());
        assert!(
            matches!(&v, Verdict::Denied { rule: Rule::SelfCaused, reason, .. } if reason.contains("which created it")),
            "{v:?}"
        );
        // Issue 11, item 8: the marker is typed; a result text naming the
        // resource is not a marker.
        let mut texty = action(ActionKind::ReplaceInstance, "i-0old", 5, false);
        texty.result = crate::store::Outcome::Failed("could not launch i-1".into());
        let texty = History {
            all: vec![texty],
            ..History::default()
        };
        assert!(judge_one(replace("i-1"), &tagged(), &texty, cfg.clone()).is_approved());
        let long_ago = History {
            all: vec![action(ActionKind::DeregisterTarget, "i-1", 31, false)],
            ..History::default()
        };
        assert!(judge_one(replace("i-1"), &tagged(), &long_ago, cfg).is_approved());
    }
}
