//! How a candidate's decision differs from the recorded one: pure, on the
//! decisions' JSON form, so every field a step names (its action's
//! parameters, its reason, the verify spec) is compared.

use serde::Serialize;
use serde_json::Value;

use crate::decision::Decision;

/// What replaying one recorded decision gave.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "result")]
pub enum Comparison {
    /// The same plan: every step field for field, and the verify spec (the
    /// summary may be reworded).
    Same,
    /// A different plan.
    Changed(PlanDiff),
    /// The recorded decision was a plan; the candidate errs or traps.
    NewError {
        /// The candidate's error.
        error: String,
    },
    /// The recorded decision was an error; the candidate decides.
    Fixed {
        /// The recorded error.
        was: String,
    },
    /// Both err (the candidate's error may read differently).
    StillError {
        /// The candidate's error.
        error: String,
    },
    /// The candidate does not declare the incident's kind: the host would
    /// not ask it.
    NotHandled,
}

impl Comparison {
    /// Whether the plan is not the recorded one (errors aside).
    pub fn changed(&self) -> bool {
        matches!(self, Comparison::Changed(_) | Comparison::Fixed { .. })
    }

    /// Whether the candidate errs where the recorded version did not.
    pub fn new_error(&self) -> bool {
        matches!(self, Comparison::NewError { .. })
    }
}

/// The steps added, removed and changed, and the other fields that differ.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PlanDiff {
    /// Steps only the candidate proposes (its index, the step).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<(usize, Value)>,
    /// Steps only the recorded decision had.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<(usize, Value)>,
    /// Steps at the same index that differ.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<StepChange>,
    /// Decision fields other than the steps and the summary that differ
    /// (`verify`, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

/// One step that differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct StepChange {
    /// Its index.
    pub index: usize,
    /// The fields that differ, dotted (`action`, `reason`, …), each with the
    /// recorded and the candidate's value.
    pub fields: Vec<FieldChange>,
}

/// A field's recorded and new value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct FieldChange {
    /// Dotted path in the step.
    pub field: String,
    /// Recorded (absent: `null`).
    pub from: Value,
    /// The candidate's (absent: `null`).
    pub to: Value,
}

/// Compares the recorded result with the candidate's (an engine's
/// `PolicyError`, or a recorded error's text).
pub fn compare<E: std::fmt::Display>(
    recorded: &Result<Decision, String>,
    candidate: &Result<Decision, E>,
) -> Comparison {
    match (recorded, candidate) {
        (Ok(was), Ok(now)) => {
            let diff = diff(&json(was), &json(now));
            if diff == PlanDiff::default() {
                Comparison::Same
            } else {
                Comparison::Changed(diff)
            }
        }
        (Ok(_), Err(e)) => Comparison::NewError {
            error: e.to_string(),
        },
        (Err(was), Ok(_)) => Comparison::Fixed { was: was.clone() },
        (Err(_), Err(e)) => Comparison::StillError {
            error: e.to_string(),
        },
    }
}

fn json(d: &Decision) -> Value {
    serde_json::to_value(d).unwrap_or(Value::Null)
}

/// Decision fields that are not the plan: the steps are compared one by
/// one, and a reworded summary changes nothing the host would do.
const NOT_PLAN: [&str; 2] = ["steps", "summary"];

/// The difference of two decisions' plans (steps, verify, …), from their
/// JSON objects.
fn diff(was: &Value, now: &Value) -> PlanDiff {
    let steps = |v: &Value| v.get("steps").and_then(Value::as_array).cloned();
    let (a, b) = (
        steps(was).unwrap_or_default(),
        steps(now).unwrap_or_default(),
    );
    let mut out = PlanDiff::default();
    for i in 0..a.len().max(b.len()) {
        match (a.get(i), b.get(i)) {
            (Some(x), Some(y)) if x != y => {
                let mut fields = Vec::new();
                leaves("", x, y, &mut fields);
                out.changed.push(StepChange { index: i, fields });
            }
            (Some(x), None) => out.removed.push((i, x.clone())),
            (None, Some(y)) => out.added.push((i, y.clone())),
            _ => {}
        }
    }
    let keys = |v: &Value| -> Vec<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut names: Vec<String> = keys(was);
    names.extend(keys(now));
    names.sort();
    names.dedup();
    out.fields = names
        .into_iter()
        .filter(|k| !NOT_PLAN.contains(&k.as_str()) && was.get(k) != now.get(k))
        .collect();
    out
}

/// The leaves of two JSON values that differ, as dotted paths.
fn leaves(path: &str, a: &Value, b: &Value, out: &mut Vec<FieldChange>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                leaves(&p, va, vb, out);
            }
        }
        _ if a != b => out.push(FieldChange {
            field: path.to_owned(),
            from: a.clone(),
            to: b.clone(),
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyError;

    fn decision(json: &str) -> Decision {
        serde_json::from_str(json).expect("decision")
    }

    const REBOOT: &str = r#"{"summary":"reboot","steps":[{"action":"reboot-instance","instance_id":"i-1","reason":"impaired"}]}"#;

    #[test]
    fn equal_decisions_are_the_same() {
        let d = decision(REBOOT);
        assert_eq!(compare::<String>(&Ok(d.clone()), &Ok(d)), Comparison::Same);
    }

    #[test]
    fn a_changed_parameter_is_named_with_both_values() {
        let was = decision(REBOOT);
        let now = decision(&REBOOT.replace("i-1", "i-2"));
        let Comparison::Changed(d) = compare::<String>(&Ok(was), &Ok(now)) else {
            panic!("changed");
        };
        assert_eq!(d.changed.len(), 1);
        assert_eq!(d.changed[0].fields[0].field, "instance_id");
        assert_eq!(d.changed[0].fields[0].from, "i-1");
        assert_eq!(d.changed[0].fields[0].to, "i-2");
        assert!(d.added.is_empty() && d.removed.is_empty() && d.fields.is_empty());
    }

    #[test]
    fn added_and_removed_steps_and_other_fields() {
        let was = decision(REBOOT);
        let now = decision(
            r#"{"summary":"nothing","steps":[],"verify":{"method":"poll","deadline-secs":60}}"#,
        );
        let Comparison::Changed(d) = compare::<String>(&Ok(was.clone()), &Ok(now.clone())) else {
            panic!("changed");
        };
        assert_eq!(d.removed.len(), 1);
        assert_eq!(d.fields, ["verify"]);
        let Comparison::Changed(back) = compare::<String>(&Ok(now), &Ok(was)) else {
            panic!("changed");
        };
        assert_eq!(back.added.len(), 1);
        assert_eq!(back.added[0].0, 0);
    }

    #[test]
    fn a_reworded_summary_is_the_same_plan() {
        let was = decision(REBOOT);
        let now = decision(&REBOOT.replace(r#""summary":"reboot""#, r#""summary":"reboot it""#));
        assert_eq!(compare::<String>(&Ok(was), &Ok(now)), Comparison::Same);
    }

    #[test]
    fn errors_either_side() {
        let d = decision(REBOOT);
        let err = || PolicyError::Rejected("no".into());
        assert!(compare(&Ok(d.clone()), &Err(err())).new_error());
        assert!(compare::<PolicyError>(&Err("old".into()), &Ok(d)).changed());
        assert!(matches!(
            compare(&Err("old".into()), &Err(err())),
            Comparison::StillError { .. }
        ));
    }
}
