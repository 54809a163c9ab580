//! `healer heal FILE|-`: one signal through every stage in the foreground
//! (normalize, decide, judge, act, verify), each step printed as it ends.
//! Dry run unless `--live`: then the approved steps print the exact requests
//! they would send. For one-shot use and Lambda-style deployment. Exits 1
//! when the incident escalates or a stage fails.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use clap::Args;
use healer::actions::{DryRun, Executor, Executors, StepRequest};
use healer::pipeline::{Pipeline, Recorded, Worker};
use healer::policy::PolicyContext;
use healer::safety::{AwsFacts, Governor, GovernorConfig, Layered, StaticFacts};
use healer::signals::{NormalizeOptions, Signal, normalize};
use healer::store::{IncidentRecord, LifecycleState, StepRecord};

use super::live::LiveArgs;
use super::policy::EngineArgs;
use super::store::StoreArgs;
use super::{load_json, load_policies, read_input};

/// Arguments of `heal`.
#[derive(Debug, Args)]
pub struct HealArgs {
    /// A raw AWS payload (EventBridge event, SNS alarm notification, SQS
    /// message); `-` reads stdin.
    input: PathBuf,
    /// Directory of policy components (`*.wasm`) [default: the example
    /// policies built into the binary].
    #[arg(long, env = "HEALER_POLICIES")]
    policies: Option<PathBuf>,
    /// Policy context JSON.
    #[arg(long, env = "HEALER_CONTEXT")]
    context: Option<PathBuf>,
    /// Governor limits JSON (`GovernorConfig`, kebab-case).
    #[arg(long, env = "HEALER_GOVERNOR")]
    governor: Option<PathBuf>,
    /// Operator resource facts JSON.
    #[arg(long, env = "HEALER_FACTS")]
    facts: Option<PathBuf>,
    /// Read resource facts (tags, group sizes) from the AWS APIs.
    #[arg(long, env = "HEALER_AWS_FACTS")]
    aws_facts: bool,
    #[command(flatten)]
    inline: super::InlineJson,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    live: LiveArgs,
}

