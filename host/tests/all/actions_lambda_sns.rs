//! The Lambda and SNS executors through the real SDK clients: against moto
//! (the function's environment really changes; a queue subscribed to the
//! topic is the team inbox that receives the notification) and, for the one
//! thing moto does not model (it ignores `RevisionId`), against a scripted
//! Lambda endpoint that answers like AWS does to a concurrent change.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Environment, FunctionCode, Runtime};
use healer::actions::{
    ExecOutcome, Execution, Executor, LambdaExecutor, PreviousEnvironment, SnsExecutor, StepRequest,
};
use healer::aws::AwsErrorClass;
use healer::decision::Action;
use healer::incident::Incident;

use crate::moto;
use crate::support::http;

fn incident(function: &str) -> Incident {
    Incident::from_json(
        format!(
            r#"{{"kind":"function-errors","resource":{{"kind":"lambda-function","id":"{function}"}},"reason":"errors above 50%","detected-at":"2024-05-01T10:00:00Z"}}"#
        )
        .as_bytes(),
    )
    .expect("incident")
}

async fn run(executor: &dyn Executor, incident: &Incident, action: &Action) -> Execution {
    executor
        .execute(&StepRequest {
            incident,
            step: 0,
            action,
        })
        .await
}

fn reset(function: &str) -> Action {
    Action::UpdateFunctionConfig {
        function_name: function.into(),
        environment: vec![("FAILURE_RATE".into(), "0".into())],
    }
}

/// The IAM role a function needs, made with IAM's query API (healer has no
/// IAM client, and needs none).
fn create_role(moto: &moto::Moto) -> String {
    let (status, body) = http(
        &moto.endpoint,
        "POST",
        "/",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20240501/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
            ),
        ],
        "Action=CreateRole&Version=2010-05-08&RoleName=fn-role&AssumeRolePolicyDocument=%7B%7D",
    );
    assert_eq!(status, 200, "CreateRole: {body}");
    "arn:aws:iam::123456789012:role/fn-role".to_owned()
}

