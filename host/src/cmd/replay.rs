//! `healer replay`: a candidate policy on the exact inputs of the recorded
//! decisions, beside what was decided. Writes nothing; exits 1 when the gate
//! (`--fail-on`, and determinism always) fails.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use healer::replay::{CaseReport, Comparison, Counts, FailOn, PlanDiff, Selection, Summary};

use super::policy::EngineArgs;
use super::read_input;
use super::store::StoreArgs;

/// Arguments of `replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The candidate policy component (`.wasm`).
    #[arg(long)]
    policy: PathBuf,
    /// Compare with the decisions of the policy of this name [default: the
    /// candidate's own name, i.e. its earlier versions].
    #[arg(long)]
    against: Option<String>,
    #[command(flatten)]
    select: SelectArgs,
    /// Print one JSON object (`cases`, `summary`) instead of text.
    #[arg(long)]
    json: bool,
    /// Exit 1 when any decision is of this sort (repeatable):
    /// `changed` (a different plan), `errors` (a new error or trap),
    /// `denied-more` (the governor would deny more of the candidate's steps
    /// than of the recorded plan's; implies `--verdicts`). A recorded version
    /// that does not reproduce its decisions always fails.
    #[arg(long, value_enum, value_delimiter = ',')]
    fail_on: Vec<FailOn>,
    #[command(flatten)]
    judge: JudgeArgs,
    /// Replay on raw AWS events (files or directories of `.json`, as
    /// `decide` takes) instead of the store's recorded decisions: `--baseline`
    /// decides each incident and stands for what was recorded.
    #[arg(long, num_args = 1.., requires = "baseline", conflicts_with_all = ["against", "since", "until", "kind"])]
    events: Vec<PathBuf>,
    /// With `--events`: the version to compare the candidate with (today's
    /// active one, say).
    #[arg(long, requires = "events")]
    baseline: Option<PathBuf>,
    /// Print the MTTR backtest: the recorded MTTR of the healed incidents
    /// the candidate plans the same, and how many it plans differently
    /// (their MTTR unknown). Always in `--json`.
    #[arg(long)]
    mttr: bool,
    /// Decisions run at once.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    store: StoreArgs,
}

/// The governor on replayed or shadow plans.
#[derive(Debug, Args)]
pub struct JudgeArgs {
    /// Judge both plans of every incident with the governor, against the
    /// store as it was when the incident was decided (its actions before
    /// then, in the governor's window): what would have been approved,
    /// denied and why. One store read per incident.
    #[arg(long)]
    verdicts: bool,
    /// Governor limits JSON the plans are judged under (as `decide
    /// --governor`) [default: the defaults].
    #[arg(long, env = "HEALER_GOVERNOR")]
    governor: Option<PathBuf>,
    /// Resource facts JSON (as `decide --facts`): the store keeps no facts,
    /// so the rules that need tags or group sizes see these.
    #[arg(long)]
    facts: Option<PathBuf>,
}

impl JudgeArgs {
    /// The governor and facts, when judging.
    fn load(
        &self,
        on: bool,
    ) -> anyhow::Result<Option<(healer::safety::Governor, healer::safety::Facts)>> {
        if !on {
            return Ok(None);
        }
        let governor = healer::safety::Governor::new(super::load_json(
            self.governor.as_deref(),
            "governor config",
        )?);
        let facts = healer::safety::Facts(super::load_json(self.facts.as_deref(), "facts")?);
        Ok(Some((governor, facts)))
    }
}

/// Which recorded incidents to read.
#[derive(Debug, Args)]
pub struct SelectArgs {
    /// Only incidents detected at or after (RFC 3339).
    #[arg(long)]
    since: Option<DateTime<Utc>>,
    /// Only incidents detected before (RFC 3339).
    #[arg(long)]
    until: Option<DateTime<Utc>>,
    /// Only this incident kind (e.g. task-crashed).
    #[arg(long)]
    kind: Option<String>,
}

