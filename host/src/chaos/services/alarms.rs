//! CloudWatch alarms: the `alarm` fault (SetAlarmState on a tagged alarm),
//! `impair-instance` (the instance's status-check alarms to ALARM), and the
//! alarms a fault makes CloudWatch fire (a failing function's Errors alarm).

use std::collections::BTreeMap;

use aws_sdk_cloudwatch::types::{MetricAlarm, StateValue};

use super::super::emit::{self, AwsPart};
use super::super::{
    AlarmState, Chaos, ChaosError, Injected, Preview, Reverted, Undo, aws, opted_in,
};

/// The alarm `name`.
async fn describe(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    name: &str,
) -> Result<MetricAlarm, ChaosError> {
    let out = cloudwatch
        .describe_alarms()
        .alarm_names(name)
        .send()
        .await
        .map_err(aws("cloudwatch:DescribeAlarms"))?;
    out.metric_alarms()
        .first()
        .cloned()
        .ok_or_else(|| ChaosError::NotFound(format!("no metric alarm named {name}")))
}

/// The state of the alarm `name`.
pub(in crate::chaos) async fn alarm_state(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    name: &str,
) -> Result<AlarmState, ChaosError> {
    Ok(state_of(&describe(cloudwatch, name).await?))
}

/// The alarm's state (INSUFFICIENT_DATA when CloudWatch says none or an
/// unknown one).
fn state_of(a: &MetricAlarm) -> AlarmState {
    a.state_value()
        .and_then(|s| AlarmState::parse(s.as_str()))
        .unwrap_or(AlarmState::InsufficientData)
}

/// Every metric alarm on `namespace`'s metric (`metric` says which names)
/// with the dimension `dimension` = `value`.
pub(in crate::chaos) async fn watching(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    namespace: &str,
    metric: impl Fn(&str) -> bool,
    dimension: (&str, &str),
) -> Result<Vec<MetricAlarm>, ChaosError> {
    let mut found = Vec::new();
    let mut token = None;
    loop {
        let out = cloudwatch
            .describe_alarms()
            .set_next_token(token)
            .send()
            .await
            .map_err(aws("cloudwatch:DescribeAlarms"))?;
        found.extend(
            out.metric_alarms()
                .iter()
                .filter(|a| {
                    a.namespace() == Some(namespace)
                        && a.metric_name().is_some_and(&metric)
                        && a.dimensions().iter().any(|d| {
                            d.name() == Some(dimension.0) && d.value() == Some(dimension.1)
                        })
                })
                .cloned(),
        );
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(found);
        }
    }
}

/// Sets `name` to `state` with `reason`.
pub(in crate::chaos) async fn set_state(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    name: &str,
    state: AlarmState,
    reason: &str,
) -> Result<(), ChaosError> {
    cloudwatch
        .set_alarm_state()
        .alarm_name(name)
        .state_value(StateValue::from(state.as_str()))
        .state_reason(reason)
        .send()
        .await
        .map_err(aws("cloudwatch:SetAlarmState"))?;
    Ok(())
}

/// The undo and change lines of setting each of `alarms` to `to`.
fn transitions(alarms: &[MetricAlarm], to: AlarmState) -> (Vec<String>, Undo) {
    let mut previous = BTreeMap::new();
    let mut changes = Vec::new();
    for a in alarms {
        let name = a.alarm_name().unwrap_or_default().to_owned();
        let from = state_of(a);
        changes.push(format!("alarm {name}: {} → {}", from.as_str(), to.as_str()));
        previous.insert(name, from);
    }
    (
        changes,
        Undo::AlarmStates {
            previous,
            injected: to,
        },
    )
}

impl Chaos {
    pub(in crate::chaos) async fn preview_alarm(
        &self,
        name: &str,
        state: AlarmState,
    ) -> Result<Preview, ChaosError> {
        let alarm = describe(&self.cloudwatch, name).await?;
        let arn = alarm.alarm_arn().unwrap_or(name).to_owned();
        let tags = self
            .cloudwatch
            .list_tags_for_resource()
            .resource_arn(&arn)
            .send()
            .await
            .map_err(aws("cloudwatch:ListTagsForResource"))?;
        if !opted_in(
            tags.tags()
                .iter()
                .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
        ) {
            return Err(ChaosError::NotTagged { resource: arn });
        }
        let (changes, undo) = transitions(&[alarm], state);
        Ok(Preview {
            target: arn,
            changes,
            undo,
        })
    }

