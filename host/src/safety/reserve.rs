//! Reservations: the places an approved mutating step must hold in the store
//! before it runs, one per counted limit (blast radius of its group, actions
//! in flight in its group and globally, actions per hour of its kind and
//! globally). The rules judged the step against the history they read; the
//! reservation makes that judgement hold when two replicas, or two incidents
//! of one burst, judge at once: the store grants each place once
//! (`Store::reserve`). A step that loses the race is denied by the rule whose
//! limit was full.

use std::time::Duration;

use super::{Effect, Facts, Governor, Rule, StepVerdict, Verdict};
use crate::incident::Incident;
use crate::store::{SlotClaim, SlotLimit};

fn minutes(m: u32) -> Duration {
    Duration::from_secs(u64::from(m) * 60)
}

const HOUR: Duration = Duration::from_secs(3600);

impl Governor {
    /// The places an approved mutating step needs; none for anything else.
    /// The holder is the step's index among all the incident's steps:
    /// `step_base` plus its index in the decision (a later round's step 0 is
    /// not the first round's).
    pub fn claims(
        &self,
        incident: &Incident,
        v: &StepVerdict,
        step_base: usize,
        facts: &Facts,
    ) -> Vec<SlotClaim> {
        if !v.verdict.is_approved() || !v.action.is_mutating() {
            return Vec::new();
        }
        let c = self.config();
        let step = format!("{}#{}", incident.id, step_base + v.step);
        let claim = |limit: SlotLimit, capacity: u32, holder: &str, ttl: Duration| SlotClaim {
            limit,
            capacity,
            holder: holder.to_owned(),
            ttl,
        };
        let mut out = vec![
            claim(
                SlotLimit::InFlight,
                c.max_in_flight,
                &step,
                minutes(c.in_flight_minutes),
            ),
            claim(
                SlotLimit::RateKind(v.action),
                c.rate_limit(v.action),
                &step,
                HOUR,
            ),
            claim(SlotLimit::RateGlobal, c.rate_global_per_hour, &step, HOUR),
        ];
        if let Some(group) = &v.group {
            out.push(claim(
                SlotLimit::InFlightGroup(group.clone()),
                c.max_in_flight_per_group,
                &step,
                minutes(c.in_flight_minutes),
            ));
            out.extend(self.blast_claims(group, v, &step, facts));
        }
        out
    }

    /// The blast radius admits `percent` of the group's members (rounded
    /// down) under action at once; a member holds one place however many steps
    /// act on it. A group-wide step takes every place, so it needs the group
    /// idle and keeps it so for the window.
    fn blast_claims(
        &self,
        group: &str,
        v: &StepVerdict,
        step: &str,
        facts: &Facts,
    ) -> Vec<SlotClaim> {
        let c = self.config();
        let percent = u64::from(c.blast_radius_percent);
        let Some(size) = facts.of(group).group_size.filter(|_| percent < 100) else {
            return Vec::new();
        };
        let capacity = u32::try_from(percent * u64::from(size) / 100).unwrap_or(u32::MAX);
        let ttl = minutes(c.blast_window_minutes);
        let limit = SlotLimit::BlastRadius(group.to_owned());
        if v.action.is_group_wide() {
            let capacity = capacity.max(1);
            return (0..capacity)
                .map(|i| SlotClaim {
                    limit: limit.clone(),
                    capacity,
                    holder: format!("{step}#group-wide#{i}"),
                    ttl,
                })
                .collect();
        }
        let member = v.target.clone().unwrap_or_else(|| step.to_owned());
        vec![SlotClaim {
            limit,
            capacity,
            holder: member,
            ttl,
        }]
    }
}

/// The denial of a step whose reservation found `limit` full.
pub fn lost_race(limit: &SlotLimit) -> Verdict {
    let (rule, effect, what) = match limit {
        SlotLimit::BlastRadius(g) => (
            Rule::BlastRadius,
            Effect::Storm,
            format!(
                "storm mode: the last blast-radius place of {g} was taken by a concurrent decision; notify and escalate only"
            ),
        ),
        SlotLimit::InFlightGroup(g) => (
            Rule::InFlight,
            Effect::Step,
            format!("a concurrent decision took the last in-flight place of {g}"),
        ),
        SlotLimit::InFlight => (
            Rule::InFlight,
            Effect::Step,
            "a concurrent decision took the last global in-flight place".to_owned(),
        ),
        SlotLimit::RateKind(k) => (
            Rule::RateLimit,
            Effect::Step,
            format!("a concurrent decision took the last {k} place of this hour"),
        ),
        SlotLimit::RateGlobal => (
            Rule::RateLimit,
            Effect::Step,
            "a concurrent decision took the last place of this hour".to_owned(),
        ),
    };
    Verdict::deny_with(rule, effect, what)
}
