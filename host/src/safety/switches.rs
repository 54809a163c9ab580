//! Global kill switch (config, file flag, store flag) and manual approval.

use serde::{Deserialize, Serialize};

use super::{Ctx, Rule, Verdict};

/// The store's kill-switch flag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KillSwitch {
    /// Steps are judged by the other rules.
    #[default]
    Off,
    /// Every mutating step is denied.
    On,
}

impl KillSwitch {
    /// The stored value (`on` / `off`).
    pub fn as_str(self) -> &'static str {
        match self {
            KillSwitch::Off => "off",
            KillSwitch::On => "on",
        }
    }

    /// The flag from its stored value, fail-safe: never set is off, and only
    /// exactly `off` is off; anything else (`on`, `ON`, `0`, empty) is on.
    pub fn from_stored(value: Option<&str>) -> Self {
        match value {
            None | Some("off") => KillSwitch::Off,
            Some(_) => KillSwitch::On,
        }
    }
}

/// Sets the store's kill-switch flag, compare-and-set until it sticks (other
/// replicas may write it too).
pub async fn set_kill_switch(
    store: &dyn crate::store::Store,
    state: KillSwitch,
) -> Result<(), crate::store::StoreError> {
    for _ in 0..16 {
        let (_, version) = store.governor_get(super::KILL_SWITCH_KEY).await?;
        if store
            .governor_cas(super::KILL_SWITCH_KEY, state.as_str(), version)
            .await?
        {
            tracing::warn!(state = state.as_str(), "Kill switch set.");
            return Ok(());
        }
    }
    Err(crate::store::StoreError::Contention(
        super::KILL_SWITCH_KEY.to_owned(),
    ))
}

/// The store's kill-switch flag.
pub async fn kill_switch_flag(
    store: &dyn crate::store::Store,
) -> Result<KillSwitch, crate::store::StoreError> {
    let (value, _) = store.governor_get(super::KILL_SWITCH_KEY).await?;
    Ok(KillSwitch::from_stored(value.as_deref()))
}

/// Every mutating step is denied while any kill switch is on.
pub(crate) fn kill_switch(ctx: &Ctx<'_>) -> Option<Verdict> {
    engaged(ctx.config, ctx.history.kill_switch).map(|w| Verdict::deny(Rule::KillSwitch, w))
}

/// Why a kill switch is on (the config's, its file, the store's flag), if one is.
pub(crate) fn engaged(c: &super::GovernorConfig, stored: KillSwitch) -> Option<String> {
    if c.kill_switch {
        Some("kill switch is on in the config".to_owned())
    } else if let Some(f) = c.kill_switch_file.as_ref().filter(|f| f.exists()) {
        Some(format!("kill switch file {} exists", f.display()))
    } else if stored == KillSwitch::On {
        Some("kill switch flag is on in the store".to_owned())
    } else {
        None
    }
}

/// Configured action kinds wait for a human.
pub(crate) fn approval(ctx: &Ctx<'_>) -> Option<Verdict> {
    ctx.config
        .require_approval
        .contains(&ctx.kind())
        .then(|| Verdict::PendingApproval {
            reason: format!("{} requires manual approval", ctx.kind()),
        })
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;

    #[test]
    fn kill_switch_from_config_file_and_store() {
        let on = GovernorConfig {
            kill_switch: true,
            ..GovernorConfig::default()
        };
        assert!(matches!(
            judge_one(replace("i-1"), &tagged(), &History::default(), on),
            Verdict::Denied {
                rule: Rule::KillSwitch,
                ..
            }
        ));
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("stop");
        let cfg = GovernorConfig {
            kill_switch_file: Some(file.clone()),
            ..GovernorConfig::default()
        };
        assert!(
            judge_one(replace("i-1"), &tagged(), &History::default(), cfg.clone()).is_approved()
        );
        std::fs::write(&file, "").expect("write");
        assert!(!judge_one(replace("i-1"), &tagged(), &History::default(), cfg).is_approved());
        let store_flag = History {
            kill_switch: KillSwitch::On,
            ..History::default()
        };
        assert!(
            !judge_one(
                replace("i-1"),
                &tagged(),
                &store_flag,
                GovernorConfig::default()
            )
            .is_approved()
        );
        // Notifications still go out: they are how humans learn about the stop.
        assert!(
            judge_one(notify(), &tagged(), &store_flag, GovernorConfig::default()).is_approved()
        );
    }

    #[test]
    fn kill_switch_value_not_exactly_off_is_on() {
        // Issue 11, item 8: a typo or another spelling must not lift the switch.
        for (stored, expect) in [
            (None, KillSwitch::Off),
            (Some("off"), KillSwitch::Off),
            (Some("on"), KillSwitch::On),
            (Some("ON"), KillSwitch::On),
            (Some("Off"), KillSwitch::On),
            (Some("true"), KillSwitch::On),
            (Some(""), KillSwitch::On),
        ] {
            assert_eq!(KillSwitch::from_stored(stored), expect, "{stored:?}");
        }
        let state = crate::store::DecisionState {
            kill_switch: Some("yes".into()),
            ..crate::store::DecisionState::default()
        };
        let history = History::from_state(&instance_incident("i-1"), &state);
        assert!(matches!(
            judge_one(
                replace("i-1"),
                &tagged(),
                &history,
                GovernorConfig::default()
            ),
            Verdict::Denied {
                rule: Rule::KillSwitch,
                ..
            }
        ));
    }

    #[test]
    fn approval_holds_listed_kinds() {
        let cfg = GovernorConfig {
            require_approval: vec![ActionKind::ReplaceInstance],
            ..GovernorConfig::default()
        };
        assert!(matches!(
            judge_one(replace("i-1"), &tagged(), &History::default(), cfg),
            Verdict::PendingApproval { .. }
        ));
    }
}
