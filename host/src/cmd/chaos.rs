//! `healer chaos`: inject a fault on purpose (drills, demos), with FIS-style
//! guard rails: only resources tagged `HealerChaos=true`, a preview unless
//! `--yes`, a journal written before each change, an automatic revert after
//! `--duration` (or on Ctrl-C / SIGTERM, or when `--stop-on-alarm` fires),
//! and `healer chaos revert` for what a killed process left behind.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use clap::{Args, Subcommand};
use healer::chaos::{
    AlarmState, Chaos, Experiment, ExperimentState, Fault, Journal, Reverted, emit,
};

/// `healer chaos …`.
#[derive(Debug, Subcommand)]
pub enum ChaosCommand {
    /// Set a function's FAILURE_RATE variable (the others kept).
    LambdaFailureRate {
        #[arg(long)]
        function: String,
        /// The value to set (the fragile-function seed fails this share of calls).
        #[arg(long)]
        rate: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Stop one running task of a service (a drill's crash: healer treats a
    /// stop with chaos's reason as one).
    StopTask {
        #[arg(long)]
        cluster: String,
        #[arg(long)]
        service: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Deploy a revision of the service's task definition whose image cannot
    /// be pulled.
    BadDeployment {
        #[arg(long)]
        cluster: String,
        #[arg(long)]
        service: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Set the instance's StatusCheckFailed alarms to ALARM (real AWS cannot
    /// impair an instance on request; this is what a failed check does).
    ImpairInstance {
        #[arg(long)]
        instance: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Stop the instance behind a load-balancer target.
    UnhealthyTarget {
        /// Target group ARN.
        #[arg(long)]
        target_group: String,
        /// Instance id of the target.
        #[arg(long)]
        target: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Set an alarm's state (SetAlarmState).
    Alarm {
        #[arg(long)]
        name: String,
        #[arg(long, value_enum, default_value = "ALARM")]
        state: AlarmState,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Undo recorded experiments still active (all of them without an id).
    Revert {
        /// Experiment ids (`chaos-…`).
        ids: Vec<String>,
        #[command(flatten)]
        journal: JournalArgs,
    },
    /// List recorded experiments.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        journal: JournalArgs,
    },
}

/// Where the journal is.
#[derive(Debug, Args)]
pub struct JournalArgs {
    /// Data directory; the journal is its `chaos/` [default: $HEALER_DATA_DIR, else ~/.local/share/healer].
    #[arg(long, env = "HEALER_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

impl JournalArgs {
    fn journal(&self) -> anyhow::Result<Journal> {
        let dir = match &self.data_dir {
            Some(d) => d.clone(),
            None => std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".local/share/healer"))
                .context("set --data-dir or HEALER_DATA_DIR (HOME is unset)")?,
        };
        Ok(Journal::new(dir.join("chaos")))
    }
}

/// How a fault is run.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Inject (default: preview what would change, and change nothing).
    #[arg(long)]
    yes: bool,
    /// Revert after this long (`90s`, `10m`, `1h`).
    #[arg(long, default_value = "10m", value_parser = duration)]
    duration: Duration,
    /// Stop condition: revert at once when this alarm is in ALARM.
    #[arg(long)]
    stop_on_alarm: Option<String>,
    /// Local AWS only (moto emits nothing): also play AWS's part and send the
    /// EventBridge event AWS would send to this SQS queue URL.
    #[arg(long, env = "HEALER_CHAOS_EMIT_TO")]
    emit_to: Option<String>,
    /// Inject, record and return at once: no waiting, no automatic revert
    /// (`healer chaos revert` undoes it).
    #[arg(long)]
    no_wait: bool,
    #[command(flatten)]
    journal: JournalArgs,
}

/// Parses `90s`, `10m`, `1h` (a bare number is seconds); at least 1 s.
fn duration(s: &str) -> Result<Duration, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 10m or 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("{s:?}: the unit is s, m or h")),
    };
    if secs == 0 {
        return Err("the duration is at least 1s (--no-wait leaves the revert to you)".into());
    }
    Ok(Duration::from_secs(secs))
}

/// Runs `healer chaos …`.
pub fn run(c: ChaosCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let shared = healer::aws::sdk_config().await;
        let chaos = Chaos::new(&shared);
        let (fault, run) = match c {
            ChaosCommand::LambdaFailureRate {
                function,
                rate,
                run,
            } => (Fault::LambdaFailureRate { function, rate }, run),
            ChaosCommand::StopTask {
                cluster,
                service,
                run,
            } => (Fault::StopTask { cluster, service }, run),
            ChaosCommand::BadDeployment {
                cluster,
                service,
                run,
            } => (Fault::BadDeployment { cluster, service }, run),
            ChaosCommand::ImpairInstance { instance, run } => {
                (Fault::ImpairInstance { instance }, run)
            }
            ChaosCommand::UnhealthyTarget {
                target_group,
                target,
                run,
            } => (
                Fault::UnhealthyTarget {
                    target_group,
                    target,
                },
                run,
            ),
            ChaosCommand::Alarm { name, state, run } => (Fault::Alarm { name, state }, run),
            ChaosCommand::Revert { ids, journal } => {
                return revert(&chaos, &journal.journal()?, &ids).await;
            }
            ChaosCommand::List { json, journal } => return list(&journal.journal()?, json),
        };
        experiment(&chaos, &shared, fault, run).await
    })
}