/// Runs `heal`.
pub fn run(a: HealArgs) -> anyhow::Result<ExitCode> {
    let mut governor: GovernorConfig = super::file_or_inline(
        a.governor.as_deref(),
        a.inline.governor_json.as_deref(),
        "governor config",
    )?;
    a.live.apply(&mut governor)?;
    let governor = Governor::new(governor);
    let context: PolicyContext = super::file_or_inline(
        a.context.as_deref(),
        a.inline.context_json.as_deref(),
        "context",
    )?;
    let operator = load_json(a.facts.as_deref(), "facts")?;
    let (registry, _) = load_policies(a.engine.engine(2)?, a.policies.as_deref())?;
    a.engine.route(&registry);
    let payload = read_input(&a.input)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let signals = normalize(&payload, &NormalizeOptions::new(Utc::now()))
            .with_context(|| format!("cannot read {}", a.input.display()))?;
        let store = a.store.open().await?;
        let shared = healer::aws::sdk_config().await;
        let facts = Layered {
            aws: a.aws_facts.then(|| AwsFacts::new(shared.clone())),
            operator: StaticFacts(operator),
        };
        let pipeline = Pipeline {
            store: store.as_ref(),
            registry: &registry,
            governor: &governor,
            facts: &facts,
        };
        let live = a.live.build(&shared)?;
        let dry = DryRun(Executors::live_with(
            &shared,
            a.live.channels()?,
            healer::actions::Ec2Executor::new(&shared),
            a.live.ssm()?,
        ));
        let mut ok = true;
        for n in signals {
            match n.signal {
                Signal::Incident(i) => {
                    let (_, recorded) = pipeline.on_incident(&i, &context, Utc::now()).await?;
                    let record = match recorded {
                        Recorded::New(r) | Recorded::Resumed(r) | Recorded::Duplicate(r) => *r,
                        Recorded::Healed(_) => continue,
                    };
                    print_decided(&record, &dry);
                    let record = match &live {
                        Some(live) => {
                            heal_live(&live.worker(&pipeline, &context), record, live.interval)
                                .await?
                        }
                        None => record,
                    };
                    println!("{}", final_line(&record));
                    ok &= record.state != LifecycleState::Escalated;
                }
                Signal::Recovery(r) => {
                    if let Recorded::Healed(h) = pipeline.on_recovery(&r).await? {
                        for record in h {
                            println!("{}", final_line(&record));
                        }
                    }
                }
                Signal::Ignored { reason } => println!("ignored: {reason}"),
                Signal::Subscription(s) => println!("ignored: SNS {} for {}", s.kind, s.topic_arn),
                Signal::Truncated { dropped, limit } => {
                    eprintln!(
                        "warning: {dropped} signals past the limit of {limit} were not handled"
                    );
                }
            }
        }
        Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

/// Drives the incident until it is healed or escalated, or waits for a
/// recovery signal this process will not see.
async fn heal_live(
    worker: &Worker<'_>,
    mut record: IncidentRecord,
    interval: Duration,
) -> anyhow::Result<IncidentRecord> {
    let print = |s: &StepRecord| println!("  {}", step_line(s));
    let worker = Worker {
        on_step: Some(&print),
        ..*worker
    };
    while matches!(
        record.state,
        LifecycleState::Acting | LifecycleState::Verifying
    ) {
        if let Some(r) = worker.drive(&record.incident.id).await? {
            record = r;
        }
        let waits_for_signal = record
            .provenance
            .as_ref()
            .and_then(|p| p.decision.as_ref().ok())
            .and_then(|d| d.verify)
            .is_some_and(|v| v.method == healer::VerifyMethod::RecoverySignal);
        if record.state == LifecycleState::Verifying
            && (waits_for_signal || healer::verify::probe(&record).is_err())
        {
            println!(
                "  verifying: waiting for the recovery signal (`healer run` heals it when it arrives)"
            );
            break;
        }
        if record.state.is_terminal() {
            break;
        }
        tokio::time::sleep(interval).await;
    }
    Ok(record)
}

fn print_decided(record: &IncidentRecord, dry: &DryRun) {
    let i = &record.incident;
    println!(
        "incident {} {} on {}: {}",
        i.id, i.kind, i.resource, i.reason
    );
    let Some(p) = &record.provenance else {
        if let Some(n) = &record.note {
            println!("  {}: {n}", record.state);
        }
        return;
    };
    let decision = match &p.decision {
        Ok(d) => d,
        Err(e) => {
            println!("  policy {} failed: {e}", p.policy.name);
            return;
        }
    };
    println!(
        "  decided by {}@{}: {}",
        p.policy.name, p.policy.version, decision.summary
    );
    for v in &record.verdicts {
        let Some(step) = decision.steps.get(v.step) else {
            continue;
        };
        println!(
            "  step {} {}: {} ({})",
            v.step,
            step.action.kind(),
            v.verdict,
            v.reason
        );
        if record.state == LifecycleState::Decided
            && v.verdict == healer::safety::VerdictKind::Approved
        {
            let req = StepRequest {
                incident: i,
                step: v.step,
                action: &step.action,
            };
            for call in dry.plan(&req) {
                println!("    would call {} {}", call.operation, call.params);
            }
        }
    }
}

fn step_line(s: &StepRecord) -> String {
    let took = s
        .ended_at
        .map(|e| {
            format!(
                " in {:.1} s",
                (e - s.started_at).num_milliseconds() as f64 / 1000.0
            )
        })
        .unwrap_or_default();
    let note = s
        .note
        .as_deref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    let created = if s.created.is_empty() {
        String::new()
    } else {
        format!(" created {}", s.created.join(", "))
    };
    format!(
        "step {} {}: {}{took}{note}{created}",
        s.index,
        s.action.kind(),
        s.result
    )
}

fn final_line(r: &IncidentRecord) -> String {
    let mttr = r
        .mttr_ms
        .map(|ms| format!(", MTTR {:.1} s", ms as f64 / 1000.0))
        .unwrap_or_default();
    let note = r
        .note
        .as_deref()
        .map(|n| format!(": {n}"))
        .unwrap_or_default();
    format!("  => {} {}{mttr}{note}", r.incident.id, r.state)
}
