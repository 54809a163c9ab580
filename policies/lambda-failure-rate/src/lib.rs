//! Example policy `lambda-failure-rate`, after the fragile-Lambda seed.
//!
//! function-errors → set the function's `FAILURE_RATE` environment variable to
//! `0` (variable and value configurable) and notify; recovery is the alarm's OK.

use healer_sdk::*;

/// The policy.
pub struct LambdaFailureRate;

impl Policy for LambdaFailureRate {
    fn metadata() -> Metadata {
        Metadata::new("lambda-failure-rate", "1.0.0")
            .handles([IncidentKind::FunctionErrors])
            .proposes([ActionKind::UpdateFunctionConfig, ActionKind::Notify])
            .config(
                "variable",
                "Environment variable that injects failures",
                Some("FAILURE_RATE"),
            )
            .config("value", "Value that turns failures off", Some("0"))
    }

    fn decide(incident: &Incident, ctx: &Context) -> Result<Decision, String> {
        if incident.resource.kind != ResourceKind::LambdaFunction {
            return Err(format!(
                "expected a lambda-function resource, got {:?}",
                incident.resource.kind
            ));
        }
        let function = incident.resource.id.as_str();
        let var = ctx.config_or("variable", "FAILURE_RATE");
        let value = ctx.config_or("value", "0");
        Ok(Decision::new(format!("Set {var}={value} on {function}."))
            .step(
                Action::update_function_env(function, &[(var, value)]),
                format!("The function's error alarm fired; {var} injects failures."),
            )
            .step(
                Action::notify(
                    format!("Lambda {function} errors: set {var}={value}"),
                    incident.reason.clone(),
                ),
                "Tell humans what healer changed.",
            )
            .verify(VerifyMethod::RecoverySignal, 300))
    }
}

export_policy!(LambdaFailureRate);

#[cfg(test)]
mod tests {
    use super::*;
    use healer_sdk::testing::{self, incident};

    #[test]
    fn errors_reset_the_failure_rate() {
        let inc = incident(
            IncidentKind::FunctionErrors,
            ResourceKind::LambdaFunction,
            "fragile",
        );
        let d = testing::decide::<LambdaFailureRate>(&inc, &Context::empty()).unwrap();
        match &d.steps[0].action {
            Action::UpdateFunctionConfig(f) => {
                assert_eq!(f.function_name, "fragile");
                assert_eq!(f.environment[0].key, "FAILURE_RATE");
                assert_eq!(f.environment[0].value, "0");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(d.steps[1].action.kind(), ActionKind::Notify);
    }

    #[test]
    fn variable_is_configurable() {
        let inc = incident(
            IncidentKind::FunctionErrors,
            ResourceKind::LambdaFunction,
            "f",
        );
        let ctx = Context::empty()
            .with_config("variable", "CHAOS")
            .with_config("value", "off");
        let d = testing::decide::<LambdaFailureRate>(&inc, &ctx).unwrap();
        assert!(d.summary.contains("CHAOS=off"));
    }
}
