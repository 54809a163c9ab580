//! The dry-run executor: records the exact calls the real executor of a step
//! would send, and sends nothing. It is what every approved step runs through
//! unless live mode is configured.

use async_trait::async_trait;

use super::{ExecOutcome, Execution, Executor, Executors, PlannedCall, StepRequest};
use crate::decision::ActionKind;

/// Plans through the real executors, executes nothing.
#[derive(Debug)]
pub struct DryRun(pub Executors);

#[async_trait]
impl Executor for DryRun {
    fn handles(&self, kind: ActionKind) -> bool {
        self.0.of(kind).is_some()
    }

    fn plan(&self, req: &StepRequest<'_>) -> Vec<PlannedCall> {
        self.0
            .of(req.action.kind())
            .map(|e| e.plan(req))
            .unwrap_or_default()
    }

    async fn execute(&self, req: &StepRequest<'_>) -> Execution {
        Execution {
            outcome: ExecOutcome::DryRun,
            calls: self.plan(req),
            request_ids: Vec::new(),
            created: Vec::new(),
            note: None,
            command: None,
        }
    }
}
