//! EC2 instances: the opt-in check of `impair-instance`, and
//! `unhealthy-target` (the instance behind a target stopped; started again
//! on revert while it is still stopped).

use aws_sdk_ec2::types::{Instance, InstanceStateName};

use super::super::{Chaos, ChaosError, Injected, Preview, Reverted, Undo, aws, opted_in};

impl Chaos {
    /// The instance `id`, if it exists.
    async fn instance(&self, id: &str) -> Result<Instance, ChaosError> {
        let out = self
            .ec2
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(aws("ec2:DescribeInstances"))?;
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .next()
            .cloned()
            .ok_or_else(|| ChaosError::NotFound(format!("no instance {id}")))
    }

    /// The instance `id` when it carries the chaos tag; else refused.
    pub(in crate::chaos) async fn opted_in_instance(
        &self,
        id: &str,
    ) -> Result<Instance, ChaosError> {
        let i = self.instance(id).await?;
        if !opted_in(
            i.tags()
                .iter()
                .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
        ) {
            return Err(ChaosError::NotTagged {
                resource: id.to_owned(),
            });
        }
        Ok(i)
    }

    pub(in crate::chaos) async fn preview_unhealthy(
        &self,
        target_group: &str,
        target: &str,
    ) -> Result<Preview, ChaosError> {
        let i = self.opted_in_instance(target).await?;
        let health = self
            .elbv2
            .describe_target_health()
            .target_group_arn(target_group)
            .send()
            .await
            .map_err(aws("elasticloadbalancing:DescribeTargetHealth"))?;
        let registered = health
            .target_health_descriptions()
            .iter()
            .any(|d| d.target().and_then(|t| t.id()) == Some(target));
        if !registered {
            return Err(ChaosError::NotFound(format!(
                "{target} is not a target of {target_group}"
            )));
        }
        let state = i
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default();
        Ok(Preview {
            target: target.to_owned(),
            changes: vec![format!(
                "instance {target} (a target of {target_group}): {state} → stopped"
            )],
            undo: Undo::StartInstance {
                instance: target.to_owned(),
            },
        })
    }

    pub(in crate::chaos) async fn apply_unhealthy(
        &self,
        preview: Preview,
    ) -> Result<Injected, ChaosError> {
        self.ec2
            .stop_instances()
            .instance_ids(&preview.target)
            .send()
            .await
            .map_err(aws("ec2:StopInstances"))?;
        // Target health is polled, not sent: AWS has no event to play.
        Ok(Injected {
            target: preview.target,
            undo: preview.undo,
            changes: preview.changes,
            aws_part: Vec::new(),
        })
    }

    pub(in crate::chaos) async fn revert_instance(&self, id: &str) -> Result<Reverted, ChaosError> {
        let i = match self.instance(id).await {
            Ok(i) => i,
            Err(ChaosError::NotFound(why)) => return Ok(Reverted::Superseded { why }),
            Err(e) => return Err(e),
        };
        let state = i.state().and_then(|s| s.name()).cloned();
        if !matches!(
            state,
            Some(InstanceStateName::Stopped | InstanceStateName::Stopping)
        ) {
            let now = state.map(|s| s.as_str().to_owned()).unwrap_or_default();
            return Ok(Reverted::Superseded {
                why: format!("instance {id} is {now} now, not stopped: left as it is"),
            });
        }
        self.ec2
            .start_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(aws("ec2:StartInstances"))?;
        Ok(Reverted::Restored {
            changes: vec![format!("instance {id}: stopped → started")],
        })
    }
}
