// Shared body of the swap-v1 / swap-v2 guests: every part of the decision names
// the version that produced it, so a test can prove no decision mixes versions.

use healer_sdk::*;

/// The policy.
pub struct Swap;

impl Policy for Swap {
    fn metadata() -> Metadata {
        Metadata::new("swap-test", VERSION)
            .handles([IncidentKind::Alarm])
            .proposes([ActionKind::Notify])
    }

    fn decide(incident: &Incident, _ctx: &Context) -> Result<Decision, String> {
        // A deliberately bad version, for the regression guard's test: this
        // version fails every incident whose reason names it.
        if incident.reason.contains(&format!("fail-in-{VERSION}")) {
            return Err(format!("version {VERSION} cannot decide this"));
        }
        // A little work, so decisions overlap with swaps.
        let mut h: u64 = 0;
        for b in incident.id.bytes().cycle().take(20_000) {
            h = h.wrapping_mul(31).wrapping_add(u64::from(b));
        }
        Ok(Decision::new(format!("decided-by {VERSION}"))
            .step(Action::notify(VERSION, format!("{h}")), VERSION))
    }
}

export_policy!(Swap);
