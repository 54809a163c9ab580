//! Example policy `ec2-replace`, after the EC2 self-healing seed.
//!
//! - instance-impaired / instance-retiring on an instance tagged `SelfHeal=true`
//!   (tag key and value configurable), a ladder (`strategy = ladder`, the
//!   default): a failed instance status check (`StatusCheckFailed_Instance`,
//!   or the combined `StatusCheckFailed`) is rebooted first, as AWS advises;
//!   a system check failure, a scheduled retirement or a hardware event is
//!   recovered by stop and start (`recover-instance`: new hardware, same id,
//!   volumes and Elastic IP; the host refuses it for an instance-store
//!   instance). When the host asks again because the instance is still
//!   impaired after the reboot or the recovery, it is replaced: the host launches a twin with the
//!   same AMI, type, subnet, security groups, key pair and tags, moves its
//!   Elastic IP, tags the new one, then terminates the old one. Asked again
//!   after a replacement, it proposes nothing more (the host escalates).
//!   `strategy = replace` replaces at once (the seed's behaviour). Each
//!   attempt notifies.
//! - an instance in an Auto Scaling group → mark it Unhealthy; the group replaces it.
//! - not opted in, or `skip-recovery` set → notify only, with the reason.
//!
//! The governor enforces the opt-in tag as well; the policy checks it so the plan
//! it proposes says what will really happen.

use healer_sdk::*;

/// The policy.
pub struct Ec2Replace;

impl Policy for Ec2Replace {
    fn metadata() -> Metadata {
        Metadata::new("ec2-replace", "1.2.0")
            .handles([
                IncidentKind::InstanceImpaired,
                IncidentKind::InstanceRetiring,
            ])
            .proposes([
                ActionKind::RebootInstance,
                ActionKind::RecoverInstance,
                ActionKind::ReplaceInstance,
                ActionKind::SetInstanceUnhealthy,
                ActionKind::Notify,
            ])
            .config(
                "opt-in-tag",
                "Tag key that opts an instance in",
                Some("SelfHeal"),
            )
            .config(
                "opt-in-value",
                "Tag value that opts an instance in",
                Some("true"),
            )
            .config(
                "strategy",
                "`ladder` (reboot an instance-check failure first, replace if still impaired) or `replace` (replace at once)",
                Some("ladder"),
            )
    }

    fn decide(incident: &Incident, ctx: &Context) -> Result<Decision, String> {
        let id = incident.resource.id.as_str();
        if incident.resource.kind != ResourceKind::Ec2Instance {
            return Err(format!(
                "expected an ec2-instance resource, got {:?}",
                incident.resource.kind
            ));
        }
        let what = match incident.kind {
            IncidentKind::InstanceRetiring => "is scheduled for retirement",
            _ => "is impaired",
        };
        let key = ctx.config_or("opt-in-tag", "SelfHeal");
        let value = ctx.config_or("opt-in-value", "true");
        let opted_in = ctx.tag(key) == Some(value);
        if ctx.resource_config.skip_recovery || !opted_in {
            let why = if ctx.resource_config.skip_recovery {
                "skip-recovery is set for it".to_owned()
            } else {
                format!("it is not tagged {key}={value}")
            };
            return Ok(
                Decision::new(format!("Instance {id} {what}; not replaced because {why}.")).step(
                    Action::notify(
                        format!("EC2 instance {id} {what}"),
                        format!("{}\nNot replaced: {why}.", incident.reason),
                    ),
                    "Humans must decide for instances that are not opted in.",
                ),
            );
        }
        let asg = incident
            .group
            .as_ref()
            .filter(|g| g.kind == ResourceKind::AutoscalingGroup)
            .map(|g| g.id.as_str());
        // The plan's main step, the verb of its notification and how long
        // verification may take.
        let (d, doing, verify_secs) = match asg {
            Some(group) => (
                Decision::new(format!("Mark {id} Unhealthy so {group} replaces it.")).step(
                    Action::set_instance_unhealthy(group, id),
                    format!("The instance {what}; its Auto Scaling group owns replacement."),
                ),
                "Replacing",
                900,
            ),
            None => match rung(incident, ctx) {
                Rung::Reboot => (
                    Decision::new(format!("Reboot {id}, whose instance status check failed."))
                        .step(
                            Action::reboot_instance(id),
                            "An instance status check failure is inside the instance; a reboot fixes most, and keeps its volumes and addresses.",
                        ),
                    "Rebooting",
                    300,
                ),
                Rung::Recover => (
                    Decision::new(format!("Recover {id} by stop and start, onto new hardware."))
                        .step(
                            Action::recover_instance(id),
                            "Its host is failing (system check, retirement or hardware): a stop and start moves an EBS-backed instance to new hardware and keeps its id, volumes and Elastic IP.",
                        ),
                    "Recovering",
                    900,
                ),
                Rung::Replace(why) => (
                    Decision::new(format!("Replace {id}, which {what}."))
                        .step(Action::replace_instance(id), why),
                    "Replacing",
                    900,
                ),
                Rung::Done => {
                    return Ok(Decision::nothing(format!(
                        "{id} was already replaced and is still impaired; humans take over."
                    )));
                }
            },
        };
        Ok(d.step(
            Action::notify(
                format!("{doing} EC2 instance {id}"),
                format!("{id} {what}: {}", incident.reason),
            ),
            "Tell humans what healer did.",
        )
        .verify(VerifyMethod::Poll, verify_secs))
    }
}

