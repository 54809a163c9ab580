//! Host-side bindings of the `healer:policy` worlds and the conversions between
//! WIT values and the host's own types. Nothing outside `policy/` sees WIT types.
//!
//! The host loads two package versions side by side: `0.2.0` (`wit/`, what the
//! SDK builds) and the frozen `0.1.0` (`wit/0.1.0/`), so policies compiled
//! against 0.1.0 keep loading. One macro writes both worlds' conversions: the
//! kinds have the same names in every version, and a policy of an older world
//! never sees an action its world cannot name (it is left out of its context).

use chrono::{DateTime, Utc};

use crate::decision::{Action, ActionKind, Decision, Step, VerifyMethod, VerifySpec};
use crate::incident::{Incident, IncidentKind, ResourceKind, ResourceRef};
use crate::policy::context::PolicyContext;
use crate::policy::state::DecisionState;
use crate::policy::{ConfigField, LogLevel, PolicyMetadata};

fn ms(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp_millis()).unwrap_or(0)
}

/// The incident kinds, resource kinds and log levels every world version has.
macro_rules! same_names {
    ($from:ty => $to:ty : $($v:ident),* $(,)?) => {
        impl From<$from> for $to {
            fn from(k: $from) -> Self {
                type From = $from;
                match k { $(From::$v => Self::$v,)* }
            }
        }
    };
}