/// An empty zip archive (the end-of-central-directory record alone): moto
/// stores the code without running it.
const EMPTY_ZIP: [u8; 22] = [
    0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

pub(crate) async fn create_function(
    moto: &moto::Moto,
    name: &str,
    vars: &[(&str, &str)],
) -> aws_sdk_lambda::Client {
    let role = create_role(moto);
    let client = aws_sdk_lambda::Client::new(&moto::sdk_config(&moto.endpoint).await);
    let variables: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    client
        .create_function()
        .function_name(name)
        .runtime(Runtime::Python312)
        .role(role)
        .handler("h.h")
        .code(
            FunctionCode::builder()
                .zip_file(Blob::new(EMPTY_ZIP.to_vec()))
                .build(),
        )
        .environment(
            Environment::builder()
                .set_variables(Some(variables))
                .build(),
        )
        .send()
        .await
        .expect("create_function");
    client
}

pub(crate) async fn environment(
    client: &aws_sdk_lambda::Client,
    name: &str,
) -> (HashMap<String, String>, String) {
    let c = client
        .get_function_configuration()
        .function_name(name)
        .send()
        .await
        .expect("get_function_configuration");
    let vars = c
        .environment()
        .and_then(|e| e.variables())
        .cloned()
        .unwrap_or_default();
    (vars, c.last_modified().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn update_function_config_resets_the_variable_keeps_the_others_and_records_the_previous_value()
 {
    let Some(moto) = moto::start(
        "update_function_config_resets_the_variable_keeps_the_others_and_records_the_previous_value",
    ) else {
        return;
    };
    let client = create_function(
        &moto,
        "orders",
        &[("FAILURE_RATE", "1"), ("TABLE", "orders-prod")],
    )
    .await;
    let executor = LambdaExecutor::new(&moto::sdk_config(&moto.endpoint).await);
    let e = run(&executor, &incident("orders"), &reset("orders")).await;
    assert_eq!(e.outcome, ExecOutcome::Succeeded, "{e:?}");
    let ops: Vec<_> = e.calls.iter().map(|c| c.operation.as_str()).collect();
    assert_eq!(
        ops,
        [
            "lambda:GetFunctionConfiguration",
            "lambda:UpdateFunctionConfiguration"
        ]
    );
    assert_eq!(
        e.calls[1].params["Environment"]["Variables"]["FAILURE_RATE"],
        "0"
    );
    let (vars, _) = environment(&client, "orders").await;
    assert_eq!(vars.get("FAILURE_RATE").map(String::as_str), Some("0"));
    assert_eq!(vars.get("TABLE").map(String::as_str), Some("orders-prod"));
    let note = e.note.as_deref().expect("note");
    assert!(note.contains("FAILURE_RATE 1 → 0"), "{note}");
    assert_eq!(
        PreviousEnvironment::from_note(note),
        Some(PreviousEnvironment(BTreeMap::from([(
            "FAILURE_RATE".to_owned(),
            Some("1".to_owned())
        )])))
    );
}

#[tokio::test]
async fn update_function_config_already_at_target_is_superseded_without_an_update() {
    let Some(moto) =
        moto::start("update_function_config_already_at_target_is_superseded_without_an_update")
    else {
        return;
    };
    let client = create_function(&moto, "orders", &[("FAILURE_RATE", "0"), ("TABLE", "t")]).await;
    let (_, before) = environment(&client, "orders").await;
    let executor = LambdaExecutor::new(&moto::sdk_config(&moto.endpoint).await);
    let e = run(&executor, &incident("orders"), &reset("orders")).await;
    assert!(
        matches!(&e.outcome, ExecOutcome::Superseded { seen } if seen.contains("FAILURE_RATE=0")),
        "{e:?}"
    );
    assert_eq!(e.calls.len(), 1, "only the read: {e:?}");
    assert_eq!(e.calls[0].operation, "lambda:GetFunctionConfiguration");
    let (_, after) = environment(&client, "orders").await;
    assert_eq!(before, after, "LastModified changed: an update was sent");
}

#[tokio::test]
async fn update_function_config_of_a_missing_function_fails_not_found() {
    let Some(moto) = moto::start("update_function_config_of_a_missing_function_fails_not_found")
    else {
        return;
    };
    let executor = LambdaExecutor::new(&moto::sdk_config(&moto.endpoint).await);
    let e = run(&executor, &incident("ghost"), &reset("ghost")).await;
    assert!(
        matches!(
            &e.outcome,
            ExecOutcome::Failed {
                class: AwsErrorClass::NotFound,
                ..
            }
        ),
        "{e:?}"
    );
}

/// A Lambda endpoint that answers GetFunctionConfiguration with revision
/// `rev-1` and every update with AWS's answer to a stale `RevisionId` (412
/// PreconditionFailedException), recording the update bodies.
fn stale_revision_endpoint() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let updates = Arc::new(Mutex::new(Vec::new()));
    let seen = updates.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, body) = loop {
                let Ok(n) = conn.read(&mut chunk) else {
                    break (String::new(), String::new());
                };
                if n == 0 {
                    break (String::new(), String::new());
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break (head.to_owned(), body.to_owned());
                    }
                }
            };
            let (status, extra, answer) = if head.starts_with("GET") {
                (
                    "200 OK",
                    "",
                    r#"{"FunctionName":"orders","RevisionId":"rev-1","Environment":{"Variables":{"FAILURE_RATE":"1","TABLE":"t"}}}"#,
                )
            } else {
                seen.lock().expect("lock").push(body);
                (
                    "412 Precondition Failed",
                    "x-amzn-ErrorType: PreconditionFailedException\r\n",
                    r#"{"Type":"User","message":"The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id"}"#,
                )
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nx-amzn-RequestId: req-1\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (endpoint, updates)
}

#[tokio::test]
async fn update_function_config_sends_the_revision_it_read_and_a_concurrent_change_fails_the_step()
{
    let (endpoint, updates) = stale_revision_endpoint();
    let executor = LambdaExecutor::new(&moto::sdk_config(&endpoint).await);
    let e = run(&executor, &incident("orders"), &reset("orders")).await;
    let ExecOutcome::Failed { class, reason } = &e.outcome else {
        panic!("a concurrent change must fail the step: {e:?}");
    };
    assert_eq!(*class, AwsErrorClass::Permanent);
    assert!(reason.contains("changed since it was read"), "{reason}");
    assert_eq!(e.calls[1].params["RevisionId"], "rev-1");
    let updates = updates.lock().expect("lock");
    assert_eq!(updates.len(), 1, "one update, no retry: {updates:?}");
    let sent: serde_json::Value = serde_json::from_str(&updates[0]).expect("json body");
    assert_eq!(sent["RevisionId"], "rev-1");
    assert_eq!(sent["Environment"]["Variables"]["FAILURE_RATE"], "0");
    assert_eq!(sent["Environment"]["Variables"]["TABLE"], "t");
}

/// A topic with a queue subscribed (raw delivery): the team inbox.
async fn inbox(moto: &moto::Moto, name: &str) -> (String, String) {
    crate::support::inbox(&moto::sdk_config(&moto.endpoint).await, name, true).await
}

async fn received(moto: &moto::Moto, queue: &str) -> Vec<aws_sdk_sqs::types::Message> {
    aws_sdk_sqs::Client::new(&moto::sdk_config(&moto.endpoint).await)
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .send()
        .await
        .expect("receive_message")
        .messages()
        .to_vec()
}

#[tokio::test]
async fn notify_publishes_one_message_naming_the_incident_to_the_channel_inbox() {
    let Some(moto) =
        moto::start("notify_publishes_one_message_naming_the_incident_to_the_channel_inbox")
    else {
        return;
    };
    let (team, team_inbox) = inbox(&moto, "team").await;
    let (default, default_inbox) = inbox(&moto, "default").await;
    let channels = BTreeMap::from([("team".to_owned(), team), ("default".to_owned(), default)]);
    let executor = SnsExecutor::new(&moto::sdk_config(&moto.endpoint).await, channels);
    let incident = incident("orders");
    let action = Action::Notify {
        channel: "team".into(),
        subject: format!("orders is failing: {}", "é".repeat(120)),
        message: "FAILURE_RATE was reset to 0.".into(),
    };
    let e = run(&executor, &incident, &action).await;
    assert_eq!(e.outcome, ExecOutcome::Succeeded, "{e:?}");
    assert_eq!(e.calls.len(), 1);
    assert_eq!(e.calls[0].operation, "sns:Publish");
    let messages = received(&moto, &team_inbox).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let body = messages[0].body().unwrap_or_default();
    assert!(body.starts_with("FAILURE_RATE was reset to 0."), "{body}");
    assert!(body.contains(incident.id.as_str()), "{body}");
    assert!(
        body.contains("function-errors") && body.contains("lambda-function:orders"),
        "{body}"
    );
    let attribute = messages[0]
        .message_attributes()
        .and_then(|a| a.get("healer-incident"))
        .and_then(|a| a.string_value());
    assert_eq!(attribute, Some(incident.id.as_str()));
    assert!(received(&moto, &default_inbox).await.is_empty());
}

#[tokio::test]
async fn notify_and_escalate_fall_back_to_the_default_channel() {
    let Some(moto) = moto::start("notify_and_escalate_fall_back_to_the_default_channel") else {
        return;
    };
    let (default, default_inbox) = inbox(&moto, "default").await;
    let channels = BTreeMap::from([("default".to_owned(), default)]);
    let executor = SnsExecutor::new(&moto::sdk_config(&moto.endpoint).await, channels);
    let incident = incident("orders");
    let notify = Action::Notify {
        channel: "no-such-team".into(),
        subject: "s".into(),
        message: "to whom it may concern".into(),
    };
    let escalate = Action::Escalate {
        message: "the reset did not help".into(),
    };
    for action in [&notify, &escalate] {
        let e = run(&executor, &incident, action).await;
        assert_eq!(e.outcome, ExecOutcome::Succeeded, "{e:?}");
    }
    let messages = received(&moto, &default_inbox).await;
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(messages.iter().any(|m| {
        m.body()
            .is_some_and(|b| b.starts_with("the reset did not help"))
    }));
}

#[tokio::test]
async fn notify_without_any_topic_fails_with_a_clear_reason() {
    let config = moto::sdk_config("http://127.0.0.1:9").await;
    let executor = SnsExecutor::new(
        &config,
        BTreeMap::from([("team".to_owned(), "arn:team".to_owned())]),
    );
    let action = Action::Notify {
        channel: "ops".into(),
        subject: "s".into(),
        message: "m".into(),
    };
    let e = run(&executor, &incident("orders"), &action).await;
    let ExecOutcome::Failed { class, reason } = &e.outcome else {
        panic!("no topic must fail: {e:?}");
    };
    assert_eq!(*class, AwsErrorClass::Permanent);
    assert!(
        reason.contains("no SNS topic for channel \"ops\""),
        "{reason}"
    );
    assert!(e.calls.is_empty());
}

/// Sets `vars` on the function (the others kept), as someone else would.
pub(crate) async fn set_variables(
    client: &aws_sdk_lambda::Client,
    name: &str,
    vars: &[(&str, &str)],
) {
    let (mut all, _) = environment(client, name).await;
    for (k, v) in vars {
        all.insert((*k).to_owned(), (*v).to_owned());
    }
    client
        .update_function_configuration()
        .function_name(name)
        .environment(Environment::builder().set_variables(Some(all)).build())
        .send()
        .await
        .expect("update_function_configuration");
}