    pub(in crate::chaos) async fn preview_impair(
        &self,
        instance: &str,
    ) -> Result<Preview, ChaosError> {
        self.opted_in_instance(instance).await?;
        let alarms = watching(
            &self.cloudwatch,
            "AWS/EC2",
            |m| m.starts_with("StatusCheckFailed"),
            ("InstanceId", instance),
        )
        .await?;
        if alarms.is_empty() {
            return Err(ChaosError::NotFound(format!(
                "no StatusCheckFailed alarm watches {instance}: healer reacts to that alarm, so create one first"
            )));
        }
        let (changes, undo) = transitions(&alarms, AlarmState::Alarm);
        Ok(Preview {
            target: instance.to_owned(),
            changes,
            undo,
        })
    }

    /// Sets the alarms of `preview` to the state its undo names; AWS's part
    /// is the state-change event of each.
    pub(in crate::chaos) async fn apply_alarms(
        &self,
        experiment: &str,
        preview: Preview,
    ) -> Result<Injected, ChaosError> {
        let Undo::AlarmStates { previous, injected } = &preview.undo else {
            return Err(ChaosError::NotFound("no alarm to set".into()));
        };
        let reason = format!("healer chaos experiment {experiment}");
        let mut aws_part = Vec::new();
        for (name, from) in previous {
            let alarm = describe(&self.cloudwatch, name).await?;
            set_state(&self.cloudwatch, name, *injected, &reason).await?;
            aws_part.push(AwsPart::Event(emit::alarm_event(
                &alarm, *from, *injected, &reason,
            )));
        }
        Ok(Injected {
            target: preview.target,
            undo: preview.undo.clone(),
            changes: preview.changes,
            aws_part,
        })
    }

    /// What CloudWatch would do when the function starts failing: its
    /// Errors alarms go to ALARM.
    pub(in crate::chaos) async fn errors_alarms(
        &self,
        function: &str,
        experiment: &str,
    ) -> Result<Vec<AwsPart>, ChaosError> {
        let alarms = watching(
            &self.cloudwatch,
            "AWS/Lambda",
            |m| m == "Errors",
            ("FunctionName", function),
        )
        .await?;
        Ok(alarms
            .iter()
            .filter(|a| state_of(a) != AlarmState::Alarm)
            .map(|a| {
                let reason = format!(
                    "Threshold Crossed: errors of {function} (healer chaos experiment {experiment})"
                );
                AwsPart::SetAlarm {
                    name: a.alarm_name().unwrap_or_default().to_owned(),
                    state: AlarmState::Alarm,
                    event: emit::alarm_event(a, state_of(a), AlarmState::Alarm, &reason),
                    reason,
                }
            })
            .collect())
    }

    pub(in crate::chaos) async fn revert_alarms(
        &self,
        previous: &BTreeMap<String, AlarmState>,
        injected: AlarmState,
    ) -> Result<Reverted, ChaosError> {
        let mut changes = Vec::new();
        let mut left = Vec::new();
        for (name, before) in previous {
            let now = alarm_state(&self.cloudwatch, name).await?;
            if now != injected {
                left.push(format!(
                    "alarm {name} is {} now, not {}: left as it is",
                    now.as_str(),
                    injected.as_str()
                ));
                continue;
            }
            set_state(&self.cloudwatch, name, *before, "healer chaos revert").await?;
            changes.push(format!(
                "alarm {name}: {} → {}",
                injected.as_str(),
                before.as_str()
            ));
        }
        Ok(if changes.is_empty() {
            Reverted::Superseded {
                why: left.join("; "),
            }
        } else {
            changes.extend(left);
            Reverted::Restored { changes }
        })
    }
}

/// Sets the alarm `name` to `state` with `reason` (CloudWatch's own
/// transition, played in the local AWS).
pub(in crate::chaos) async fn set_alarm(
    chaos: &Chaos,
    name: &str,
    state: AlarmState,
    reason: &str,
) -> Result<(), ChaosError> {
    set_state(&chaos.cloudwatch, name, state, reason).await
}
