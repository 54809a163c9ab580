//! Denying stubs for the WASI imports outside the sandbox's surface.
//!
//! Guest toolchains import more WASI than they use: a componentize-py policy
//! imports 25 interfaces (filesystem and sockets among them), componentize-js
//! 16. The component must still link, so every function of an interface the
//! sandbox does not implement is defined here, per component at load time, as
//! a stub that denies: a call that can report an error gets `access-denied`
//! (`access` for the filesystem), a list gets an empty list, an option `none`;
//! anything else traps with the interface named. Resources of such interfaces
//! are defined but never created, so their methods are unreachable.

use wasmtime::Engine;
use wasmtime::StoreContextMut;
use wasmtime::component::types::{ComponentFunc, ComponentItem, Type};
use wasmtime::component::{Component, Linker, Resource, ResourceType, Val};

use super::{Sandbox, SandboxStop};

/// Interfaces the sandbox implements or the policy world provides, without
/// their version (a `0.2.x` import links to the host's `0.2.12`).
const LINKED: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// Error cases a denying stub answers with, in order of preference.
const DENIED_CASES: &[&str] = &["access-denied", "access", "not-supported", "unsupported"];

/// A resource type that is defined for linking and never instantiated.
struct Denied;

fn unversioned(name: &str) -> &str {
    name.split_once('@').map_or(name, |(n, _)| n)
}

/// Defines denying stubs in `linker` for every WASI interface `component`
/// imports that the sandbox does not implement. Returns their names (for the
/// load report). Non-WASI imports are left alone: they fail the world check.
pub(crate) fn link_denied<T: 'static>(
    linker: &mut Linker<T>,
    engine: &Engine,
    component: &Component,
    get: fn(&mut T) -> &mut Sandbox,
) -> wasmtime::Result<Vec<String>> {
    let ty = component.component_type();
    // Resources of the implemented interfaces that a denied one re-exports
    // (`wasi:filesystem/types` uses `wasi:io/streams.input-stream`) keep
    // their real definition.
    let linked: Vec<ResourceType> = ty
        .imports(engine)
        .filter(|(name, _)| LINKED.contains(&unversioned(name)))
        .filter_map(|(_, import)| match import.ty {
            ComponentItem::ComponentInstance(i) => Some(i),
            _ => None,
        })
        .flat_map(|i| {
            i.exports(engine)
                .filter_map(|(_, e)| match e.ty {
                    ComponentItem::Resource(r) => Some(r),
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let mut denied = Vec::new();
    for (name, import) in ty.imports(engine) {
        if !name.starts_with("wasi:") || LINKED.contains(&unversioned(name)) {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = import.ty else {
            continue;
        };
        let mut li = linker.instance(name)?;
        for (item, export) in instance.exports(engine) {
            match export.ty {
                ComponentItem::ComponentFunc(_) => {
                    let qualified = format!("{name}#{item}");
                    li.func_new(item, move |mut store, ty, params, results| {
                        // Handles passed in (the inert `network` of
                        // `instance-network()`, borrowed) must be released
                        // before the call returns.
                        for p in params {
                            if let Val::Resource(r) = p {
                                (*r).resource_drop(&mut store)?;
                            }
                        }
                        match denial(&mut store, &ty, results) {
                            Some(()) => Ok(()),
                            None => {
                                Err(get(store.data_mut())
                                    .halt(SandboxStop::Denied(qualified.clone())))
                            }
                        }
                    })?;
                }
                ComponentItem::Resource(r) if !linked.contains(&r) => {
                    li.resource(item, ResourceType::host::<Denied>(), |_, _| Ok(()))?;
                }
                _ => {}
            }
        }
        denied.push(name.to_owned());
    }
    Ok(denied)
}

/// Writes the denying answer for a function of type `ty`, or `None` when the
/// type has no way to say "denied" (the stub then traps).
fn denial<T>(
    store: &mut StoreContextMut<'_, T>,
    ty: &ComponentFunc,
    results: &mut [Val],
) -> Option<()> {
    let mut types = ty.results();
    match (types.next(), results) {
        (None, []) => Some(()),
        (Some(t), [slot]) if types.next().is_none() => {
            *slot = denied_value(store, &t)?;
            Some(())
        }
        _ => None,
    }
}

fn denied_value<T>(store: &mut StoreContextMut<'_, T>, t: &Type) -> Option<Val> {
    match t {
        Type::Result(r) => {
            let err = match r.err() {
                None => None,
                Some(Type::Enum(e)) => {
                    let names: Vec<&str> = e.names().collect();
                    let case = DENIED_CASES.iter().find(|c| names.contains(c))?;
                    Some(Box::new(Val::Enum((*case).to_owned())))
                }
                Some(Type::Variant(v)) => {
                    let case = v
                        .cases()
                        .find(|c| DENIED_CASES.contains(&c.name) && c.ty.is_none())?;
                    Some(Box::new(Val::Variant(case.name.to_owned(), None)))
                }
                Some(_) => return None,
            };
            Some(Val::Result(Err(err)))
        }
        Type::List(_) => Some(Val::List(Vec::new())),
        Type::Option(_) => Some(Val::Option(None)),
        Type::Bool => Some(Val::Bool(false)),
        // A handle of a denied interface (`instance-network()`): an inert one,
        // whose every use is denied in turn.
        Type::Own(r) if *r == ResourceType::host::<Denied>() => {
            let inert = Resource::<Denied>::new_own(0);
            inert
                .try_into_resource_any(&mut *store)
                .ok()
                .map(Val::Resource)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_ignored_when_matching_linked_interfaces() {
        assert_eq!(unversioned("wasi:io/poll@0.2.0"), "wasi:io/poll");
        assert!(LINKED.contains(&unversioned("wasi:random/random@0.2.3")));
        assert!(!LINKED.contains(&unversioned("wasi:sockets/tcp@0.2.0")));
    }
}
