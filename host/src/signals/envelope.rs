//! Envelope unwrapping: Lambda SQS/SNS batches, SQS ReceiveMessage responses, SNS
//! HTTP envelopes, EventBridge events, alarm payloads and ELBv2 responses, nested
//! in any order, with a bound on JSON-in-string decodes. Dispatches each payload
//! to its source's normalizer. First matching shape wins.

use super::json::Json as Value;
use chrono::{DateTime, Utc};

use super::fields::{get_ci, str_of, time_of};
use super::{NormalizeOptions, Normalized, Signal, Subscription};

/// What the envelopes around a payload tell about it.
#[derive(Debug, Clone)]
pub(crate) struct Ctx<'o> {
    pub opts: &'o NormalizeOptions,
    /// Innermost envelope time (EventBridge `time`, SNS `Timestamp`, SQS `SentTimestamp`).
    pub envelope_time: Option<DateTime<Utc>>,
    depth: u32,
    path: String,
}

impl Ctx<'_> {
    /// The time to use when the payload has none of its own.
    pub fn fallback_time(&self) -> DateTime<Utc> {
        self.envelope_time.unwrap_or(self.opts.received_at)
    }

    fn child(&self, segment: &str, envelope_time: Option<DateTime<Utc>>) -> Self {
        Ctx {
            opts: self.opts,
            envelope_time: envelope_time.or(self.envelope_time),
            depth: self.depth,
            path: if self.path.is_empty() || self.path.ends_with('>') {
                format!("{}{}", self.path, segment.trim_start_matches('.'))
            } else {
                format!("{}{segment}", self.path)
            },
        }
    }
}

/// The signals of one input: at most `max_signals`; past that they are only
/// counted, so a hostile batch costs no memory per item.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    pub signals: Vec<Normalized>,
    /// Signals past the limit.
    pub dropped: usize,
    /// Where the first dropped signal was.
    pub first_dropped: Option<String>,
}

/// Collects the signals of one payload.
pub(crate) struct Sink<'a, 'o> {
    pub ctx: Ctx<'o>,
    out: &'a mut Collected,
}

impl<'o> Sink<'_, 'o> {
    /// A sink for one item of this payload (`segment` is appended to the path).
    pub fn item(&mut self, segment: &str) -> Sink<'_, 'o> {
        Sink {
            ctx: self.ctx.child(segment, None),
            out: &mut *self.out,
        }
    }

    pub fn push(&mut self, signal: Signal) {
        if self.out.signals.len() >= self.ctx.opts.max_signals {
            self.out.dropped += 1;
            if self.out.first_dropped.is_none() {
                self.out.first_dropped = Some(self.ctx.path.clone());
            }
            return;
        }
        self.out.signals.push(Normalized {
            signal,
            path: self.ctx.path.clone(),
        });
    }

    pub fn ignore(&mut self, reason: impl Into<String>) {
        self.push(Signal::Ignored {
            reason: reason.into(),
        });
    }
}

/// Entry point: unwraps a parsed input.
pub(crate) fn unwrap(v: &Value, opts: &NormalizeOptions, out: &mut Collected) {
    let ctx = Ctx {
        opts,
        envelope_time: None,
        depth: 0,
        path: String::new(),
    };
    walk(v, ctx, out);
}

/// Decodes a JSON-in-string and walks it, or explains why not.
fn decode(raw: &Value, ctx: Ctx<'_>, out: &mut Collected) {
    let mut sink = Sink { ctx, out };
    let Some(s) = raw.as_str() else {
        // Raw delivery or an already-decoded body: walk it as is.
        if raw.is_object() || raw.is_array() {
            let ctx = sink.ctx.clone();
            return walk(raw, ctx, out);
        }
        return sink.ignore("message is not a string or object");
    };
    if sink.ctx.depth >= sink.ctx.opts.max_depth {
        return sink.ignore(format!(
            "too deep: more than {} nested JSON-in-string payloads",
            sink.ctx.opts.max_depth
        ));
    }
    if s.len() > sink.ctx.opts.max_string_bytes {
        return sink.ignore(format!(
            "oversized: message of {} bytes exceeds {} bytes",
            s.len(),
            sink.ctx.opts.max_string_bytes
        ));
    }
    let trimmed = s.trim_start();
    if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
        return sink.ignore("non-JSON message");
    }
    match Value::parse(s) {
        Ok(inner) => {
            let mut ctx = sink.ctx.clone();
            ctx.depth += 1;
            ctx.path.push('>');
            walk(&inner, ctx, out);
        }
        Err(e) => sink.ignore(format!("non-JSON message: {e}")),
    }
}

fn walk(v: &Value, ctx: Ctx<'_>, out: &mut Collected) {
    if let Value::Array(items) = v {
        for (i, item) in items.iter().enumerate() {
            walk(item, ctx.child(&format!("[{i}]"), None), out);
        }
        return;
    }
    let Some(obj) = v.as_object() else {
        return Sink { ctx, out }.ignore("not a JSON object");
    };
    let has = |k: &str| v.contains_key(k);
    if let Some(records) = get_ci(v, "Records") {
        return lambda_records(records, ctx, out);
    }
    if let Some(messages) = get_ci(v, "Messages") {
        return sqs_messages(messages, ctx, out);
    }
    if get_ci(v, "Type").is_some() && get_ci(v, "TopicArn").is_some() {
        return sns(v, ctx, out);
    }
    if has("detail-type") && has("source") && has("detail") {
        let ctx = ctx.child("", time_of(v.get("time")));
        return eventbridge(v, Sink { ctx, out });
    }
    if has("alarmArn") && has("alarmData") {
        return super::alarm::lambda_action(v, Sink { ctx, out });
    }
    if has("AlarmName") && has("NewStateValue") {
        return super::alarm::sns_message(v, Sink { ctx, out });
    }
    if let Some(list) = v.get("TargetHealthDescriptions") {
        return super::elbv2::describe_target_health(list, Sink { ctx, out });
    }
    if let Some(list) = v.get("InstanceStatuses") {
        return super::ec2::describe_instance_status(list, Sink { ctx, out });
    }
    let mut keys: Vec<&str> = obj.iter().map(|(k, _)| k.as_ref()).take(8).collect();
    keys.sort_unstable();
    Sink { ctx, out }.ignore(format!("unrecognized shape: keys {}", keys.join(", ")))
}

