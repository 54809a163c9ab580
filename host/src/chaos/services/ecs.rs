//! ECS: `stop-task` stops one running task of a service (the scheduler
//! replaces it: nothing to undo), `bad-deployment` deploys a revision whose
//! image cannot be pulled, undone by putting the service back on the
//! revision it ran while it is still on the bad one.

use aws_sdk_ecs::types::{Service, Task};

use super::super::emit::{self, AwsPart};
use super::super::{
    BAD_IMAGE, Chaos, ChaosError, Injected, Preview, Reverted, STOP_REASON, Undo, aws, opted_in,
};

impl Chaos {
    /// The service, when it exists and carries the chaos tag.
    async fn opted_in_service(&self, cluster: &str, service: &str) -> Result<Service, ChaosError> {
        let out = self
            .ecs
            .describe_services()
            .cluster(cluster)
            .services(service)
            .send()
            .await
            .map_err(aws("ecs:DescribeServices"))?;
        let s = out
            .services()
            .iter()
            .find(|s| s.status() != Some("INACTIVE"))
            .cloned()
            .ok_or_else(|| ChaosError::NotFound(format!("no service {service} in {cluster}")))?;
        let arn = s.service_arn().unwrap_or(service).to_owned();
        let tags = self
            .ecs
            .list_tags_for_resource()
            .resource_arn(&arn)
            .send()
            .await
            .map_err(aws("ecs:ListTagsForResource"))?;
        if !opted_in(
            tags.tags()
                .iter()
                .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
        ) {
            return Err(ChaosError::NotTagged { resource: arn });
        }
        Ok(s)
    }

    /// A running task of the service (its `group` is `service:NAME`).
    async fn running_task(&self, cluster: &str, service: &str) -> Result<Task, ChaosError> {
        let list = self
            .ecs
            .list_tasks()
            .cluster(cluster)
            .service_name(service)
            .send()
            .await
            .map_err(aws("ecs:ListTasks"))?;
        if list.task_arns().is_empty() {
            return Err(ChaosError::NotFound(format!(
                "service {service} in {cluster} has no running task"
            )));
        }
        let tasks = self
            .ecs
            .describe_tasks()
            .cluster(cluster)
            .set_tasks(Some(list.task_arns().to_vec()))
            .send()
            .await
            .map_err(aws("ecs:DescribeTasks"))?;
        let group = format!("service:{service}");
        tasks
            .tasks()
            .iter()
            .find(|t| t.group() == Some(group.as_str()) && t.last_status() == Some("RUNNING"))
            .cloned()
            .ok_or_else(|| {
                ChaosError::NotFound(format!(
                    "service {service} in {cluster} has no running task"
                ))
            })
    }

    pub(in crate::chaos) async fn preview_stop(
        &self,
        cluster: &str,
        service: &str,
    ) -> Result<Preview, ChaosError> {
        self.opted_in_service(cluster, service).await?;
        let task = self.running_task(cluster, service).await?;
        let arn = task.task_arn().unwrap_or_default().to_owned();
        Ok(Preview {
            changes: vec![format!(
                "task {arn} of service {service}: RUNNING → STOPPED ({STOP_REASON})"
            )],
            target: arn,
            undo: Undo::Nothing {
                why: "the service's scheduler replaces a stopped task".into(),
            },
        })
    }

    pub(in crate::chaos) async fn apply_stop(
        &self,
        cluster: &str,
        experiment: &str,
        preview: Preview,
    ) -> Result<Injected, ChaosError> {
        let reason = format!("{STOP_REASON} (experiment {experiment})");
        let out = self
            .ecs
            .stop_task()
            .cluster(cluster)
            .task(&preview.target)
            .reason(&reason)
            .send()
            .await
            .map_err(aws("ecs:StopTask"))?;
        let aws_part = out
            .task()
            .map(|t| AwsPart::Event(emit::task_stopped_event(t, &reason)))
            .into_iter()
            .collect();
        Ok(Injected {
            target: preview.target,
            undo: preview.undo,
            changes: preview.changes,
            aws_part,
        })
    }

    pub(in crate::chaos) async fn preview_deployment(
        &self,
        cluster: &str,
        service: &str,
    ) -> Result<Preview, ChaosError> {
        let s = self.opted_in_service(cluster, service).await?;
        let current = s
            .task_definition()
            .ok_or_else(|| {
                ChaosError::NotFound(format!("service {service} has no task definition"))
            })?
            .to_owned();
        Ok(Preview {
            target: s.service_arn().unwrap_or(service).to_owned(),
            changes: vec![format!(
                "service {service}: {current} → a new revision of it with image {BAD_IMAGE}"
            )],
            undo: Undo::Deployment {
                cluster: cluster.to_owned(),
                service: service.to_owned(),
                previous: current,
                bad: String::new(),
            },
        })
    }

