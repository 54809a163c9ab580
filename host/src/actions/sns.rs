//! The SNS executor: `notify` and `escalate` publish a message to the topic of
//! a channel. Channels are names from config mapped to topic ARNs; a channel
//! without a topic falls back to `default`, and with no topic at all the step
//! fails with a clear reason. Every message names the incident (its id is
//! also the `healer-incident` message attribute, for filter policies and
//! SQS subscribers). It changes no AWS resource and creates no topic.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_sns::error::DisplayErrorContext;
use aws_sdk_sns::operation::RequestId;
use aws_sdk_sns::types::MessageAttributeValue;
use serde_json::json;

use super::{ExecOutcome, Execution, Executor, PlannedCall, StepRequest};
use crate::aws::{AwsErrorClass, classify};
use crate::decision::{Action, ActionKind};
use crate::incident::Incident;

/// `sns:Publish`.
const PUBLISH: &str = "sns:Publish";
/// The channel a channel without a topic falls back to.
pub const DEFAULT_CHANNEL: &str = "default";
/// The channel `escalate` publishes on (falling back to [`DEFAULT_CHANNEL`]).
pub const ESCALATION_CHANNEL: &str = "escalation";
/// The message attribute that carries the incident id.
pub const INCIDENT_ATTRIBUTE: &str = "healer-incident";
/// SNS's limit on a subject: 100 printable ASCII characters.
pub const MAX_SUBJECT: usize = 100;

/// Carries out `notify` and `escalate` through SNS Publish.
#[derive(Debug, Clone)]
pub struct SnsExecutor {
    client: aws_sdk_sns::Client,
    channels: BTreeMap<String, String>,
}

/// One message to publish.
#[derive(Debug, Clone, PartialEq)]
struct Message {
    channel: String,
    topic: Option<String>,
    subject: String,
    body: String,
    incident: String,
}

impl SnsExecutor {
    /// An executor whose client comes from `config` (its retries and
    /// timeouts: [`crate::aws::sdk_config`]); `channels` maps channel names
    /// to topic ARNs, `default` being the fallback.
    pub fn new(config: &aws_config::SdkConfig, channels: BTreeMap<String, String>) -> Self {
        SnsExecutor {
            client: aws_sdk_sns::Client::new(config),
            channels,
        }
    }

    /// Publishes a message about the host itself (no incident) to
    /// `channel`'s topic, else the default one: the regression guard's
    /// rollbacks. The message id, or why it was not sent.
    pub async fn announce(
        &self,
        channel: &str,
        subject: &str,
        body: &str,
    ) -> Result<String, String> {
        let topic = self
            .topic(channel)
            .ok_or_else(|| format!("no SNS topic for channel {channel:?} and no default"))?;
        let out = self
            .client
            .publish()
            .topic_arn(topic)
            .subject(sanitize_subject(subject))
            .message(body)
            .send()
            .await
            .map_err(|e| format!("{PUBLISH} {topic}: {}", DisplayErrorContext(&e)))?;
        Ok(out.message_id().unwrap_or_default().to_owned())
    }

    /// The topic of `channel`, else the default one.
    fn topic(&self, channel: &str) -> Option<&str> {
        self.channels
            .get(channel)
            .or_else(|| self.channels.get(DEFAULT_CHANNEL))
            .map(String::as_str)
    }

    fn message(&self, req: &StepRequest<'_>) -> Option<Message> {
        let (channel, subject, text) = match req.action {
            Action::Notify {
                channel,
                subject,
                message,
            } => (channel.as_str(), subject.clone(), message.as_str()),
            Action::Escalate { message } => (
                ESCALATION_CHANNEL,
                format!(
                    "healer escalation: {} on {}",
                    req.incident.kind, req.incident.resource
                ),
                message.as_str(),
            ),
            _ => return None,
        };
        Some(Message {
            channel: channel.to_owned(),
            topic: self.topic(channel).map(str::to_owned),
            subject: sanitize_subject(&subject),
            body: body(text, req.incident),
            incident: req.incident.id.to_string(),
        })
    }
}