/// Previews, or injects, waits and reverts, one fault.
async fn experiment(
    chaos: &Chaos,
    shared: &aws_config::SdkConfig,
    fault: Fault,
    run: RunArgs,
) -> anyhow::Result<ExitCode> {
    let journal = run.journal.journal()?;
    if !run.yes {
        let p = chaos.preview(&fault).await?;
        println!("{} on {} would change:", fault.name(), p.target);
        for c in &p.changes {
            println!("  {c}");
        }
        println!(
            "and revert after {}s. Dry run: nothing changed; --yes to inject.",
            run.duration.as_secs()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let now = Utc::now();
    let revert_in = chrono::Duration::from_std(run.duration).context("duration too long")?;
    let mut record = Experiment {
        id: Journal::new_id(now),
        fault: fault.clone(),
        target: String::new(),
        started_at: now,
        revert_at: now + revert_in,
        undo: healer::chaos::Undo::Nothing {
            why: "not injected yet".into(),
        },
        state: ExperimentState::Active,
    };
    let id = record.id.clone();
    let injected = chaos
        .inject(&fault, &id, &mut |undo| {
            record.undo = undo.clone();
            journal.save(&record)
        })
        .await?;
    record.undo = injected.undo.clone();
    record.target = injected.target.clone();
    journal.save(&record)?;
    println!("{id}: {} injected", fault.name());
    for c in &injected.changes {
        println!("  {c}");
    }
    if let Some(queue) = &run.emit_to {
        let sqs = aws_sdk_sqs::Client::new(shared);
        for line in emit::deliver(chaos, &sqs, queue, &injected.aws_part).await? {
            println!("  local AWS: {line}");
        }
    }
    if run.no_wait {
        println!("  not waiting: `healer chaos revert {id}` undoes it");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "  reverting at {} (Ctrl-C reverts now)",
        record.revert_at.format("%H:%M:%S UTC")
    );
    let why = wait(chaos, run.duration, run.stop_on_alarm.as_deref()).await;
    println!("{id}: {why}: reverting");
    let outcome = chaos.revert(&record.undo).await?;
    print_outcome(&outcome);
    record.state = ExperimentState::Reverted {
        at: Utc::now(),
        outcome,
    };
    journal.save(&record)?;
    Ok(ExitCode::SUCCESS)
}

/// Waits for the duration, a signal or the stop condition; says which.
async fn wait(chaos: &Chaos, duration: Duration, stop_on: Option<&str>) -> String {
    let deadline = tokio::time::Instant::now() + duration;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    loop {
        let tick = tokio::time::sleep(
            Duration::from_secs(5)
                .min(deadline.saturating_duration_since(tokio::time::Instant::now())),
        );
        tokio::select! {
            _ = tick => {}
            _ = tokio::signal::ctrl_c() => return "interrupted".into(),
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {
                return "terminated".into();
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return "duration over".into();
        }
        if let Some(name) = stop_on {
            match chaos.alarm_state(name).await {
                Ok(AlarmState::Alarm) => {
                    return format!("stop condition: alarm {name} is in ALARM");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(alarm = name, error = %e, "cannot read the stop-condition alarm")
                }
            }
        }
    }
}

fn print_outcome(o: &Reverted) {
    match o {
        Reverted::Restored { changes } => {
            for c in changes {
                println!("  restored: {c}");
            }
        }
        Reverted::Superseded { why } => println!("  left as it is: {why}"),
        Reverted::NothingToDo { why } => println!("  nothing to undo: {why}"),
    }
}

/// `healer chaos revert [ID…]`.
async fn revert(chaos: &Chaos, journal: &Journal, ids: &[String]) -> anyhow::Result<ExitCode> {
    let all = journal.list()?;
    let chosen: Vec<Experiment> = if ids.is_empty() {
        all.into_iter()
            .filter(|e| e.state == ExperimentState::Active)
            .collect()
    } else {
        let mut v = Vec::new();
        for id in ids {
            match journal.get(id)? {
                Some(e) => v.push(e),
                None => anyhow::bail!("no experiment {id} in the journal"),
            }
        }
        v
    };
    if chosen.is_empty() {
        println!("no active experiment to revert");
    }
    let mut ok = true;
    for mut e in chosen {
        if let ExperimentState::Reverted { at, .. } = &e.state {
            println!("{}: already reverted at {at}", e.id);
            continue;
        }
        println!("{}: reverting {}", e.id, e.fault.name());
        match chaos.revert(&e.undo).await {
            Ok(outcome) => {
                print_outcome(&outcome);
                e.state = ExperimentState::Reverted {
                    at: Utc::now(),
                    outcome,
                };
                journal.save(&e)?;
            }
            Err(err) => {
                eprintln!("error: {}: {err} (still active; run revert again)", e.id);
                ok = false;
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `healer chaos list`.
fn list(journal: &Journal, json: bool) -> anyhow::Result<ExitCode> {
    for e in journal.list()? {
        if json {
            println!("{}", serde_json::to_string(&e)?);
            continue;
        }
        let state = match &e.state {
            ExperimentState::Active => format!("active, revert at {}", e.revert_at),
            ExperimentState::Reverted { at, .. } => format!("reverted at {at}"),
        };
        println!("{}  {}  {}  {state}", e.id, e.fault.name(), e.target);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_in_seconds_minutes_and_hours() {
        assert_eq!(duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(duration("5"), Ok(Duration::from_secs(5)));
        assert!(duration("0s").is_err());
        assert!(duration("ten").is_err());
        assert!(duration("5d").is_err());
    }
}
