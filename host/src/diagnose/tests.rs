//! Realistic `healer-diagnose` outputs, one per class, authored from what
//! the document's commands print on Amazon Linux 2023 (systemctl, ss, curl,
//! /proc, df, dmesg -T, ip route, getent).

use super::*;

/// A healthy instance: every check fine.
const HEALTHY: &str = "\
HEALER service name=nginx active=active
HEALER port port=80 listening=true
HEALER http port=80 code=200
HEALER cpu load1=0.12 cpus=2 load_per_cpu=0.06
HEALER memory available_pct=71
HEALER disk mount=/ used_pct=41
HEALER disk mount=/boot/efi used_pct=13
HEALER inodes mount=/ used_pct=6
HEALER agent name=amazon-ssm-agent active=active
HEALER agent name=amazon-cloudwatch-agent active=absent
HEALER network gateway=10.0.1.1 reachable=true
HEALER dns resolves=true
";

fn with(base: &str, replace: &[(&str, &str)], extra: &str) -> CommandOutput {
    let mut s = base.to_owned();
    for (from, to) in replace {
        assert!(s.contains(from), "{from}");
        s = s.replace(from, to);
    }
    s.push_str(extra);
    CommandOutput {
        status: CommandStatus::Success,
        exit_code: Some(0),
        stdout: s,
        stderr: String::new(),
    }
}

fn class(out: &CommandOutput) -> (Class, Option<String>) {
    let d = Rules::builtin().classify(out);
    (d.class, d.rule)
}

#[test]
fn the_builtin_rules_compile() {
    assert_eq!(Rules::builtin().0.len(), BUILTIN.len());
}

#[test]
fn a_healthy_instance_is_unknown() {
    let d = Rules::builtin().classify(&with(HEALTHY, &[], ""));
    assert_eq!(
        (d.class, d.rule, d.evidence.len()),
        (Class::Unknown, None, 0)
    );
}

#[test]
fn a_dead_service_is_application() {
    let out = with(
        HEALTHY,
        &[
            ("active=active\nHEALER port", "active=failed\nHEALER port"),
            ("listening=true", "listening=false"),
            ("code=200", "code=000"),
        ],
        "HEALER-LOG journal: Dec 04 17:01:02 ip-10-0-1-23 systemd[1]: nginx.service: Main process exited, code=exited, status=1/FAILURE\n\
         HEALER-LOG journal: Dec 04 17:01:02 ip-10-0-1-23 systemd[1]: nginx.service: Failed with result 'exit-code'.\n",
    );
    let d = Rules::builtin().classify(&out);
    assert_eq!(d.class, Class::Application);
    assert_eq!(d.rule.as_deref(), Some("service"));
    assert_eq!(
        d.evidence,
        [
            "HEALER service name=nginx active=failed",
            "HEALER port port=80 listening=false",
            "HEALER http port=80 code=000"
        ]
    );
}

#[test]
fn an_application_answering_500_is_application() {
    let out = with(HEALTHY, &[("code=200", "code=503")], "");
    assert_eq!(class(&out), (Class::Application, Some("service".into())));
}

#[test]
fn a_full_disk_is_disk_even_when_the_service_died_of_it() {
    let out = with(
        HEALTHY,
        &[
            ("mount=/ used_pct=41", "mount=/ used_pct=100"),
            ("active=active\nHEALER port", "active=failed\nHEALER port"),
        ],
        "HEALER-LOG journal: Dec 04 17:03:11 ip-10-0-1-23 nginx[2211]: open() \"/var/log/nginx/access.log\" failed (28: No space left on device)\n",
    );
    let d = Rules::builtin().classify(&out);
    assert_eq!(
        (d.class, d.rule.as_deref()),
        (Class::Disk, Some("disk-full"))
    );
    assert_eq!(d.evidence.len(), 2, "{:?}", d.evidence);
}

#[test]
fn disk_errors_in_dmesg_are_disk() {
    let out = with(
        HEALTHY,
        &[],
        "HEALER-LOG dmesg: [Fri Dec  4 16:58:40 2026] blk_update_request: I/O error, dev nvme1n1, sector 20971392 op 0x0:(READ)\n\
         HEALER-LOG dmesg: [Fri Dec  4 16:58:41 2026] EXT4-fs error (device nvme1n1p1): ext4_find_entry:1455: inode #2: comm nginx: reading directory lblock 0\n",
    );
    assert_eq!(class(&out), (Class::Disk, Some("disk-errors".into())));
}

#[test]
fn memory_exhaustion_is_a_resource_bottleneck() {
    let out = with(
        HEALTHY,
        &[("available_pct=71", "available_pct=2")],
        "HEALER-LOG dmesg: [Fri Dec  4 17:00:05 2026] Out of memory: Killed process 2211 (java) total-vm:4123456kB, anon-rss:3521004kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:7180kB oom_score_adj:0\n",
    );
    let d = Rules::builtin().classify(&out);
    assert_eq!(d.class, Class::ResourceBottleneck);
    assert_eq!(d.evidence.len(), 2);
}