/// A subject SNS accepts: printable ASCII only (line breaks and tabs become
/// spaces, other characters `?`), spaces collapsed, at most [`MAX_SUBJECT`]
/// characters (a cut subject ends in `...`).
pub fn sanitize_subject(subject: &str) -> String {
    let mut out = String::with_capacity(subject.len().min(MAX_SUBJECT));
    for c in subject.chars() {
        let c = if c.is_whitespace() {
            ' '
        } else if c.is_ascii_graphic() {
            c
        } else {
            '?'
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(c);
    }
    let mut out = out.trim_end().to_owned();
    if out.len() > MAX_SUBJECT {
        out.truncate(MAX_SUBJECT - 3);
        out = format!("{}...", out.trim_end());
    }
    out
}

/// The message body: the step's message, then what the incident is.
fn body(message: &str, incident: &Incident) -> String {
    format!(
        "{message}\n\nincident: {}\nkind: {}\nresource: {}\nreason: {}\n",
        incident.id, incident.kind, incident.resource, incident.reason
    )
}

fn publish_call(m: &Message) -> Option<PlannedCall> {
    let topic = m.topic.as_deref()?;
    let mut params = json!({
        "TopicArn": topic,
        "Message": m.body,
        "MessageAttributes": {
            INCIDENT_ATTRIBUTE: { "DataType": "String", "StringValue": m.incident },
        },
    });
    if !m.subject.is_empty() {
        params["Subject"] = json!(m.subject);
    }
    Some(PlannedCall {
        operation: PUBLISH.into(),
        params,
    })
}

#[async_trait]
impl Executor for SnsExecutor {
    fn handles(&self, kind: ActionKind) -> bool {
        matches!(kind, ActionKind::Notify | ActionKind::Escalate)
    }

    /// One Publish; none when the channel has no topic (and there is no
    /// default), which executing reports as a failure.
    fn plan(&self, req: &StepRequest<'_>) -> Vec<PlannedCall> {
        self.message(req)
            .and_then(|m| publish_call(&m))
            .into_iter()
            .collect()
    }

    async fn execute(&self, req: &StepRequest<'_>) -> Execution {
        let Some(m) = self.message(req) else {
            return Execution::failed(
                Vec::new(),
                AwsErrorClass::Permanent,
                format!("the SNS executor does not carry out {}", req.action.kind()),
            );
        };
        let (Some(call), Some(topic)) = (publish_call(&m), m.topic.as_deref()) else {
            return Execution::failed(
                Vec::new(),
                AwsErrorClass::Permanent,
                format!(
                    "no SNS topic for channel {:?} and no {DEFAULT_CHANNEL:?} channel: configure one",
                    m.channel
                ),
            );
        };
        let attribute = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(&m.incident)
            .build();
        let attribute = match attribute {
            Ok(a) => a,
            Err(e) => {
                return Execution::failed(vec![call], AwsErrorClass::Permanent, e.to_string());
            }
        };
        let subject = (!m.subject.is_empty()).then(|| m.subject.clone());
        let sent = self
            .client
            .publish()
            .topic_arn(topic)
            .set_subject(subject)
            .message(&m.body)
            .message_attributes(INCIDENT_ATTRIBUTE, attribute)
            .send()
            .await;
        match sent {
            Ok(out) => Execution {
                outcome: ExecOutcome::Succeeded,
                calls: vec![call],
                request_ids: out.request_id().map(str::to_owned).into_iter().collect(),
                created: Vec::new(),
                note: Some(format!(
                    "published to {} ({topic}){}",
                    m.channel,
                    out.message_id()
                        .map(|id| format!(", message {id}"))
                        .unwrap_or_default()
                )),
                command: None,
            },
            Err(e) => {
                let reason = format!("{PUBLISH} {topic}: {}", DisplayErrorContext(&e));
                Execution::failed(vec![call], classify(&e), reason)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn executor(channels: &[(&str, &str)]) -> SnsExecutor {
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let channels = channels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        SnsExecutor::new(&config, channels)
    }

    fn incident() -> Incident {
        Incident::from_json(
            br#"{"kind":"function-errors","resource":{"kind":"lambda-function","id":"orders"},"detected-at":"2024-05-01T10:00:00Z"}"#,
        )
        .expect("incident")
    }

    #[test]
    fn the_plan_publishes_to_the_channel_topic_with_the_incident_attribute() {
        let incident = incident();
        let action = Action::Notify {
            channel: "team".into(),
            subject: "orders\nis failing".into(),
            message: "FAILURE_RATE reset".into(),
        };
        let req = StepRequest {
            incident: &incident,
            step: 1,
            action: &action,
        };
        let e = executor(&[("team", "arn:aws:sns:us-east-1:1:team")]);
        assert!(e.handles(ActionKind::Notify) && e.handles(ActionKind::Escalate));
        assert!(!e.handles(ActionKind::UpdateFunctionConfig));
        let id = incident.id.to_string();
        assert_eq!(
            e.plan(&req),
            vec![PlannedCall {
                operation: "sns:Publish".into(),
                params: json!({
                    "TopicArn": "arn:aws:sns:us-east-1:1:team",
                    "Subject": "orders is failing",
                    "Message": format!("FAILURE_RATE reset\n\nincident: {id}\nkind: function-errors\nresource: lambda-function:orders\nreason: {}\n", incident.reason),
                    "MessageAttributes": {
                        "healer-incident": { "DataType": "String", "StringValue": id },
                    },
                }),
            }]
        );
    }

    #[test]
    fn escalate_uses_the_escalation_channel_then_the_default() {
        let incident = incident();
        let action = Action::Escalate {
            message: "help".into(),
        };
        let req = StepRequest {
            incident: &incident,
            step: 0,
            action: &action,
        };
        let both = executor(&[("escalation", "arn:esc"), ("default", "arn:def")]);
        let plan = both.plan(&req);
        assert_eq!(plan[0].params["TopicArn"], "arn:esc");
        assert_eq!(
            plan[0].params["Subject"],
            "healer escalation: function-errors on lambda-function:orders"
        );
        assert_eq!(
            executor(&[("default", "arn:def")]).plan(&req)[0].params["TopicArn"],
            "arn:def"
        );
        assert!(executor(&[("team", "arn:team")]).plan(&req).is_empty());
    }

    #[test]
    fn subjects_are_printable_ascii_of_at_most_100_characters() {
        assert_eq!(sanitize_subject("  a\tb\r\n  c  "), "a b c");
        assert_eq!(sanitize_subject("caf\u{e9} \u{1f525}"), "caf? ?");
        let long = sanitize_subject(&"x".repeat(300));
        assert_eq!(long.len(), MAX_SUBJECT);
        assert!(long.ends_with("..."));
        assert_eq!(sanitize_subject("\n"), "");
        let s = sanitize_subject(&"\u{e9}\u{7f} y".repeat(80));
        assert!(s.len() <= MAX_SUBJECT && s.chars().all(|c| c.is_ascii_graphic() || c == ' '));
    }
}