/// The next rung of the ladder for an opted-in instance outside any group.
enum Rung {
    Reboot,
    Recover,
    Replace(String),
    Done,
}

fn rung(incident: &Incident, ctx: &Context) -> Rung {
    let id = incident.resource.id.as_str();
    let done = |kind: ActionKind| {
        ctx.last_actions
            .iter()
            .any(|a| a.kind == kind && a.target == id && a.outcome == "succeeded")
    };
    if done(ActionKind::ReplaceInstance) {
        return Rung::Done;
    }
    if ctx.config_or("strategy", "ladder") == "replace" {
        return Rung::Replace("strategy = replace: replace at once.".to_owned());
    }
    // The alarm's metric, without its namespace (`AWS/EC2/StatusCheckFailed_Instance`).
    let metric = incident
        .attr("metric")
        .map(|m| m.rsplit('/').next().unwrap_or(m));
    let instance_check = matches!(
        metric,
        Some("StatusCheckFailed" | "StatusCheckFailed_Instance")
    );
    if incident.kind == IncidentKind::InstanceImpaired && instance_check {
        if !done(ActionKind::RebootInstance) {
            return Rung::Reboot;
        }
        return Rung::Replace("Still impaired after a reboot: new hardware.".to_owned());
    }
    // An instance-store device is failing (an AWS Health event): a stop and
    // start would lose that storage, so replace.
    if incident
        .attr("event-type")
        .is_some_and(|t| t.contains("INSTANCE_STORE"))
    {
        return Rung::Replace("Its instance store is failing: a stop would lose it.".to_owned());
    }
    // A system check, a retirement or a hardware event: the host is failing.
    if !done(ActionKind::RecoverInstance) {
        return Rung::Recover;
    }
    Rung::Replace("Still impaired after a stop and start: replace it.".to_owned())
}

export_policy!(Ec2Replace);

#[cfg(test)]
mod tests {
    use super::*;
    use healer_sdk::testing::{self, incident};

    fn impaired() -> Incident {
        incident(
            IncidentKind::InstanceImpaired,
            ResourceKind::Ec2Instance,
            "i-0abc",
        )
        .with_reason("StatusCheckFailed >= 1")
    }

    fn kinds(d: &Decision) -> Vec<ActionKind> {
        d.steps.iter().map(|s| s.action.kind()).collect()
    }