#[test]
fn a_saturated_cpu_is_a_resource_bottleneck() {
    let out = with(
        HEALTHY,
        &[(
            "load1=0.12 cpus=2 load_per_cpu=0.06",
            "load1=14.80 cpus=2 load_per_cpu=7.40",
        )],
        "",
    );
    assert_eq!(class(&out), (Class::ResourceBottleneck, Some("cpu".into())));
    // 2.9 per CPU is busy, not exhausted.
    let busy = with(
        HEALTHY,
        &[(
            "load1=0.12 cpus=2 load_per_cpu=0.06",
            "load1=5.80 cpus=2 load_per_cpu=2.90",
        )],
        "",
    );
    assert_eq!(class(&busy).0, Class::Unknown);
}

#[test]
fn a_kernel_lockup_is_os() {
    let out = with(
        HEALTHY,
        &[],
        "HEALER-LOG dmesg: [Fri Dec  4 16:40:12 2026] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [kworker/1:2:193]\n\
         HEALER-LOG dmesg: [Fri Dec  4 16:40:12 2026] Call Trace:\n",
    );
    assert_eq!(class(&out), (Class::Os, Some("kernel".into())));
}

#[test]
fn an_unreachable_gateway_or_dns_is_network() {
    let out = with(HEALTHY, &[("reachable=true", "reachable=false")], "");
    assert_eq!(class(&out), (Class::Network, Some("network".into())));
    let dns = with(HEALTHY, &[("resolves=true", "resolves=false")], "");
    assert_eq!(class(&dns).0, Class::Network);
}

#[test]
fn no_agent_or_a_timeout_is_agent_failure_whatever_the_output() {
    for (status, details) in [
        ("TimedOut", "DeliveryTimedOut"),
        ("Failed", "Undeliverable"),
        ("TimedOut", "ExecutionTimedOut"),
    ] {
        let mut out = with(HEALTHY, &[("code=200", "code=500")], "");
        out.status = CommandStatus::from_ssm(status, details);
        out.exit_code = Some(-1);
        let d = Rules::builtin().classify(&out);
        assert_eq!(d.class, Class::AgentFailure, "{status}/{details}");
        assert_eq!(d.rule, None);
    }
    let mut down = with(
        HEALTHY,
        &[(
            "amazon-ssm-agent active=active",
            "amazon-ssm-agent active=failed",
        )],
        "",
    );
    down.status = CommandStatus::Failed;
    assert_eq!(class(&down).0, Class::AgentFailure);
}

#[test]
fn the_ssm_statuses_map() {
    assert_eq!(
        CommandStatus::from_ssm("Success", "Success"),
        CommandStatus::Success
    );
    assert_eq!(
        CommandStatus::from_ssm("Failed", "Failed"),
        CommandStatus::Failed
    );
    assert_eq!(
        CommandStatus::from_ssm("Cancelled", "Cancelled"),
        CommandStatus::NotRun
    );
    assert_eq!(
        CommandStatus::from_ssm("Failed", "AccessDenied"),
        CommandStatus::Failed
    );
    assert_eq!(
        CommandStatus::from_ssm("Failed", "InvalidPlatform"),
        CommandStatus::Failed
    );
    assert_eq!(
        CommandStatus::from_ssm("Pending", ""),
        CommandStatus::NotRun
    );
}

#[test]
fn configured_rules_run_in_order_with_exit_codes() {
    let rules = Rules::new(&[
        RuleSpec {
            name: "probe-broken".into(),
            class: Class::Unknown,
            patterns: Vec::new(),
            exit_codes: vec![127],
        },
        RuleSpec {
            name: "app".into(),
            class: Class::Application,
            patterns: vec!["(?i)connection refused".into()],
            exit_codes: Vec::new(),
        },
    ])
    .expect("rules");
    let mut out = with(
        "",
        &[],
        "curl: (7) Failed to connect to 127.0.0.1 port 80: Connection refused\n",
    );
    out.status = CommandStatus::Failed;
    out.exit_code = Some(127);
    let d = rules.classify(&out);
    assert_eq!(
        (d.class, d.rule.as_deref()),
        (Class::Unknown, Some("probe-broken"))
    );
    assert_eq!(d.evidence, ["exit code 127"]);
    out.exit_code = Some(7);
    assert_eq!(rules.classify(&out).class, Class::Application);
}

#[test]
fn bad_rules_are_refused_with_their_name() {
    let bad = RuleSpec {
        name: "oops".into(),
        class: Class::Disk,
        patterns: vec!["(unclosed".into()],
        exit_codes: Vec::new(),
    };
    let e = Rules::new(&[bad]).expect_err("bad pattern");
    assert!(e.to_string().contains("oops"), "{e}");
    let empty = RuleSpec {
        name: "all".into(),
        class: Class::Disk,
        patterns: Vec::new(),
        exit_codes: Vec::new(),
    };
    assert!(matches!(Rules::new(&[empty]), Err(RuleError::Empty(_))));
}

#[test]
fn evidence_is_bounded() {
    let flood: String = (0..100)
        .map(|i| {
            format!(
                "HEALER-LOG dmesg: I/O error, dev nvme1n1, sector {i} {}\n",
                "é".repeat(300)
            )
        })
        .collect();
    let d = Rules::builtin().classify(&with("", &[], &flood));
    assert_eq!(d.evidence.len(), MAX_EVIDENCE);
    assert!(
        d.evidence
            .iter()
            .all(|l| l.len() <= MAX_LINE + '…'.len_utf8())
    );
}