    pub(in crate::chaos) async fn apply_deployment(
        &self,
        cluster: &str,
        service: &str,
        preview: Preview,
        journal: &mut dyn FnMut(&Undo) -> Result<(), ChaosError>,
    ) -> Result<Injected, ChaosError> {
        let Undo::Deployment { previous, .. } = &preview.undo else {
            return Err(ChaosError::NotFound("no deployment to replace".into()));
        };
        let bad = self.register_bad(previous).await?;
        let undo = Undo::Deployment {
            cluster: cluster.to_owned(),
            service: service.to_owned(),
            previous: previous.clone(),
            bad: bad.clone(),
        };
        journal(&undo)?;
        let out = self
            .ecs
            .update_service()
            .cluster(cluster)
            .service(service)
            .task_definition(&bad)
            .send()
            .await
            .map_err(aws("ecs:UpdateService"))?;
        let aws_part = out
            .service()
            .map(|s| AwsPart::Event(emit::deployment_failed_event(s)))
            .into_iter()
            .collect();
        Ok(Injected {
            target: preview.target,
            undo,
            changes: vec![format!(
                "service {service}: {previous} → {bad} (image {BAD_IMAGE})"
            )],
            aws_part,
        })
    }

    /// Registers a copy of `definition` whose containers all run
    /// [`BAD_IMAGE`]; returns its ARN.
    async fn register_bad(&self, definition: &str) -> Result<String, ChaosError> {
        let out = self
            .ecs
            .describe_task_definition()
            .task_definition(definition)
            .send()
            .await
            .map_err(aws("ecs:DescribeTaskDefinition"))?;
        let td = out
            .task_definition()
            .ok_or_else(|| ChaosError::NotFound(format!("no task definition {definition}")))?;
        let containers = td
            .container_definitions()
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c.image = Some(BAD_IMAGE.to_owned());
                c
            })
            .collect();
        let registered = self
            .ecs
            .register_task_definition()
            .family(td.family().unwrap_or_default())
            .set_container_definitions(Some(containers))
            .set_cpu(td.cpu().map(str::to_owned))
            .set_memory(td.memory().map(str::to_owned))
            .set_network_mode(td.network_mode().cloned())
            .set_requires_compatibilities(Some(td.requires_compatibilities().to_vec()))
            .set_execution_role_arn(td.execution_role_arn().map(str::to_owned))
            .set_task_role_arn(td.task_role_arn().map(str::to_owned))
            .send()
            .await
            .map_err(aws("ecs:RegisterTaskDefinition"))?;
        registered
            .task_definition()
            .and_then(|t| t.task_definition_arn())
            .map(str::to_owned)
            .ok_or_else(|| ChaosError::NotFound("RegisterTaskDefinition returned no ARN".into()))
    }

    pub(in crate::chaos) async fn revert_deployment(
        &self,
        cluster: &str,
        service: &str,
        previous: &str,
        bad: &str,
    ) -> Result<Reverted, ChaosError> {
        let out = self
            .ecs
            .describe_services()
            .cluster(cluster)
            .services(service)
            .send()
            .await
            .map_err(aws("ecs:DescribeServices"))?;
        let now = out
            .services()
            .first()
            .and_then(|s| s.task_definition())
            .unwrap_or_default()
            .to_owned();
        let mut changes = Vec::new();
        let outcome_why;
        if !bad.is_empty() && now == bad {
            self.ecs
                .update_service()
                .cluster(cluster)
                .service(service)
                .task_definition(previous)
                .send()
                .await
                .map_err(aws("ecs:UpdateService"))?;
            changes.push(format!("service {service}: {bad} → {previous}"));
            outcome_why = None;
        } else {
            outcome_why = Some(format!(
                "service {service} runs {now} now, not the bad revision: left as it is"
            ));
        }
        if !bad.is_empty() {
            self.ecs
                .deregister_task_definition()
                .task_definition(bad)
                .send()
                .await
                .map_err(aws("ecs:DeregisterTaskDefinition"))?;
            changes.push(format!("deregistered {bad}"));
        }
        Ok(match outcome_why {
            None => Reverted::Restored { changes },
            Some(why) if changes.is_empty() => Reverted::Superseded { why },
            Some(why) => Reverted::Superseded {
                why: format!("{why}; {}", changes.join("; ")),
            },
        })
    }
}
