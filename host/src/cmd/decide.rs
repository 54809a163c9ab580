//! `healer decide`: load a directory of policies, normalize each input (a raw AWS
//! payload, or incident JSON), let every policy that handles each incident decide
//! on it, and record incidents, decisions and recoveries in the store. Nothing is
//! executed: this shows the plans.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::Utc;
use clap::Args;
use healer::Incident;
use std::collections::BTreeMap;

use healer::Decision;
use healer::pipeline::{Pipeline, Plan, Recorded};
use healer::policy::PolicyContext;
use healer::safety::{
    AwsFacts, Governor, GovernorConfig, Layered, ResourceFacts, StaticFacts, Verdict,
};
use healer::signals::{DEFAULT_MAX_SIGNALS, NormalizeOptions, Signal, normalize};

use super::policy::EngineArgs;
use super::store::StoreArgs;
use super::{dry_run_only, load_json, load_policies, read_input};

/// Arguments of `decide`.
#[derive(Debug, Args)]
pub struct DecideArgs {
    /// Directory of policy components (`*.wasm`) [default: the example
    /// policies built into the binary].
    #[arg(long, env = "HEALER_POLICIES")]
    policies: Option<PathBuf>,
    /// Context JSON applied to every incident.
    #[arg(long)]
    context: Option<PathBuf>,
    /// Raw AWS payloads or incident JSON files, or directories of them
    /// (searched recursively for `*.json`); `-` reads stdin.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Print one readable line per signal instead of JSON.
    #[arg(long)]
    text: bool,
    /// Do not record incidents, decisions and recoveries in the store.
    #[arg(long)]
    no_record: bool,
    /// Governor limits JSON (`GovernorConfig`, kebab-case; every field optional).
    #[arg(long, env = "HEALER_GOVERNOR")]
    governor: Option<PathBuf>,
    #[command(flatten)]
    inline: super::InlineJson,
    /// Resource facts JSON: `{"<resource id or group id>": {"tags": {...},
    /// "group-size": 6}}`. Each entry is about that resource only (a group's
    /// tags are not its members'); it overrides what `--aws-facts` reads.
    #[arg(long)]
    facts: Option<PathBuf>,
    /// `plan` only: judge this decision JSON (`{"steps": [...], "summary":
    /// ...}`, as `healer policy eval` prints it) as if the active policy had
    /// proposed it (and declared its kinds): what would the governor say to
    /// this plan?
    #[arg(long)]
    propose: Option<PathBuf>,
    /// Read resource facts (EC2 instance tags, ECS service / Auto Scaling group
    /// / target group size) from the AWS APIs, with the standard AWS environment
    /// (`AWS_REGION`, `AWS_ENDPOINT_URL`, credentials). Without facts, the rules
    /// that need them (opt-in tag, blast radius) deny.
    #[arg(long, env = "HEALER_AWS_FACTS")]
    aws_facts: bool,
    /// Most signals one input yields; the rest are reported as truncated (one
    /// line and a warning on stderr), not decided.
    #[arg(long, env = "HEALER_MAX_SIGNALS_PER_PAYLOAD", default_value_t = DEFAULT_MAX_SIGNALS,
        value_parser = super::signal_cap)]
    max_signals_per_payload: usize,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    store: StoreArgs,
}

pub(super) fn expand(inputs: &[PathBuf], out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for input in inputs {
        if input.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(input)
                .with_context(|| format!("cannot read {}", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir() || p.extension().is_some_and(|x| x == "json"))
                .collect();
            entries.sort();
            expand(&entries, out)?;
        } else {
            out.push(input.clone());
        }
    }
    Ok(())
}

/// Incident JSON (has `kind` and `resource`) is taken as is; anything else is a
/// raw payload for the normalizer.
pub(super) fn signals_of(
    bytes: &[u8],
    max_signals: usize,
) -> anyhow::Result<Vec<(Signal, String)>> {
    let looks_like_incident = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .is_some_and(|v| v.get("kind").is_some() && v.get("resource").is_some());
    if looks_like_incident {
        return Ok(vec![(
            Signal::Incident(Incident::from_json(bytes)?),
            String::new(),
        )]);
    }
    let mut opts = NormalizeOptions::new(Utc::now());
    opts.max_signals = max_signals;
    Ok(normalize(bytes, &opts)?
        .into_iter()
        .map(|n| (n.signal, n.path))
        .collect())
}

