//! Global kill switch (config, file flag, store flag) and manual approval.

use super::{Ctx, Rule, Verdict};

/// Every mutating step is denied while any kill switch is on.
pub(crate) fn kill_switch(ctx: &Ctx<'_>) -> Option<Verdict> {
    let c = ctx.config;
    let why = if c.kill_switch {
        Some("kill switch is on in the config".to_owned())
    } else if let Some(f) = c.kill_switch_file.as_ref().filter(|f| f.exists()) {
        Some(format!("kill switch file {} exists", f.display()))
    } else if ctx.history.kill_switch {
        Some("kill switch flag is on in the store".to_owned())
    } else {
        None
    };
    why.map(|w| Verdict::deny(Rule::KillSwitch, w))
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
            kill_switch: true,
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
