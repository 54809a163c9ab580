//! What a component says about itself before it runs: the toolchain that built
//! it (its `producers` section), how many core instances it contains, and the
//! limits it declares (a `healer:limits` custom section). Read from the bytes
//! at load, so the limits are known before the first instantiation.

use serde::Serialize;
use wasmparser::{KnownCustom, Parser, Payload};

use super::PolicyError;
use super::limits::{LimitName, LimitOverride, PolicyLimits};

/// The custom section a component declares its limits in: JSON with the
/// per-policy keys (`{"memory-bytes": 33554432}`). The kits' build commands
/// write it from the policy's own configuration.
pub const LIMITS_SECTION: &str = "healer:limits";

/// Largest `healer:limits` section read.
const MAX_LIMITS_SECTION: usize = 4096;

/// The language toolchain that built a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Toolchain {
    /// `cargo` for `wasm32-wasip2` (the Rust SDK).
    Rust,
    /// componentize-py: CPython in the component.
    Python,
    /// componentize-js / jco: StarlingMonkey (SpiderMonkey) or QuickJS.
    Javascript,
    /// Anything else (C, Go, hand-written): the defaults apply.
    Other,
}

impl Toolchain {
    /// Lower-case name (`python`).
    pub fn as_str(self) -> &'static str {
        match self {
            Toolchain::Rust => "rust",
            Toolchain::Python => "python",
            Toolchain::Javascript => "javascript",
            Toolchain::Other => "other",
        }
    }

    /// What this toolchain's components need beyond the defaults, measured
    /// on the kits' examples: an interpreter's heap and its extra core
    /// instances. Defaults below these are raised to them (never above the
    /// ceiling); a component's declaration or an operator's limit wins.
    pub fn needs(self) -> LimitOverride {
        match self {
            // 12.3 MiB of linear memory to start, 14 core instances.
            Toolchain::Python => LimitOverride {
                memory_bytes: Some(48 << 20),
                core_instances: Some(24),
                ..LimitOverride::default()
            },
            // StarlingMonkey's heap; up to 3.3 M fuel per decision.
            Toolchain::Javascript => LimitOverride {
                memory_bytes: Some(48 << 20),
                core_instances: Some(24),
                ..LimitOverride::default()
            },
            Toolchain::Rust | Toolchain::Other => LimitOverride::default(),
        }
    }
}

impl std::fmt::Display for Toolchain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the bytes of a component say about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Profile {
    /// The toolchain, from the `producers` sections.
    pub toolchain: Toolchain,
    /// Core module instantiations in the component (nested ones counted),
    /// as the instance pool counts them.
    pub core_instances: u64,
    /// The limits its `healer:limits` section declares.
    #[serde(skip_serializing_if = "LimitOverride::is_empty")]
    pub declared: LimitOverride,
}