    #[test]
    fn opted_in_instance_is_replaced_with_its_eip() {
        let ctx = Context::empty()
            .with_tag("SelfHeal", "true")
            .with_config("strategy", "replace");
        let d = testing::decide::<Ec2Replace>(&impaired(), &ctx).unwrap();
        assert_eq!(kinds(&d), [ActionKind::ReplaceInstance, ActionKind::Notify]);
        match &d.steps[0].action {
            Action::ReplaceInstance(r) => {
                assert_eq!(r.instance_id, "i-0abc");
                assert!(r.move_elastic_ip);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn the_ladder_reboots_an_instance_check_failure_then_replaces_then_stops() {
        let failed = impaired().with_detail("metric", "AWS/EC2/StatusCheckFailed_Instance");
        let ctx = Context::empty().with_tag("SelfHeal", "true");
        let d = testing::decide::<Ec2Replace>(&failed, &ctx).unwrap();
        assert_eq!(kinds(&d), [ActionKind::RebootInstance, ActionKind::Notify]);
        // Asked again, still impaired after the reboot: replace.
        let rebooted = ctx
            .clone()
            .with_last_action(ActionKind::RebootInstance, "i-0abc", 1);
        let d = testing::decide::<Ec2Replace>(&failed, &rebooted).unwrap();
        assert_eq!(kinds(&d), [ActionKind::ReplaceInstance, ActionKind::Notify]);
        // Asked again after the replacement: nothing more.
        let replaced = rebooted.with_last_action(ActionKind::ReplaceInstance, "i-0abc", 2);
        let d = testing::decide::<Ec2Replace>(&failed, &replaced).unwrap();
        assert!(d.steps.is_empty());
        // strategy = replace: at once.
        let at_once = ctx.with_config("strategy", "replace");
        let d = testing::decide::<Ec2Replace>(&failed, &at_once).unwrap();
        assert_eq!(kinds(&d)[0], ActionKind::ReplaceInstance);
    }

    #[test]
    fn a_failing_host_is_recovered_by_stop_and_start_then_replaced() {
        let system = impaired().with_detail("metric", "AWS/EC2/StatusCheckFailed_System");
        let retiring = incident(
            IncidentKind::InstanceRetiring,
            ResourceKind::Ec2Instance,
            "i-0abc",
        );
        let ctx = Context::empty().with_tag("SelfHeal", "true");
        for inc in [&system, &retiring] {
            let d = testing::decide::<Ec2Replace>(inc, &ctx).unwrap();
            assert_eq!(kinds(&d), [ActionKind::RecoverInstance, ActionKind::Notify]);
            assert_eq!(d.verify.as_ref().map(|v| v.deadline_secs), Some(900));
        }
        // An instance-store device failing: replaced, never stopped.
        let store = impaired().with_detail(
            "event-type",
            "AWS_EC2_INSTANCE_STORE_DRIVE_PERFORMANCE_DEGRADED",
        );
        let d = testing::decide::<Ec2Replace>(&store, &ctx).unwrap();
        assert_eq!(kinds(&d)[0], ActionKind::ReplaceInstance);
        // Asked again, still impaired after the stop and start: replace.
        let recovered = ctx.with_last_action(ActionKind::RecoverInstance, "i-0abc", 1);
        let d = testing::decide::<Ec2Replace>(&system, &recovered).unwrap();
        assert_eq!(kinds(&d), [ActionKind::ReplaceInstance, ActionKind::Notify]);
    }

    #[test]
    fn untagged_or_opted_out_instance_is_only_notified() {
        for ctx in [
            Context::empty(),
            Context::empty().with_tag("SelfHeal", "false"),
        ] {
            let d = testing::decide::<Ec2Replace>(&impaired(), &ctx).unwrap();
            assert_eq!(kinds(&d), [ActionKind::Notify]);
            assert!(
                d.summary.contains("not tagged SelfHeal=true"),
                "{}",
                d.summary
            );
        }
    }

    #[test]
    fn skip_recovery_wins_over_the_tag() {
        let mut ctx = Context::empty().with_tag("SelfHeal", "true");
        ctx.resource_config.skip_recovery = true;
        let d = testing::decide::<Ec2Replace>(&impaired(), &ctx).unwrap();
        assert_eq!(kinds(&d), [ActionKind::Notify]);
    }

    #[test]
    fn custom_opt_in_tag() {
        let ctx = Context::empty()
            .with_config("opt-in-tag", "healer")
            .with_config("opt-in-value", "on")
            .with_tag("healer", "on");
        let d = testing::decide::<Ec2Replace>(&impaired(), &ctx).unwrap();
        assert_eq!(kinds(&d), [ActionKind::RecoverInstance, ActionKind::Notify]);
    }

    #[test]
    fn asg_member_is_marked_unhealthy() {
        let inc = impaired().with_group(ResourceKind::AutoscalingGroup, "web-asg");
        let ctx = Context::empty().with_tag("SelfHeal", "true");
        let d = testing::decide::<Ec2Replace>(&inc, &ctx).unwrap();
        assert_eq!(
            kinds(&d),
            [ActionKind::SetInstanceUnhealthy, ActionKind::Notify]
        );
    }

    #[test]
    fn wrong_resource_kind_is_an_error() {
        let inc = incident(
            IncidentKind::InstanceImpaired,
            ResourceKind::Alarm,
            "arn:alarm",
        );
        assert!(testing::decide::<Ec2Replace>(&inc, &Context::empty()).is_err());
    }
}
