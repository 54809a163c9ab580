//! `healer revert ID`: undoes what an incident's steps changed that can be
//! undone: a `update-function-config` step's variables are restored to the
//! values the step recorded (and the ones it added removed). Prints what it
//! would do unless `--live`.

use std::process::ExitCode;

use clap::Args;
use healer::actions::{LambdaExecutor, PreviousEnvironment};
use healer::decision::Action;
use healer::incident::IncidentId;
use healer::store::Outcome;

use super::store::StoreArgs;

/// Arguments of `revert`.
#[derive(Debug, Args)]
pub struct RevertArgs {
    /// Incident id (`inc-…`).
    id: String,
    /// Send the calls (default: print what would be restored).
    #[arg(long)]
    live: bool,
    #[command(flatten)]
    store: StoreArgs,
}

/// Runs `revert`.
pub fn run(a: RevertArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let store = a.store.open().await?;
        let id = IncidentId::from_stored(&a.id);
        let Some(record) = store.get(&id).await? else {
            anyhow::bail!("incident {id} not found");
        };
        let lambda = LambdaExecutor::new(&healer::aws::action_config(
            &healer::aws::sdk_config().await,
        ));
        let mut reverted = 0;
        let mut ok = true;
        for step in record
            .steps
            .iter()
            .rev()
            .filter(|s| s.result == Outcome::Succeeded)
        {
            let Action::UpdateFunctionConfig { function_name, .. } = &step.action else {
                continue;
            };
            let Some(previous) = step
                .note
                .as_deref()
                .and_then(PreviousEnvironment::from_note)
            else {
                eprintln!(
                    "step {}: no previous values recorded; nothing to restore",
                    step.index
                );
                continue;
            };
            reverted += 1;
            if !a.live {
                println!(
                    "step {}: would restore {function_name}: {:?} (dry run; --live to send)",
                    step.index, previous.0
                );
                continue;
            }
            let e = lambda.restore(function_name, &previous).await;
            println!(
                "step {}: {:?} {}",
                step.index,
                e.outcome,
                e.note.unwrap_or_default()
            );
            ok &= e.outcome == healer::actions::ExecOutcome::Succeeded;
        }
        if reverted == 0 {
            println!("incident {id}: no step that can be reverted (update-function-config)");
        }
        Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}
