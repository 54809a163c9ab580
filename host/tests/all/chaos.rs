//! `healer chaos` on moto through the real SDK: the guard rails (an
//! untagged resource is refused and left alone), the revert (the exact
//! previous configuration back; a value changed since left as it is), and a
//! revert after the chaos process was killed (from the journal).

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch as cloudwatch;

/// `healer chaos ARGS` against moto with `data` as the data directory.
fn chaos(endpoint: &str, data: &Path, args: &[&str]) -> Output {
    command(endpoint, data, args).output().expect("healer runs")
}

fn command(endpoint: &str, data: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_healer"));
    c.arg("chaos")
        .args(args)
        .env("HEALER_DATA_DIR", data)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing");
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}\n--- stderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The function `fragile` with two variables, tagged for chaos when `opt_in`.
async fn fragile(moto: &crate::moto::Moto, opt_in: bool) -> aws_sdk_lambda::Client {
    let lambda = crate::actions_lambda_sns::create_function(
        moto,
        "fragile",
        &[("FAILURE_RATE", "0"), ("GREETING", "hello")],
    )
    .await;
    if opt_in {
        let arn = lambda
            .get_function_configuration()
            .function_name("fragile")
            .send()
            .await
            .expect("get_function_configuration")
            .function_arn()
            .expect("arn")
            .to_owned();
        lambda
            .tag_resource()
            .resource(arn)
            .tags("HealerChaos", "true")
            .send()
            .await
            .expect("tag_resource");
    }
    lambda
}

async fn variables(lambda: &aws_sdk_lambda::Client) -> HashMap<String, String> {
    crate::actions_lambda_sns::environment(lambda, "fragile")
        .await
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untagged_resource_is_refused_and_left_alone() {
    let Some(moto) = crate::moto::start("an_untagged_resource_is_refused_and_left_alone") else {
        return;
    };
    let lambda = fragile(&moto, false).await;
    let before = variables(&lambda).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let args = [
        "lambda-failure-rate",
        "--function",
        "fragile",
        "--rate",
        "1",
        "--yes",
    ];
    let out = chaos(&moto.endpoint, dir.path(), &args);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("is not tagged HealerChaos=true"),
        "{}",
        text(&out)
    );
    assert_eq!(variables(&lambda).await, before);
    // Nothing was recorded either.
    let list = chaos(&moto.endpoint, dir.path(), &["list"]);
    assert_eq!(String::from_utf8_lossy(&list.stdout), "");
    // An untagged alarm is refused the same way.
    let cw = cloudwatch::Client::new(&crate::moto::sdk_config(&moto.endpoint).await);
    errors_alarm(&cw, false).await;
    let out = chaos(
        &moto.endpoint,
        dir.path(),
        &["alarm", "--name", "Errors-fragile", "--yes"],
    );
    assert!(
        text(&out).contains("is not tagged HealerChaos=true"),
        "{}",
        text(&out)
    );
    assert_eq!(alarm_state(&cw).await, "OK");
}