/// One world version: its generated bindings (module `$name`, WIT at `$path`)
/// and its conversions. `$kind` lists the action kinds it has; `$pat => $e`
/// lifts the actions it has beyond 0.1.0's.
macro_rules! world {
    ($name:ident, $path:tt, kinds: [$($kind:ident),* $(,)?], actions: {$($pat:pat => $e:expr),* $(,)?}) => {
        pub(crate) mod $name {
            #![allow(clippy::wildcard_imports)]
            use super::*;

            mod generated {
                wasmtime::component::bindgen!({
                    path: $path,
                    world: "healing-policy",
                });
            }

            pub(crate) use generated::{HealingPolicy, HealingPolicyPre};
            use generated::healer::policy::host::{Host, Level};
            use generated::healer::policy::types as wit;

            fn attrs<'a>(it: impl Iterator<Item = (&'a String, &'a String)>) -> Vec<wit::Attribute> {
                it.map(|(k, v)| wit::Attribute {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect()
            }

            fn pairs(list: Vec<wit::Attribute>) -> Vec<(String, String)> {
                list.into_iter().map(|a| (a.key, a.value)).collect()
            }

            same_names!(IncidentKind => wit::IncidentKind: TaskCrashed, TaskHealthCheckFailed,
                TaskStartFailed, ServiceImpaired, DeploymentFailed, InstanceImpaired,
                InstanceRetiring, SpotInterruption, TargetUnhealthy, FunctionErrors, Alarm);
            same_names!(wit::IncidentKind => IncidentKind: TaskCrashed, TaskHealthCheckFailed,
                TaskStartFailed, ServiceImpaired, DeploymentFailed, InstanceImpaired,
                InstanceRetiring, SpotInterruption, TargetUnhealthy, FunctionErrors, Alarm);
            same_names!(ResourceKind => wit::ResourceKind: EcsTask, EcsService, Ec2Instance,
                Target, TargetGroup, LambdaFunction, AutoscalingGroup, Alarm);
            same_names!(Level => LogLevel: Trace, Debug, Info, Warn, Error);
            same_names!(wit::ActionKind => ActionKind: $($kind),*);

            /// The world's name for a host action kind; `None` when this
            /// world is older than the action.
            #[allow(unreachable_patterns)]
            fn action_kind(k: ActionKind) -> Option<wit::ActionKind> {
                match k {
                    $(ActionKind::$kind => Some(wit::ActionKind::$kind),)*
                    _ => None,
                }
            }

            impl generated::healer::policy::types::Host for DecisionState {}

            impl Host for DecisionState {
                fn log(&mut self, level: Level, message: String) {
                    self.log_line(level.into(), message);
                }

                fn now(&mut self) -> u64 {
                    self.now_ms()
                }
            }

            fn resource_ref(r: &ResourceRef) -> wit::ResourceRef {
                wit::ResourceRef {
                    kind: r.kind.into(),
                    id: r.id.clone(),
                    region: r.region.clone(),
                    account: r.account.clone(),
                }
            }

            /// Lowers a host incident to its WIT form.
            pub fn incident(i: &Incident) -> wit::Incident {
                wit::Incident {
                    id: i.id.to_string(),
                    kind: i.kind.into(),
                    source: i.source.clone(),
                    resource: resource_ref(&i.resource),
                    group: i.group.as_ref().map(resource_ref),
                    reason: i.reason.clone(),
                    detail: attrs(i.detail.iter()),
                    detected_at: ms(i.detected_at),
                    dedupe_key: i.dedupe_key.clone(),
                }
            }

            /// Lowers a host context to its WIT form.
            pub fn context(c: &PolicyContext) -> wit::Context {
                wit::Context {
                    tags: attrs(c.tags.iter()),
                    recent_incidents_resource: c.recent_incidents_resource,
                    recent_incidents_group: c.recent_incidents_group,
                    last_actions: c
                        .last_actions
                        .iter()
                        .filter_map(|a| {
                            Some(wit::PastAction {
                                kind: action_kind(a.kind)?,
                                target: a.target.clone(),
                                at: ms(a.at),
                                outcome: a.outcome.clone(),
                            })
                        })
                        .collect(),
                    resource_config: wit::ResourceConfig {
                        skip_recovery: c.resource_config.skip_recovery,
                        cooldown_minutes: c.resource_config.cooldown_minutes,
                        allowed_actions: c
                            .resource_config
                            .allowed_actions
                            .as_ref()
                            .map(|v| v.iter().filter_map(|k| action_kind(*k)).collect()),
                    },
                    config: attrs(c.config.iter()),
                }
            }

            fn action(a: wit::Action) -> Action {
                match a {
                    wit::Action::RestartTask(t) => Action::RestartTask {
                        cluster: t.cluster,
                        task: t.task,
                    },
                    wit::Action::ForceNewDeployment(t) => Action::ForceNewDeployment {
                        cluster: t.cluster,
                        service: t.service,
                    },
                    wit::Action::RollbackDeployment(t) => Action::RollbackDeployment {
                        cluster: t.cluster,
                        service: t.service,
                        task_definition: t.task_definition,
                    },
                    wit::Action::ScaleService(t) => Action::ScaleService {
                        cluster: t.cluster,
                        service: t.service,
                        desired_count: t.desired_count,
                    },
                    wit::Action::RebootInstance(id) => Action::RebootInstance { instance_id: id },
                    wit::Action::ReplaceInstance(t) => Action::ReplaceInstance {
                        instance_id: t.instance_id,
                        move_elastic_ip: t.move_elastic_ip,
                    },
                    wit::Action::SetInstanceUnhealthy(t) => Action::SetInstanceUnhealthy {
                        group: t.group,
                        instance_id: t.instance_id,
                    },
                    wit::Action::DeregisterTarget(t) => Action::DeregisterTarget {
                        target_group: t.target_group,
                        target_id: t.target_id,
                        port: t.port,
                    },
                    wit::Action::RegisterTarget(t) => Action::RegisterTarget {
                        target_group: t.target_group,
                        target_id: t.target_id,
                        port: t.port,
                    },
                    wit::Action::RunDiagnostics(t) => Action::RunDiagnostics {
                        instance_id: t.instance_id,
                        document: t.name,
                    },
                    wit::Action::RunCommand(t) => Action::RunCommand {
                        instance_id: t.instance_id,
                        command: t.name,
                    },
                    wit::Action::UpdateFunctionConfig(t) => Action::UpdateFunctionConfig {
                        function_name: t.function_name,
                        environment: pairs(t.environment),
                    },
                    wit::Action::Notify(n) => Action::Notify {
                        channel: n.channel,
                        subject: n.subject,
                        message: n.message,
                    },
                    wit::Action::Escalate(message) => Action::Escalate { message },
                    wit::Action::NoOp => Action::NoOp,
                    $($pat => $e,)*
                }
            }

            /// Lifts a WIT decision into the host's type.
            pub fn decision(d: wit::Decision) -> Decision {
                Decision {
                    steps: d
                        .steps
                        .into_iter()
                        .map(|s| Step {
                            action: action(s.action),
                            reason: s.reason,
                        })
                        .collect(),
                    verify: d.verify.map(|v| VerifySpec {
                        method: match v.method {
                            wit::VerifyMethod::RecoverySignal => VerifyMethod::RecoverySignal,
                            wit::VerifyMethod::Poll => VerifyMethod::Poll,
                        },
                        deadline_secs: v.deadline_secs,
                    }),
                    summary: d.summary,
                }
            }

            /// Lifts WIT metadata into the host's type.
            pub fn metadata(m: wit::Metadata) -> PolicyMetadata {
                PolicyMetadata {
                    name: m.name,
                    version: m.version,
                    handles: m.handles.into_iter().map(Into::into).collect(),
                    proposes: m.proposes.into_iter().map(Into::into).collect(),
                    config_schema: m
                        .config_schema
                        .into_iter()
                        .map(|f| ConfigField {
                            name: f.name,
                            description: f.description,
                            default_value: f.default_value,
                        })
                        .collect(),
                }
            }
        }
    };
}

world!(v1, "../wit/0.1.0", kinds: [RestartTask, ForceNewDeployment, RollbackDeployment,
    ScaleService, RebootInstance, ReplaceInstance, SetInstanceUnhealthy, DeregisterTarget,
    RegisterTarget, RunDiagnostics, RunCommand, UpdateFunctionConfig, Notify, Escalate, NoOp],
    actions: {});

world!(v2, "../wit", kinds: [RestartTask, ForceNewDeployment, RollbackDeployment,
ScaleService, RebootInstance, RecoverInstance, ReplaceInstance, SetInstanceUnhealthy,
DeregisterTarget, RegisterTarget, RunDiagnostics, RunCommand, UpdateFunctionConfig, Notify,
Escalate, NoOp],
actions: {
    wit::Action::RecoverInstance(id) => Action::RecoverInstance { instance_id: id },
});

/// A policy component linked against the world version it implements.
pub(crate) enum Pre {
    /// `healer:policy@0.1.0`.
    V1(v1::HealingPolicyPre<DecisionState>),
    /// `healer:policy@0.2.0`.
    V2(v2::HealingPolicyPre<DecisionState>),
}

impl Pre {
    /// Adds every world version's `host` imports to `linker`.
    pub(crate) fn add_to_linker(
        linker: &mut wasmtime::component::Linker<DecisionState>,
    ) -> wasmtime::Result<()> {
        use wasmtime::component::HasSelf;
        v1::HealingPolicy::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
        v2::HealingPolicy::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
        Ok(())
    }

    /// Type-checks the component's exports against the newest world first,
    /// then the older ones; the error names what each world found wrong.
    pub(crate) fn new(pre: wasmtime::component::InstancePre<DecisionState>) -> Result<Pre, String> {
        let newest = match v2::HealingPolicyPre::new(pre.clone()) {
            Ok(p) => return Ok(Pre::V2(p)),
            Err(e) => e,
        };
        v1::HealingPolicyPre::new(pre)
            .map(Pre::V1)
            .map_err(|old| format!("0.2.0: {newest:#}; 0.1.0: {old:#}"))
    }

    /// The world version the policy implements (`0.2.0`).
    pub(crate) fn world(&self) -> &'static str {
        match self {
            Pre::V1(_) => "0.1.0",
            Pre::V2(_) => "0.2.0",
        }
    }

    /// Instantiates the policy in `store` without calling it.
    pub(crate) fn instantiate(
        &self,
        store: &mut wasmtime::Store<DecisionState>,
    ) -> wasmtime::Result<()> {
        match self {
            Pre::V1(p) => p.instantiate(store).map(drop),
            Pre::V2(p) => p.instantiate(store).map(drop),
        }
    }

    /// Instantiates and calls `metadata`.
    pub(crate) fn metadata(
        &self,
        store: &mut wasmtime::Store<DecisionState>,
    ) -> wasmtime::Result<PolicyMetadata> {
        Ok(match self {
            Pre::V1(p) => v1::metadata(p.instantiate(&mut *store)?.call_metadata(store)?),
            Pre::V2(p) => v2::metadata(p.instantiate(&mut *store)?.call_metadata(store)?),
        })
    }

    /// Instantiates and calls `decide`; the inner `Err` is the policy's own.
    pub(crate) fn decide(
        &self,
        store: &mut wasmtime::Store<DecisionState>,
        incident: &Incident,
        context: &PolicyContext,
    ) -> wasmtime::Result<Result<Decision, String>> {
        Ok(match self {
            Pre::V1(p) => {
                let i = p.instantiate(&mut *store)?;
                i.call_decide(store, &v1::incident(incident), &v1::context(context))?
                    .map(v1::decision)
            }
            Pre::V2(p) => {
                let i = p.instantiate(&mut *store)?;
                i.call_decide(store, &v2::incident(incident), &v2::context(context))?
                    .map(v2::decision)
            }
        })
    }
}