impl SelectArgs {
    fn selection(&self) -> anyhow::Result<Selection> {
        Ok(Selection {
            kind: self.kind.as_deref().map(super::incident_kind).transpose()?,
            since: self.since,
            until: self.until,
        })
    }
}

/// `healer shadow …`.
#[derive(Debug, Subcommand)]
pub enum ShadowCommand {
    /// How a policy's shadow version's recorded decisions compare with its
    /// active version's on the same incidents: agreement by kind, and each
    /// difference.
    Report(ShadowReportArgs),
}

/// Arguments of `shadow report`.
#[derive(Debug, Args)]
pub struct ShadowReportArgs {
    /// The policy name.
    name: String,
    #[command(flatten)]
    select: SelectArgs,
    /// Print one JSON object (`cases`, `summary`) instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    judge: JudgeArgs,
    #[command(flatten)]
    store: StoreArgs,
}

/// Runs `shadow report`.
pub fn run_shadow(cmd: ShadowCommand) -> anyhow::Result<ExitCode> {
    let ShadowCommand::Report(a) = cmd;
    let selection = a.select.selection()?;
    let judge = a.judge.load(a.judge.verdicts)?;
    let runtime = runtime()?;
    let (reports, summary) = runtime.block_on(async {
        let store = a.store.open().await?;
        let judge = judge.as_ref().map(|(g, f)| (g, f));
        healer::replay::shadow_report(store.as_ref(), &selection, &a.name, judge)
            .await
            .context("cannot read the recorded decisions")
    })?;
    if a.json {
        print_json(&reports, &summary)?;
    } else {
        let c = &summary.candidate;
        println!(
            "shadow {} {} beside the active decisions of {} on {} incidents: {:.0}% the same plan",
            c.name,
            c.version,
            a.name,
            summary.counts.total,
            summary.counts.percent(summary.counts.same)
        );
        print_cases(&reports, &summary, &a.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `replay`.
pub fn run(a: ReplayArgs) -> anyhow::Result<ExitCode> {
    let threads = a.threads.clamp(1, 64);
    let engine = a.engine.engine(u32::try_from(threads).unwrap_or(64))?;
    let bytes = read_input(&a.policy)?;
    let candidate = engine
        .load(&bytes)
        .with_context(|| format!("cannot load policy {}", a.policy.display()))?;
    let selection = a.select.selection()?;
    let against = a
        .against
        .clone()
        .unwrap_or_else(|| candidate.id.name.clone());
    let judge = a
        .judge
        .load(a.judge.verdicts || a.fail_on.contains(&FailOn::DeniedMore))?;
    if !a.events.is_empty() {
        return run_events(&a, &engine, &candidate);
    }
    let runtime = runtime()?;
    let (reports, summary) = runtime.block_on(async {
        let store = a.store.open().await?;
        healer::replay::run(
            store.as_ref(),
            &engine,
            &candidate,
            &selection,
            &against,
            threads,
            judge.as_ref().map(|(g, f)| (g, f)),
        )
        .await
        .context("cannot read the recorded decisions")
    })?;
    if a.json {
        print_json(&reports, &summary)?;
    } else {
        print_text(&reports, &summary, &against, None);
        if a.mttr {
            print_mttr(&summary.mttr);
        }
    }
    let failures = summary.failures(&a.fail_on);
    if failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("error: replay gate failed: {}", failures.join("; "));
    Ok(ExitCode::FAILURE)
}

fn print_mttr(m: &healer::replay::MttrBacktest) {
    let secs = |ms: Option<i64>| {
        ms.map_or_else(|| "-".to_owned(), |v| format!("{:.1} s", v as f64 / 1000.0))
    };
    println!(
        "MTTR backtest: {} replayed incidents healed in the record (MTTR p50 {}); the candidate plans {} \
         of them the same (recorded MTTR p50 {}) and {} differently (MTTR unknown: not estimated)",
        m.healed,
        secs(m.recorded_p50_ms),
        m.known,
        secs(m.known_p50_ms),
        m.unknown
    );
}

/// `replay --events`: the baseline and the candidate on the incidents the
/// events normalize to, nothing read from or written to the store.
fn run_events(
    a: &ReplayArgs,
    engine: &healer::policy::PolicyEngine,
    candidate: &healer::policy::LoadedPolicy,
) -> anyhow::Result<ExitCode> {
    let path = a
        .baseline
        .as_ref()
        .context("--events needs --baseline OLD.wasm: nothing recorded to compare with")?;
    if a.judge.verdicts || a.fail_on.contains(&FailOn::DeniedMore) || a.mttr {
        anyhow::bail!(
            "--verdicts, --fail-on denied-more and --mttr read the store's history: not with --events"
        );
    }
    let baseline = engine
        .load(&read_input(path)?)
        .with_context(|| format!("cannot load baseline {}", path.display()))?;
    let mut files = Vec::new();
    super::decide::expand(&a.events, &mut files)?;
    let mut incidents = Vec::new();
    for file in &files {
        let signals = read_input(file)
            .and_then(|b| super::decide::signals_of(&b, usize::MAX))
            .with_context(|| format!("cannot read {}", file.display()))?;
        incidents.extend(signals.into_iter().filter_map(|(s, _)| match s {
            healer::signals::Signal::Incident(i) => Some(i),
            _ => None,
        }));
    }
    let (cases, skipped) = healer::replay::cases_of(engine, &baseline, &incidents);
    let started = std::time::Instant::now();
    let reports = healer::replay::replay(engine, candidate, &cases, a.threads.clamp(1, 64));
    let summary = Summary::of(&candidate.id, &reports, skipped, started.elapsed());
    if a.json {
        print_json(&reports, &summary)?;
    } else {
        print_text(&reports, &summary, &baseline.id.name, Some(files.len()));
    }
    let failures = summary.failures(&a.fail_on);
    if failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("error: replay gate failed: {}", failures.join("; "));
    Ok(ExitCode::FAILURE)
}

/// The whole report as one JSON object: `{"cases": [...], "summary": {...}}`.
fn print_json(reports: &[CaseReport], summary: &Summary) -> anyhow::Result<()> {
    let out = serde_json::json!({ "cases": reports, "summary": summary });
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}

fn print_text(reports: &[CaseReport], summary: &Summary, against: &str, events: Option<usize>) {
    let c = &summary.candidate;
    let of = match events {
        Some(files) => format!("incidents of {files} event files, beside baseline {against}"),
        None => format!("recorded decisions of {against}"),
    };
    println!(
        "{} {} ({}) on {} {of}",
        c.name,
        c.version,
        c.sha256.get(..12).unwrap_or(&c.sha256),
        summary.counts.total
    );
    print_cases(reports, summary, against);
}

/// The cases that differ, the counts by kind, fuel and latency compared.
fn print_cases(reports: &[CaseReport], summary: &Summary, against: &str) {
    for r in reports {
        if let Some(line) = case_line(r) {
            println!("{line}");
        }
    }
    println!(
        "{:<24} {:>6} {:>11} {:>11} {:>11} {:>12} {:>11}",
        "KIND", "TOTAL", "SAME", "CHANGED", "NEW-ERRORS", "STILL-ERRORS", "NOT-HANDLED"
    );
    for (kind, counts) in &summary.by_kind {
        println!("{}", counts_row(kind.as_str(), counts));
    }
    println!("{}", counts_row("all", &summary.counts));
    println!(
        "fuel mean {} -> {}; decision p50 {} us -> {} us",
        summary.fuel_mean.recorded,
        summary.fuel_mean.candidate,
        summary.duration_p50_us.recorded,
        summary.duration_p50_us.candidate,
    );
    if summary.decisions_per_s > 0.0 {
        println!("replayed at {:.0} decisions/s", summary.decisions_per_s);
    }
    let own = reports.iter().filter(|r| r.deterministic.is_some()).count();
    if own > 0 {
        println!(
            "determinism: {} of {own} decisions of this version reproduced exactly",
            own - summary.determinism_failures
        );
    }
    if let Some(d) = &summary.denied {
        println!(
            "governor (each plan judged against the store at its decision; facts from --facts): \
             {} -> {} steps denied; {} incidents with more denied",
            d.recorded, d.candidate, summary.denied_more
        );
    }
    let s = &summary.skipped;
    if s.not_decided_by + s.missing_input > 0 {
        println!(
            "skipped: {} incidents not decided by {against}, {} decisions without a stored input",
            s.not_decided_by, s.missing_input
        );
    }
}

fn counts_row(label: &str, c: &Counts) -> String {
    let pct = |n: usize| format!("{n} ({:.0}%)", c.percent(n));
    format!(
        "{label:<24} {:>6} {:>11} {:>11} {:>11} {:>12} {:>11}",
        c.total,
        pct(c.same),
        pct(c.changed),
        pct(c.new_errors),
        pct(c.still_errors),
        pct(c.not_handled)
    )
}

/// One line for a decision that is not the same (and for one of the
/// candidate's own version that did not reproduce).
fn case_line(r: &CaseReport) -> Option<String> {
    let what = match &r.comparison {
        Comparison::Same if r.deterministic == Some(false) => {
            "NOT-REPRODUCED the summary differs".to_owned()
        }
        Comparison::Same | Comparison::NotHandled => return None,
        Comparison::Changed(d) => format!("CHANGED {}", describe(d)),
        Comparison::NewError { error } => format!("NEW-ERROR {error}"),
        Comparison::Fixed { was } => format!("FIXED was: {was}"),
        Comparison::StillError { error } => format!("STILL-ERROR {error}"),
    };
    let reproduced = if r.deterministic == Some(false) {
        format!(" [determinism failure, input {}]", r.input_hash)
    } else {
        String::new()
    };
    Some(format!(
        "{} {} (was {} {}): {what}{reproduced}{}",
        r.incident,
        r.kind,
        r.recorded.name,
        r.recorded.version,
        governor_note(r)
    ))
}

/// The governor's verdicts on the candidate's plan, when judged: each step
/// it would not approve, with the rule and reason, and the denials compared.
fn governor_note(r: &CaseReport) -> String {
    let Some(v) = &r.verdicts else {
        return String::new();
    };
    let held: Vec<String> = v
        .candidate
        .iter()
        .filter(|s| !s.verdict.is_approved())
        .map(|s| {
            let why = serde_json::to_value(&s.verdict)
                .ok()
                .and_then(|j| j.get("reason").and_then(|r| r.as_str()).map(str::to_owned))
                .unwrap_or_default();
            let rule = s.verdict.rule().map(|r| r.as_str()).unwrap_or_default();
            format!(
                "step {} {} {} ({rule}): {why}",
                s.step,
                s.action,
                s.verdict.kind()
            )
        })
        .collect();
    let (was, now) = (
        healer::replay::denied(&v.recorded),
        healer::replay::denied(&v.candidate),
    );
    if held.is_empty() && was == 0 {
        return " | governor: every step approved".to_owned();
    }
    format!(
        " | governor: {was} -> {now} steps denied{}{}",
        if held.is_empty() { "" } else { "; " },
        held.join("; ")
    )
}

fn describe(d: &PlanDiff) -> String {
    let mut parts = Vec::new();
    for (i, step) in &d.added {
        parts.push(format!("+ step {i} {}", step_name(step)));
    }
    for (i, step) in &d.removed {
        parts.push(format!("- step {i} {}", step_name(step)));
    }
    for change in &d.changed {
        let fields: Vec<String> = change
            .fields
            .iter()
            .map(|f| format!("{} {} -> {}", f.field, f.from, f.to))
            .collect();
        parts.push(format!("step {}: {}", change.index, fields.join(", ")));
    }
    for field in &d.fields {
        parts.push(format!("{field} differs"));
    }
    parts.join("; ")
}

fn step_name(step: &serde_json::Value) -> String {
    step.get("action")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("step")
        .to_owned()
}

/// A one-worker multi-thread runtime: the SQLite store's reads then run in
/// place instead of each hopping to a blocking thread.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?)
}