/// The Errors alarm of `fragile` (OK), tagged for chaos when `opt_in`.
async fn errors_alarm(cw: &cloudwatch::Client, opt_in: bool) {
    let mut put = cw
        .put_metric_alarm()
        .alarm_name("Errors-fragile")
        .namespace("AWS/Lambda")
        .metric_name("Errors")
        .dimensions(
            cloudwatch::types::Dimension::builder()
                .name("FunctionName")
                .value("fragile")
                .build(),
        )
        .statistic(cloudwatch::types::Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(1.0)
        .comparison_operator(cloudwatch::types::ComparisonOperator::GreaterThanOrEqualToThreshold);
    if opt_in {
        put = put.tags(
            cloudwatch::types::Tag::builder()
                .key("HealerChaos")
                .value("true")
                .build(),
        );
    }
    put.send().await.expect("put_metric_alarm");
    cw.set_alarm_state()
        .alarm_name("Errors-fragile")
        .state_value(cloudwatch::types::StateValue::Ok)
        .state_reason("test")
        .send()
        .await
        .expect("set_alarm_state");
}

async fn alarm_state(cw: &cloudwatch::Client) -> String {
    cw.describe_alarms()
        .alarm_names("Errors-fragile")
        .send()
        .await
        .expect("describe_alarms")
        .metric_alarms()[0]
        .state_value()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_changes_nothing_and_a_revert_restores_the_exact_configuration() {
    let Some(moto) = crate::moto::start(
        "a_preview_changes_nothing_and_a_revert_restores_the_exact_configuration",
    ) else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let lambda = fragile(&moto, true).await;
    let cw = cloudwatch::Client::new(&shared);
    errors_alarm(&cw, false).await;
    let sqs = aws_sdk_sqs::Client::new(&shared);
    let queue = crate::support::queue(&sqs, "healer-events").await;
    let before = variables(&lambda).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let fault = [
        "lambda-failure-rate",
        "--function",
        "fragile",
        "--rate",
        "1",
    ];

    let out = chaos(&moto.endpoint, dir.path(), &fault);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("FAILURE_RATE 0 → 1"), "{}", text(&out));
    assert!(text(&out).contains("Dry run"), "{}", text(&out));
    assert_eq!(
        variables(&lambda).await,
        before,
        "a preview changes nothing"
    );

    // Injected for 2 s, playing CloudWatch's part on the queue, then reverted.
    let mut args = fault.to_vec();
    args.extend(["--yes", "--duration", "2s", "--emit-to", &queue]);
    let child = command(&moto.endpoint, dir.path(), &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    while variables(&lambda)
        .await
        .get("FAILURE_RATE")
        .map(String::as_str)
        != Some("1")
    {
        assert!(Instant::now() < deadline, "the fault was not injected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during = variables(&lambda).await;
    assert_eq!(during.get("GREETING"), before.get("GREETING"));
    let out = child.wait_with_output().expect("ends");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("restored"), "{}", text(&out));
    assert_eq!(variables(&lambda).await, before, "exactly as it was");
    // The alarm CloudWatch would have fired, as moto cannot: set and sent.
    assert_eq!(alarm_state(&cw).await, "ALARM");
    let got = sqs
        .receive_message()
        .queue_url(&queue)
        .send()
        .await
        .expect("receive_message");
    let body = got.messages()[0].body().expect("body");
    let norm = Command::new(env!("CARGO_BIN_EXE_healer"))
        .args(["normalize", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(body.as_bytes())?;
            c.wait_with_output()
        })
        .expect("normalize");
    let line = String::from_utf8_lossy(&norm.stdout);
    assert!(line.contains("function-errors"), "{line}");

    // A value changed since (healer's fix) is left as it is.
    let mut args = fault.to_vec();
    args.extend(["--yes", "--no-wait"]);
    let out = chaos(&moto.endpoint, dir.path(), &args);
    assert!(out.status.success(), "{}", text(&out));
    crate::actions_lambda_sns::set_variables(&lambda, "fragile", &[("FAILURE_RATE", "0.5")]).await;
    let out = chaos(&moto.endpoint, dir.path(), &["revert"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("left as it is"), "{}", text(&out));
    assert_eq!(
        variables(&lambda)
            .await
            .get("FAILURE_RATE")
            .map(String::as_str),
        Some("0.5")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_chaos_process_is_reverted_from_the_journal() {
    let Some(moto) = crate::moto::start("a_killed_chaos_process_is_reverted_from_the_journal")
    else {
        return;
    };
    let shared = crate::moto::sdk_config(&moto.endpoint).await;
    let world = crate::actions_ecs_ec2::ecs_world(&moto, &shared).await;
    let service = world.service().await;
    world
        .ecs
        .tag_resource()
        .resource_arn(service.service_arn().expect("arn"))
        .tags(
            aws_sdk_ecs::types::Tag::builder()
                .key("HealerChaos")
                .value("true")
                .build(),
        )
        .send()
        .await
        .expect("tag_resource");
    let before = service.task_definition().expect("td").to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = command(
        &moto.endpoint,
        dir.path(),
        &[
            "bad-deployment",
            "--cluster",
            "prod",
            "--service",
            "api",
            "--yes",
            "--duration",
            "10m",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    while world.service().await.task_definition() == Some(before.as_str()) {
        assert!(
            Instant::now() < deadline,
            "the bad revision was not deployed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bad = world
        .service()
        .await
        .task_definition()
        .expect("td")
        .to_owned();
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let image = world
        .ecs
        .describe_task_definition()
        .task_definition(&bad)
        .send()
        .await
        .expect("describe_task_definition")
        .task_definition()
        .expect("td")
        .container_definitions()[0]
        .image()
        .expect("image")
        .to_owned();
    assert_eq!(image, healer::chaos::BAD_IMAGE);
    let list = chaos(&moto.endpoint, dir.path(), &["list"]);
    assert!(text(&list).contains("active"), "{}", text(&list));

    let out = chaos(&moto.endpoint, dir.path(), &["revert"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        world.service().await.task_definition(),
        Some(before.as_str())
    );
    let status = world
        .ecs
        .describe_task_definition()
        .task_definition(&bad)
        .send()
        .await
        .expect("describe_task_definition")
        .task_definition()
        .and_then(|t| t.status().cloned());
    assert_eq!(
        status,
        Some(aws_sdk_ecs::types::TaskDefinitionStatus::Inactive)
    );
    let list = chaos(&moto.endpoint, dir.path(), &["list"]);
    assert!(text(&list).contains("reverted at"), "{}", text(&list));
    // Reverting again does nothing.
    let out = chaos(&moto.endpoint, dir.path(), &["revert"]);
    assert!(
        text(&out).contains("no active experiment"),
        "{}",
        text(&out)
    );
}