fn recorded_text(recorded: Option<&Recorded>) -> String {
    match recorded {
        None => String::new(),
        Some(Recorded::New(r)) => format!(" [recorded {} {}]", r.incident.id, r.state),
        Some(Recorded::Resumed(r)) => format!(" [resumed {} {}]", r.incident.id, r.state),
        Some(Recorded::Duplicate(r)) => {
            format!(
                " [duplicate of {} ({}), not decided again]",
                r.incident.id, r.state
            )
        }
        Some(Recorded::Healed(rs)) if rs.is_empty() => " [no open incident to heal]".to_owned(),
        Some(Recorded::Healed(rs)) => {
            let healed: Vec<String> = rs
                .iter()
                .map(|r| {
                    let mttr = r.mttr_ms.map_or(0.0, |m| m as f64 / 1000.0);
                    format!("{} (MTTR {mttr:.0}s)", r.incident.id)
                })
                .collect();
            format!(" [healed {}]", healed.join(", "))
        }
    }
}

fn verdicts_text(plan: &Plan) -> String {
    let Some(j) = &plan.judgement else {
        return String::new();
    };
    let parts: Vec<String> = j
        .verdicts
        .iter()
        .map(|v| match &v.verdict {
            Verdict::Approved => format!("{} approved", v.action),
            Verdict::Denied { rule, reason, .. } => {
                format!("{} denied by {rule} ({reason})", v.action)
            }
            Verdict::PendingApproval { .. } => format!("{} awaits approval", v.action),
        })
        .collect();
    let mut s = if parts.is_empty() {
        " | governor: no step to judge".to_owned()
    } else {
        format!(" | governor: {}", parts.join("; "))
    };
    if plan.storm_notice {
        s.push_str(" | storm notice sent");
    }
    s
}

fn text_line(input: &str, signal: &Signal, plan: Option<&Plan>) -> String {
    match (signal, plan) {
        (Signal::Incident(i), Some(plan)) => {
            let d = &plan.decisions;
            let mut line = format!("{input}: {} {}", i.kind, i.resource.id);
            if d.active.is_empty() {
                line.push_str(" -> no policy handles it");
            }
            for o in &d.active {
                match &o.result {
                    Ok(dec) => {
                        let steps: Vec<_> =
                            dec.steps.iter().map(|s| s.action.kind().as_str()).collect();
                        line.push_str(&format!(
                            " -> {} {}: [{}] {} ({} fuel, {} us)",
                            o.policy.name,
                            o.policy.version,
                            steps.join(", "),
                            dec.summary,
                            o.fuel_used,
                            o.duration.as_micros()
                        ));
                    }
                    Err(e) => line.push_str(&format!(" -> {} failed: {e}", o.policy.name)),
                }
            }
            line.push_str(&verdicts_text(plan));
            line
        }
        (Signal::Recovery(r), _) => {
            format!("{input}: recovery of {} {}", r.resource.kind, r.resource.id)
        }
        (Signal::Subscription(s), _) => format!("{input}: SNS {} for {}", s.kind, s.topic_arn),
        (Signal::Ignored { reason }, _) => format!("{input}: ignored: {reason}"),
        (Signal::Truncated { dropped, limit }, _) => {
            format!(
                "{input}: truncated: {dropped} more signals past the limit of {limit}, not decided"
            )
        }
        (Signal::Incident(i), None) => format!("{input}: {} {}", i.kind, i.resource.id),
    }
}

/// A proposed decision, refusing fields the decision does not use: an action's
/// fields are flattened into its step, where serde would drop a misspelled one
/// silently (a `task-definition` for `task_definition` would roll back to the
/// previous revision instead).
fn proposed_decision(bytes: &[u8]) -> anyhow::Result<Decision> {
    let given: serde_json::Value = serde_json::from_slice(bytes)?;
    let decision: Decision = serde_json::from_value(given.clone())?;
    let used = serde_json::to_value(&decision)?;
    let steps = |v: &serde_json::Value| v["steps"].as_array().cloned().unwrap_or_default();
    for (i, (g, u)) in steps(&given).iter().zip(steps(&used)).enumerate() {
        let unused: Vec<&String> = g
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys())
            .filter(|k| u.get(k.as_str()).is_none())
            .collect();
        if !unused.is_empty() {
            anyhow::bail!("step {i}: unknown or unused fields {unused:?}");
        }
    }
    Ok(decision)
}

