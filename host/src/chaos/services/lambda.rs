//! Lambda: `lambda-failure-rate` sets the function's `FAILURE_RATE`
//! variable (every other variable kept, written with the `RevisionId` read),
//! and revert puts back each variable still holding the value chaos set.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput;
use aws_sdk_lambda::types::Environment;

use super::super::{Chaos, ChaosError, Injected, Preview, Reverted, Undo, aws, opted_in};

/// The variable the fragile-function seed reads.
const VARIABLE: &str = "FAILURE_RATE";

impl Chaos {
    async fn configuration(
        &self,
        function: &str,
    ) -> Result<GetFunctionConfigurationOutput, ChaosError> {
        self.lambda
            .get_function_configuration()
            .function_name(function)
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception())
                {
                    ChaosError::NotFound(format!("no function {function}"))
                } else {
                    aws("lambda:GetFunctionConfiguration")(e)
                }
            })
    }

    pub(in crate::chaos) async fn preview_failure_rate(
        &self,
        function: &str,
        rate: &str,
    ) -> Result<Preview, ChaosError> {
        let conf = self.configuration(function).await?;
        let arn = conf.function_arn().unwrap_or(function).to_owned();
        let tags = self
            .lambda
            .list_tags()
            .resource(&arn)
            .send()
            .await
            .map_err(aws("lambda:ListTags"))?;
        if !opted_in(
            tags.tags()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        ) {
            return Err(ChaosError::NotTagged { resource: arn });
        }
        let before = variables(&conf).get(VARIABLE).cloned();
        Ok(Preview {
            target: arn,
            changes: vec![format!(
                "function {function}: {VARIABLE} {} → {rate}",
                before.as_deref().unwrap_or("(unset)")
            )],
            undo: Undo::FunctionEnvironment {
                function: function.to_owned(),
                previous: BTreeMap::from([(VARIABLE.to_owned(), before)]),
                injected: BTreeMap::from([(VARIABLE.to_owned(), rate.to_owned())]),
            },
        })
    }

    pub(in crate::chaos) async fn apply_failure_rate(
        &self,
        function: &str,
        rate: &str,
        experiment: &str,
        preview: Preview,
    ) -> Result<Injected, ChaosError> {
        let mut set = BTreeMap::new();
        set.insert(VARIABLE.to_owned(), Some(rate.to_owned()));
        self.write_variables(function, &set).await?;
        Ok(Injected {
            target: preview.target,
            undo: preview.undo,
            changes: preview.changes,
            aws_part: self.errors_alarms(function, experiment).await?,
        })
    }

    /// Sets each variable of `set` (`None`: removes it), the others kept,
    /// with the revision read.
    async fn write_variables(
        &self,
        function: &str,
        set: &BTreeMap<String, Option<String>>,
    ) -> Result<(), ChaosError> {
        let conf = self.configuration(function).await?;
        let mut vars = variables(&conf);
        for (k, v) in set {
            match v {
                Some(v) => vars.insert(k.clone(), v.clone()),
                None => vars.remove(k),
            };
        }
        self.lambda
            .update_function_configuration()
            .function_name(function)
            .set_revision_id(conf.revision_id().map(str::to_owned))
            .environment(Environment::builder().set_variables(Some(vars)).build())
            .send()
            .await
            .map_err(aws("lambda:UpdateFunctionConfiguration"))?;
        Ok(())
    }

    pub(in crate::chaos) async fn revert_environment(
        &self,
        function: &str,
        previous: &BTreeMap<String, Option<String>>,
        injected: &BTreeMap<String, String>,
    ) -> Result<Reverted, ChaosError> {
        let conf = match self.configuration(function).await {
            Ok(c) => c,
            Err(ChaosError::NotFound(why)) => return Ok(Reverted::Superseded { why }),
            Err(e) => return Err(e),
        };
        let now = variables(&conf);
        let mut restore = BTreeMap::new();
        let mut left = Vec::new();
        for (k, before) in previous {
            let current = now.get(k);
            if current != injected.get(k) {
                left.push(format!(
                    "{k} is {} now, not what chaos set: left as it is",
                    current.map(String::as_str).unwrap_or("(unset)")
                ));
            } else {
                restore.insert(k.clone(), before.clone());
            }
        }
        if restore.is_empty() {
            return Ok(Reverted::Superseded {
                why: format!("function {function}: {}", left.join("; ")),
            });
        }
        self.write_variables(function, &restore).await?;
        let mut changes: Vec<String> = restore
            .iter()
            .map(|(k, v)| {
                format!(
                    "function {function}: {k} → {}",
                    v.as_deref().unwrap_or("(unset)")
                )
            })
            .collect();
        changes.extend(left);
        Ok(Reverted::Restored { changes })
    }
}

/// The function's variables.
fn variables(conf: &GetFunctionConfigurationOutput) -> HashMap<String, String> {
    conf.environment()
        .and_then(|e| e.variables())
        .cloned()
        .unwrap_or_default()
}
