//! What an executor has done so far in one step: the calls it sent, their
//! AWS request ids and the resources it created, so a step that fails half
//! way reports exactly what it did. Shared by the service executors, with
//! the `send!` macro that sends one request and records it.

use super::{ExecOutcome, Execution, PlannedCall};
use crate::aws::AwsErrorClass;

/// The calls, request ids and created resources of one step so far.
#[derive(Debug, Default)]
pub(super) struct Progress {
    pub(super) calls: Vec<PlannedCall>,
    pub(super) request_ids: Vec<String>,
    pub(super) created: Vec<String>,
}

impl Progress {
    pub(super) fn new() -> Self {
        Progress::default()
    }

    /// Records a call that was sent, with its request id when AWS gave one.
    pub(super) fn sent(&mut self, planned: PlannedCall, request_id: Option<&str>) {
        self.calls.push(planned);
        self.request_ids.extend(request_id.map(str::to_owned));
    }

    /// The failed execution so far, boxed for `Err`.
    pub(super) fn failed(
        &mut self,
        class: AwsErrorClass,
        reason: impl Into<String>,
    ) -> Box<Execution> {
        Box::new(Execution {
            created: std::mem::take(&mut self.created),
            request_ids: std::mem::take(&mut self.request_ids),
            ..Execution::failed(std::mem::take(&mut self.calls), class, reason)
        })
    }

    /// The step ended with `outcome`.
    pub(super) fn end(self, outcome: ExecOutcome, note: String) -> Execution {
        Execution {
            outcome,
            calls: self.calls,
            request_ids: self.request_ids,
            created: self.created,
            note: Some(note),
            command: None,
        }
    }

    /// The step succeeded.
    pub(super) fn done(self, note: String) -> Execution {
        self.end(ExecOutcome::Succeeded, note)
    }
}

/// Sends `$req` and records it in `$progress`; on error, returns
/// `Err(failed execution)` from the enclosing fn, classified.
macro_rules! send {
    ($progress:expr, $planned:expr, $req:expr, $what:literal) => {{
        let planned = $planned;
        match $req.send().await {
            Ok(out) => {
                $progress.sent(planned, out.request_id());
                out
            }
            Err(e) => {
                $progress.calls.push(planned);
                let class = $crate::aws::classify(&e);
                let reason = format!(
                    concat!($what, " failed: {}"),
                    aws_smithy_types::error::display::DisplayErrorContext(&e)
                );
                return Err($progress.failed(class, reason));
            }
        }
    }};
}
pub(super) use send;