/// Runs `decide` (recording) or `plan` (`record = false`: reads the store's
/// state, writes nothing); exit 1 if any input, policy or store call failed.
pub fn run(a: DecideArgs, record: bool) -> anyhow::Result<ExitCode> {
    let record = record && !a.no_record;
    let context: PolicyContext = super::file_or_inline(
        a.context.as_deref(),
        a.inline.context_json.as_deref(),
        "context",
    )?;
    let operator: BTreeMap<String, ResourceFacts> = load_json(a.facts.as_deref(), "facts")?;
    let proposed: Option<Decision> = match &a.propose {
        Some(_) if record => {
            anyhow::bail!("--propose is for `healer plan`: nothing proposed is recorded")
        }
        Some(p) => Some(
            proposed_decision(&read_input(p)?)
                .with_context(|| format!("invalid proposed decision JSON in {}", p.display()))?,
        ),
        None => None,
    };
    let governor_config: GovernorConfig = super::file_or_inline(
        a.governor.as_deref(),
        a.inline.governor_json.as_deref(),
        "governor config",
    )?;
    dry_run_only(&governor_config)?;
    let governor = Governor::new(governor_config);
    let (registry, report) = load_policies(a.engine.engine(4)?, a.policies.as_deref())?;
    a.engine.route(&registry);
    let mut ok = report.failed.is_empty();
    let mut paths = Vec::new();
    expand(&a.inputs, &mut paths)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let store = runtime.block_on(a.store.open())?;
    let facts = Layered {
        aws: if a.aws_facts {
            // The shared config: per-call timeouts on every facts client.
            Some(AwsFacts::new(runtime.block_on(healer::aws::sdk_config())))
        } else {
            None
        },
        operator: StaticFacts(operator),
    };
    let pipeline = Pipeline {
        store: store.as_ref(),
        registry: &registry,
        governor: &governor,
        facts: &facts,
    };
    for path in paths {
        let input = path.display().to_string();
        let signals =
            match read_input(&path).and_then(|b| signals_of(&b, a.max_signals_per_payload)) {
                Ok(s) => s,
                Err(e) => {
                    ok = false;
                    println!(
                        "{}",
                        serde_json::json!({"input": input, "error": format!("{e:#}")})
                    );
                    eprintln!("error: {input}: {e:#}");
                    continue;
                }
            };
        for (signal, signal_path) in signals {
            if let Signal::Truncated { dropped, limit } = signal {
                eprintln!(
                    "warning: {input}: {dropped} signals past the limit of {limit} were not decided (--max-signals-per-payload)"
                );
            }
            let now = Utc::now();
            let result = match &signal {
                Signal::Incident(i) if record => runtime
                    .block_on(pipeline.on_incident(i, &context, now))
                    .map(|(p, r)| (p, Some(r))),
                Signal::Incident(i) => runtime
                    .block_on(pipeline.plan_with(i, &context, proposed.as_ref(), now))
                    .map(|p| (Some(p), None))
                    .map_err(Into::into),
                Signal::Recovery(r) if record => runtime
                    .block_on(pipeline.on_recovery(r))
                    .map(|r| (None, Some(r)))
                    .map_err(Into::into),
                _ => Ok((None, None)),
            };
            // A store failure loses nothing silently: it is reported for this
            // signal and the next one is still processed.
            let (plan, recorded) = match result {
                Ok(v) => v,
                Err(e) => {
                    ok = false;
                    println!(
                        "{}",
                        serde_json::json!({"input": input, "path": signal_path, "error": e.to_string()})
                    );
                    eprintln!("error: {input}: {e}");
                    continue;
                }
            };
            ok &= !plan
                .as_ref()
                .is_some_and(|p| p.decisions.active.iter().any(|o| o.result.is_err()));
            if a.text {
                println!(
                    "{}{}",
                    text_line(&input, &signal, plan.as_ref()),
                    recorded_text(recorded.as_ref())
                );
            } else {
                println!(
                    "{}",
                    serde_json::json!({
                        "input": input,
                        "path": signal_path,
                        "signal": signal,
                        "plan": plan,
                        "recorded": recorded,
                        "dry-run": true,
                    })
                );
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposed_decision_refuses_misspelled_fields() {
        let step = |fields: &str| {
            format!(
                r#"{{"summary": "s", "steps": [{{"action": "rollback-deployment", "cluster": "prod", "service": "api", {fields} "reason": "r"}}]}}"#
            )
        };
        let ok =
            proposed_decision(step(r#""task_definition": "api:6","#).as_bytes()).expect("valid");
        assert_eq!(ok.steps.len(), 1);
        let e = proposed_decision(step(r#""task-definition": "miner:1","#).as_bytes())
            .expect_err("misspelled");
        assert!(e.to_string().contains("task-definition"), "{e}");
    }
}