/// Reads a component's profile. A malformed binary is an invalid component;
/// a malformed `healer:limits` section too (it is the policy's own word).
pub fn inspect(bytes: &[u8]) -> Result<Profile, PolicyError> {
    let mut core_instances = 0u64;
    let mut producers: Vec<String> = Vec::new();
    let mut declared = LimitOverride::default();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| PolicyError::InvalidComponent(e.to_string()))?;
        match payload {
            // Only instantiations are instances at run time; a bag of
            // exports (`FromExports`) is a name, as wasmtime counts them.
            Payload::InstanceSection(s) => {
                for instance in s {
                    let instance =
                        instance.map_err(|e| PolicyError::InvalidComponent(e.to_string()))?;
                    if matches!(instance, wasmparser::Instance::Instantiate { .. }) {
                        core_instances += 1;
                    }
                }
            }
            Payload::CustomSection(c) if c.name() == LIMITS_SECTION => {
                declared = parse_declared(c.data())?;
            }
            Payload::CustomSection(c) => {
                if let KnownCustom::Producers(reader) = c.as_known() {
                    for field in reader.into_iter().flatten() {
                        for value in field.values.into_iter().flatten() {
                            producers.push(format!("{}={}", field.name, value.name));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Profile {
        toolchain: toolchain_of(&producers),
        core_instances,
        declared,
    })
}

/// The toolchain named by `producers` entries (`field=value`). An
/// interpreter's toolchain wins over the languages its runtime was built with
/// (CPython is C, StarlingMonkey C++ and Rust).
fn toolchain_of(producers: &[String]) -> Toolchain {
    let any = |needles: &[&str]| {
        producers.iter().any(|p| {
            let p = p.to_ascii_lowercase();
            needles.iter().any(|n| p.contains(n))
        })
    };
    if any(&["componentize-py"]) {
        Toolchain::Python
    } else if any(&["componentize-js", "componentizejs", "starlingmonkey", "jco"]) {
        Toolchain::Javascript
    } else if any(&["language=rust"]) {
        Toolchain::Rust
    } else {
        Toolchain::Other
    }
}

fn parse_declared(data: &[u8]) -> Result<LimitOverride, PolicyError> {
    if data.len() > MAX_LIMITS_SECTION {
        return Err(PolicyError::InvalidComponent(format!(
            "the `{LIMITS_SECTION}` section is {} bytes, more than {MAX_LIMITS_SECTION}",
            data.len()
        )));
    }
    serde_json::from_slice(data).map_err(|e| {
        PolicyError::InvalidComponent(format!(
            "the `{LIMITS_SECTION}` section is not a JSON object of limits ({}): {e}",
            LimitName::ALL.map(LimitName::as_str).join(", ")
        ))
    })
}

/// Where a policy's limit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LimitSource {
    /// The host's defaults.
    Default,
    /// Raised for the component's toolchain.
    Toolchain,
    /// The component's `healer:limits` section.
    Declared,
    /// The operator's limit for this policy name (config or admin API).
    Operator,
}

impl LimitSource {
    fn describe(self) -> &'static str {
        match self {
            LimitSource::Default => "the host's default",
            LimitSource::Toolchain => "its toolchain's default",
            LimitSource::Declared => "declared in its `healer:limits` section",
            LimitSource::Operator => "set for this policy by the operator",
        }
    }
}

/// A policy's limits and where each came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The limits its decisions run under.
    pub limits: PolicyLimits,
    /// Where each per-policy limit came from.
    pub sources: Vec<(LimitName, LimitSource)>,
}

