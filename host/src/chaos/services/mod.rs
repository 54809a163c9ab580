//! The faults, one module per AWS service: each reads (preview), changes
//! (apply) and puts back (revert) through the service's own API.

mod alarms;
mod ecs;
mod instance;
mod lambda;

pub(super) use alarms::{alarm_state, set_alarm};

use super::{Chaos, ChaosError, Fault, Injected, Preview, Undo};

impl Chaos {
    /// Carries out `fault` as `preview` read it. `journal` is told of every
    /// change to the undo before the change it covers.
    pub(super) async fn apply(
        &self,
        fault: &Fault,
        experiment: &str,
        preview: Preview,
        journal: &mut dyn FnMut(&Undo) -> Result<(), ChaosError>,
    ) -> Result<Injected, ChaosError> {
        match fault {
            Fault::LambdaFailureRate { function, rate } => {
                self.apply_failure_rate(function, rate, experiment, preview)
                    .await
            }
            Fault::StopTask { cluster, .. } => self.apply_stop(cluster, experiment, preview).await,
            Fault::BadDeployment { cluster, service } => {
                self.apply_deployment(cluster, service, preview, journal)
                    .await
            }
            Fault::ImpairInstance { .. } | Fault::Alarm { .. } => {
                self.apply_alarms(experiment, preview).await
            }
            Fault::UnhealthyTarget { .. } => self.apply_unhealthy(preview).await,
        }
    }
}
