//! The SSM executor through the real SDK client against moto: diagnostics
//! send only a configured document, wait for the invocation and record a
//! diagnosis; a named command runs its configured document and parameters;
//! anything else fails without a call. moto answers every command with
//! Success, exit 0 and empty output, so the diagnosis here comes from a
//! configured rule over that empty output (an exit-code rule), and the
//! classification of real outputs is unit-tested in `healer::diagnose`.

use std::time::Duration;

use aws_sdk_ec2 as ec2;
use healer::actions::{
    DIAGNOSE_DOCUMENT, DiagnoseConfig, ExecOutcome, Execution, Executor, NamedCommand, SsmExecutor,
    StepRequest,
};
use healer::decision::Action;
use healer::diagnose::{Class, CommandStatus, RuleSpec};
use healer::incident::Incident;

use crate::actions_ecs_ec2::{count, recorded_operations, start_recording};
use crate::moto;

async fn instance(c: &ec2::Client) -> String {
    let images = c.describe_images().send().await.expect("describe_images");
    let image = images.images()[0].image_id().expect("image").to_owned();
    let out = c
        .run_instances()
        .image_id(image)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .expect("run_instances");
    out.instances()[0].instance_id().expect("id").to_owned()
}

async fn run(e: &SsmExecutor, incident: &Incident, action: &Action) -> Execution {
    e.execute(&StepRequest {
        incident,
        step: 0,
        action,
    })
    .await
}

#[tokio::test]
async fn diagnostics_and_named_commands_run_only_what_the_operator_configured() {
    let Some(moto) =
        moto::start("diagnostics_and_named_commands_run_only_what_the_operator_configured")
    else {
        return;
    };
    let shared = moto::sdk_config(&moto.endpoint).await;
    let id = instance(&ec2::Client::new(&shared)).await;
    let config = DiagnoseConfig {
        poll_ms: Some(50),
        wait_secs: Some(10),
        rules: Some(vec![RuleSpec {
            name: "clean-exit".into(),
            class: Class::Application,
            patterns: Vec::new(),
            exit_codes: vec![0],
        }]),
        commands: [(
            "restart-service".into(),
            NamedCommand {
                document: "AWS-RunShellScript".into(),
                parameters: [("commands".into(), vec!["systemctl restart web".into()])].into(),
            },
        )]
        .into(),
        ..DiagnoseConfig::default()
    };
    let e = SsmExecutor::new(&shared, config.build().expect("rules compile"));
    let incident = Incident::from_json(
        format!(r#"{{"kind":"target-unhealthy","resource":{{"kind":"ec2-instance","id":"{id}"}},"detected-at":"2024-05-01T10:00:00Z"}}"#).as_bytes(),
    )
    .expect("incident");

    let recording = start_recording(&moto.endpoint).await;
    let diagnosed = run(
        &e,
        &incident,
        &Action::RunDiagnostics {
            instance_id: id.clone(),
            document: DIAGNOSE_DOCUMENT.into(),
        },
    )
    .await;
    assert_eq!(diagnosed.outcome, ExecOutcome::Succeeded, "{diagnosed:?}");
    let report = diagnosed.command.as_ref().expect("a command report");
    assert_eq!(report.document, DIAGNOSE_DOCUMENT);
    assert_eq!(report.status, CommandStatus::Success);
    assert!(!report.command_id.is_empty());
    let diagnosis = report.diagnosis.as_ref().expect("a diagnosis");
    assert_eq!(diagnosis.class, Class::Application);
    assert_eq!(diagnosis.rule.as_deref(), Some("clean-exit"));
    assert!(!diagnosed.request_ids.is_empty());

    let restarted = run(
        &e,
        &incident,
        &Action::RunCommand {
            instance_id: id.clone(),
            command: "restart-service".into(),
        },
    )
    .await;
    assert_eq!(restarted.outcome, ExecOutcome::Succeeded, "{restarted:?}");
    assert!(
        restarted
            .command
            .as_ref()
            .is_some_and(|c| c.diagnosis.is_none())
    );
    assert_eq!(
        restarted.calls[0].params["Parameters"]["commands"][0],
        "systemctl restart web"
    );

    // Not a configured diagnostics document, not a named command: no call.
    for action in [
        Action::RunDiagnostics {
            instance_id: id.clone(),
            document: "AWS-RunShellScript".into(),
        },
        Action::RunCommand {
            instance_id: id.clone(),
            command: "rm-rf".into(),
        },
    ] {
        let refused = run(&e, &incident, &action).await;
        assert!(
            matches!(refused.outcome, ExecOutcome::Failed { .. }),
            "{refused:?}"
        );
        assert!(refused.calls.is_empty());
    }
    let ops = recorded_operations(&moto.endpoint);
    drop(recording);
    assert_eq!(count(&ops, "SendCommand"), 2, "{ops:?}");
    assert!(count(&ops, "GetCommandInvocation") >= 2, "{ops:?}");
    tokio::time::sleep(Duration::from_millis(1)).await;
}