/// Resolves a policy's limits: the defaults, raised to its toolchain's needs
/// (up to the ceiling), then what it declares, then the operator's limits for
/// its name. A declared or operator value above the ceiling, or a component
/// with more core instances than its limit, is refused with the limit named.
pub fn resolve(
    defaults: &PolicyLimits,
    ceiling: &PolicyLimits,
    profile: &Profile,
    operator: Option<&LimitOverride>,
) -> Result<Resolved, PolicyError> {
    let mut limits = defaults.clone();
    let mut sources: Vec<(LimitName, LimitSource)> = LimitName::ALL
        .into_iter()
        .map(|n| (n, LimitSource::Default))
        .collect();
    let mut put = |limits: &mut PolicyLimits, n: LimitName, v: u64, s: LimitSource| {
        limits.set(n, v);
        if let Some(slot) = sources.iter_mut().find(|(name, _)| *name == n) {
            slot.1 = s;
        }
    };
    for (n, need) in profile.toolchain.needs().entries() {
        let v = need.min(ceiling.get(n));
        if v > limits.get(n) {
            put(&mut limits, n, v, LimitSource::Toolchain);
        }
    }
    for (n, v) in profile.declared.entries() {
        put(&mut limits, n, v, LimitSource::Declared);
    }
    for (n, v) in operator.into_iter().flat_map(LimitOverride::entries) {
        put(&mut limits, n, v, LimitSource::Operator);
    }
    let source = |n: LimitName| {
        sources
            .iter()
            .find(|(name, _)| *name == n)
            .map_or(LimitSource::Default, |(_, s)| *s)
    };
    if let Some((limit, needs, allowed)) = limits.above(ceiling) {
        return Err(PolicyError::LimitRefused {
            limit,
            needs,
            allowed,
            why: format!(
                "{}; the ceiling is [policy-limits.ceiling]",
                source(limit).describe()
            ),
        });
    }
    let cores = u64::from(limits.core_instances);
    if profile.core_instances > cores {
        let n = LimitName::CoreInstances;
        return Err(PolicyError::LimitRefused {
            limit: n,
            needs: profile.core_instances,
            allowed: cores,
            why: format!(
                "the component contains {} core instances; the limit is {}",
                profile.core_instances,
                source(n).describe()
            ),
        });
    }
    limits
        .validate()
        .map_err(|e| PolicyError::InvalidComponent(e.to_string()))?;
    Ok(Resolved { limits, sources })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(toolchain: Toolchain, cores: u64, declared: LimitOverride) -> Profile {
        Profile {
            toolchain,
            core_instances: cores,
            declared,
        }
    }

    #[test]
    fn producers_name_the_toolchain() {
        let p = |v: &[&str]| toolchain_of(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(p(&["language=Rust", "processed-by=rustc"]), Toolchain::Rust);
        assert_eq!(
            p(&["language=C11", "processed-by=componentize-py"]),
            Toolchain::Python
        );
        assert_eq!(
            p(&["language=Rust", "processed-by=ComponentizeJS"]),
            Toolchain::Javascript
        );
        assert_eq!(p(&["language=C11"]), Toolchain::Other);
    }

    #[test]
    fn a_toolchain_raises_the_defaults_up_to_the_ceiling() {
        let defaults = PolicyLimits::default();
        let ceiling = PolicyLimits {
            memory_bytes: 32 << 20,
            ..PolicyLimits::builtin_ceiling()
        };
        let r = resolve(
            &defaults,
            &ceiling,
            &profile(Toolchain::Python, 14, LimitOverride::default()),
            None,
        )
        .expect("resolves");
        assert_eq!(r.limits.memory_bytes, 32 << 20, "clamped to the ceiling");
        assert_eq!(r.limits.core_instances, 24);
        assert_eq!(r.limits.fuel, defaults.fuel);
        let rust = resolve(
            &defaults,
            &ceiling,
            &profile(Toolchain::Rust, 4, LimitOverride::default()),
            None,
        )
        .expect("resolves");
        assert_eq!(rust.limits, defaults);
    }

    #[test]
    fn a_declaration_above_the_ceiling_is_refused_with_the_limit_named() {
        let declared = LimitOverride {
            memory_bytes: Some(1 << 30),
            ..LimitOverride::default()
        };
        let e = resolve(
            &PolicyLimits::default(),
            &PolicyLimits::builtin_ceiling(),
            &profile(Toolchain::Rust, 4, declared),
            None,
        )
        .expect_err("refused");
        let text = e.to_string();
        assert!(text.contains("memory-bytes"), "{text}");
        assert!(text.contains("declared"), "{text}");
        assert!(matches!(
            e,
            PolicyError::LimitRefused {
                limit: LimitName::MemoryBytes,
                ..
            }
        ));
    }

    #[test]
    fn the_operator_wins_and_too_many_core_instances_are_refused() {
        let declared = LimitOverride {
            fuel: Some(5_000_000),
            ..LimitOverride::default()
        };
        let operator = LimitOverride {
            fuel: Some(9_000_000),
            core_instances: Some(8),
            ..LimitOverride::default()
        };
        let ceiling = PolicyLimits::builtin_ceiling();
        let ok = resolve(
            &PolicyLimits::default(),
            &ceiling,
            &profile(Toolchain::Rust, 4, declared.clone()),
            Some(&operator),
        )
        .expect("resolves");
        assert_eq!(ok.limits.fuel, 9_000_000);
        assert!(
            ok.sources
                .contains(&(LimitName::Fuel, LimitSource::Operator))
        );
        let e = resolve(
            &PolicyLimits::default(),
            &ceiling,
            &profile(Toolchain::Python, 14, declared),
            Some(&operator),
        )
        .expect_err("14 core instances, limit 8");
        assert!(e.to_string().contains("core-instances"), "{e}");
    }
}