fn lambda_records(records: &Value, ctx: Ctx<'_>, out: &mut Collected) {
    let Some(items) = records.as_array() else {
        return Sink { ctx, out }.ignore("`Records` is not a list");
    };
    for (i, rec) in items.iter().enumerate() {
        let ctx = ctx.child(&format!("Records[{i}]"), None);
        let source = get_ci(rec, "eventSource")
            .and_then(Value::as_str)
            .unwrap_or("");
        if source == "aws:sqs" || (source.is_empty() && get_ci(rec, "body").is_some()) {
            let sent = get_ci(rec, "attributes")
                .and_then(|a| get_ci(a, "SentTimestamp"))
                .and_then(|t| time_of(Some(t)));
            let body = get_ci(rec, "body").unwrap_or(&Value::Null);
            decode(body, ctx.child(".body", sent), out);
        } else if source == "aws:sns" || (source.is_empty() && get_ci(rec, "Sns").is_some()) {
            match get_ci(rec, "Sns") {
                Some(sns_obj) => sns(sns_obj, ctx.child(".Sns", None), out),
                None => Sink { ctx, out }.ignore("SNS record without `Sns`"),
            }
        } else {
            let what = if source.is_empty() { "unknown" } else { source };
            Sink { ctx, out }.ignore(format!("unsupported record source {what}"));
        }
    }
}

fn sqs_messages(messages: &Value, ctx: Ctx<'_>, out: &mut Collected) {
    let Some(items) = messages.as_array() else {
        return Sink { ctx, out }.ignore("`Messages` is not a list");
    };
    for (i, msg) in items.iter().enumerate() {
        let sent = get_ci(msg, "Attributes")
            .and_then(|a| get_ci(a, "SentTimestamp"))
            .and_then(|t| time_of(Some(t)));
        let ctx = ctx.child(&format!("Messages[{i}].Body"), sent);
        decode(get_ci(msg, "Body").unwrap_or(&Value::Null), ctx, out);
    }
}

fn sns(v: &Value, ctx: Ctx<'_>, out: &mut Collected) {
    let kind = get_ci(v, "Type").and_then(Value::as_str).unwrap_or("");
    let text = |k: &str| get_ci(v, k).and_then(Value::as_str).map(str::to_owned);
    match kind {
        "Notification" => {
            let ts = time_of(get_ci(v, "Timestamp"));
            decode(
                get_ci(v, "Message").unwrap_or(&Value::Null),
                ctx.child(".Message", ts),
                out,
            );
        }
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => {
            Sink { ctx, out }.push(Signal::Subscription(Subscription {
                kind: kind.to_owned(),
                topic_arn: text("TopicArn").unwrap_or_default(),
                subscribe_url: text("SubscribeURL"),
                token: text("Token"),
            }));
        }
        other => Sink { ctx, out }.ignore(format!("unsupported SNS message type {other:?}")),
    }
}

fn eventbridge(v: &Value, mut sink: Sink<'_, '_>) {
    let source = str_of(v, "source").unwrap_or("");
    let detail_type = str_of(v, "detail-type").unwrap_or("");
    if !v.get("detail").is_some_and(Value::is_object) {
        return sink.ignore(format!(
            "{source} {detail_type:?} event without a detail object"
        ));
    }
    match (source, detail_type) {
        ("aws.ecs", "ECS Task State Change") => super::ecs::task_state_change(v, sink),
        ("aws.ecs", "ECS Service Action") => super::ecs::service_action(v, sink),
        ("aws.ecs", "ECS Deployment State Change") => super::ecs::deployment_state_change(v, sink),
        ("aws.cloudwatch", "CloudWatch Alarm State Change")
        | ("aws.cloudwatch", "CloudWatch Alarm Contributor State Change") => {
            super::alarm::eventbridge(v, sink)
        }
        ("aws.ec2", "EC2 Spot Instance Interruption Warning") => {
            super::ec2::spot_interruption(v, sink)
        }
        ("aws.autoscaling", _) => super::autoscaling::event(v, sink),
        ("aws.health", "AWS Health Event") => super::health::event(v, sink),
        ("aws.ec2", "EC2 Instance Rebalance Recommendation") => {
            sink.ignore("rebalance recommendation is advisory")
        }
        ("aws.ec2", "EC2 Instance State-change Notification") => sink.ignore(format!(
            "instance state {} is context, not a failure",
            v["detail"]
                .get("state")
                .and_then(Value::as_str)
                .unwrap_or("?")
        )),
        ("aws.ecs", "ECS Container Instance State Change") => {
            sink.ignore("container instance state change is context, not a failure")
        }
        ("aws.cloudwatch", "CloudWatch Alarm Configuration Change") => {
            sink.ignore("alarm configuration change")
        }
        _ => sink.ignore(format!("unsupported event {source} {detail_type:?}")),
    }
}
