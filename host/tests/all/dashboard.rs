//! The dashboard in a real browser: headless Chromium (Debian's) driven over
//! WebDriver against a `healer run` whose SQLite store is seeded by posting
//! the real AWS payloads in tests/fixtures to `/events`.
//!
//! Screenshots of every page go to `$HEALER_ARTIFACTS` (default
//! `$CARGO_TARGET_DIR/artifacts/dashboard`, else the temp dir).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use healer_test_artifacts as artifacts;
use serde_json::{Value, json};

use crate::support::{free_port, http};
use crate::webdriver::Browser;

const TOKEN: &str = "dashboard-token-0123456789";
/// An alarm name that would run script if the page ever parsed data as HTML.
const XSS: &str = "<img src=x onerror=window.__xss=1><script>window.__xss=2</script>";

struct Service {
    child: Child,
    url: String,
    data: PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path) -> Service {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).expect("mkdir");
    for p in [
        artifacts::ECS_TASK_RESTART,
        artifacts::EC2_REPLACE,
        artifacts::LAMBDA_FAILURE_RATE,
    ] {
        let name = Path::new(p).file_name().expect("file name");
        std::fs::copy(p, policies.join(name)).expect("copy");
    }
    let data = dir.join("data");
    let listen = format!("127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_healer"))
        .args(["run", "--no-cache", "--policies"])
        .arg(&policies)
        .env_remove("HEALER_SQS_QUEUE_URL")
        .env_remove("HEALER_STORE")
        .env_remove("HEALER_POLICY_BLOBS")
        .env("HEALER_LISTEN", &listen)
        .env("HEALER_DATA_DIR", &data)
        .env("HEALER_ADMIN_TOKEN", TOKEN)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("healer run starts");
    let s = Service {
        child,
        url: format!("http://{listen}"),
        data,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while crate::support::health(&listen).is_none() {
        assert!(
            Instant::now() < deadline,
            "healer run never answered /health"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    s
}

fn post_event(s: &Service, body: &str) -> Value {
    let auth = format!("Bearer {TOKEN}");
    let (status, text) = http(
        &s.url,
        "POST",
        "/events",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body,
    );
    assert_eq!(status, 202, "{text}");
    serde_json::from_str(&text).expect("JSON")
}

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/aws-events");
    let mut files = Vec::new();
    for dir in std::fs::read_dir(&root).expect("fixtures") {
        let dir = dir.expect("entry").path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).expect("fixture dir") {
            let f = f.expect("entry").path();
            if f.extension().is_some_and(|e| e == "json") {
                files.push(f);
            }
        }
    }
    files.sort();
    files
}

/// The single-metric EC2 alarm fixture as a status-check alarm of
/// `instance` (an instance-impaired incident, which `ec2-replace` decides;
/// its OK is the recovery), in `state`, at `at`.
fn alarm(instance: &str, state: &str, at: chrono::DateTime<chrono::Utc>) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/aws-events");
    let text = std::fs::read_to_string(
        root.join("cloudwatch/eventbridge-alarm-single-metric-ec2-cpu.json"),
    )
    .expect("fixture")
    .replace("ServerCpuTooHigh", &format!("status-{instance}"))
    .replace("CPUUtilization", "StatusCheckFailed")
    .replace("i-12345678901234567", instance);
    let name = instance;
    let mut v: Value = serde_json::from_str(&text).expect("JSON");
    let stamp = at.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string();
    v["time"] = json!(at.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    v["id"] = json!(format!("{name}-{state}"));
    v["detail"]["state"]["value"] = json!(state);
    v["detail"]["state"]["timestamp"] = json!(stamp);
    v.to_string()
}

/// Every real payload, and alarms that fire and (some) clear, so the store
/// holds open, closed and healed incidents of several kinds.
fn seed(s: &Service) {
    for f in fixtures() {
        let body = std::fs::read_to_string(&f).expect("read fixture");
        post_event(s, &body);
    }
    // Markup in attacker-controlled text (an alarm's name) must stay text.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/aws-events");
    let hostile =
        std::fs::read_to_string(root.join("cloudwatch/eventbridge-alarm-metric-math.json"))
            .expect("fixture")
            .replace("TotalNetworkTrafficTooHigh", XSS);
    post_event(s, &hostile);
    let now = chrono::Utc::now();
    for (i, clears) in [(1, true), (2, true), (3, false)] {
        let name = format!("i-0da5b0a2d0000000{i}");
        let fired = now - chrono::Duration::minutes(30 + i);
        post_event(s, &alarm(&name, "ALARM", fired));
        if clears {
            let cleared = fired + chrono::Duration::seconds(40 * i);
            post_event(s, &alarm(&name, "OK", cleared));
        }
    }
}

fn artifacts_dir() -> PathBuf {
    let dir = std::env::var_os("HEALER_ARTIFACTS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR").map(|t| PathBuf::from(t).join("artifacts"))
        })
        .unwrap_or_else(std::env::temp_dir)
        .join("dashboard");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

/// `healer incidents stats --json` on the service's store, as rows by key.
fn cli_stats(s: &Service) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_healer"))
        .args([
            "incidents",
            "stats",
            "--json",
            "--since",
            "2000-01-01T00:00:00Z",
        ])
        .env("HEALER_DATA_DIR", &s.data)
        .env_remove("HEALER_STORE")
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("stats JSON");
    v["rows"].as_array().expect("rows").clone()
}

/// A read route's JSON, with the token.
fn get(s: &Service, path: &str) -> Value {
    let auth = format!("Bearer {TOKEN}");
    let (status, text) = http(&s.url, "GET", path, &[("Authorization", &auth)], "");
    assert_eq!(status, 200, "{path}: {text}");
    serde_json::from_str(&text).expect("JSON")
}

/// Checks the incident page shows every stage the record has and every
/// verdict's reason; the record.
fn incident_page(b: &Browser, s: &Service, id: &str) -> Value {
    b.view("incident");
    let record = get(s, &format!("/incidents/{id}"));
    for stage in record["timestamps"].as_object().expect("timestamps").keys() {
        assert_eq!(
            b.js(
                "const li = document.querySelector(`#timeline li[data-stage='${arguments[0]}']`);
                 return !!li && !li.classList.contains('missing') && !!li.querySelector('time')",
                json!([stage]),
            ),
            json!(true),
            "stage {stage} of {id}"
        );
    }
    let text = b
        .js(
            "return document.getElementById('main').innerText",
            json!([]),
        )
        .as_str()
        .expect("text")
        .to_owned();
    for v in record["verdicts"].as_array().expect("verdicts") {
        let reason = v["reason"].as_str().expect("reason");
        assert!(
            text.contains(reason),
            "verdict {reason:?} of {id} not shown"
        );
    }
    if let Some(p) = record["provenance"].as_object() {
        for shown in [&p["policy"]["name"], &p["policy"]["version"]] {
            assert!(
                text.contains(shown.as_str().expect("text")),
                "{shown} of {id}"
            );
        }
    }
    record
}

/// Uploads `component` with the policies page's file input and push button
/// (the confirmation answered yes and remembered in `window.__asked`), and
/// waits until `swap-test@version` is listed active.
fn push_through_page(b: &Browser, component: &str, version: &str) {
    b.js(
        "window.confirm = (m) => { window.__asked = m; return true; }",
        json!([]),
    );
    b.type_into("#policy-file", component);
    b.click("#policy-push");
    b.wait(
        &format!("swap-test@{version} active"),
        Duration::from_secs(30),
        &format!(
            "return [...document.querySelectorAll(\"section[data-policy='swap-test'] tbody tr\")]
                .some(tr => tr.children[0].textContent === '{version}'
                    && tr.children[1].textContent === 'active')"
        ),
    );
}

/// The rows of a table on the page, as cell texts.
fn table_rows(b: &Browser, css: &str) -> Vec<Vec<String>> {
    let v = b.js(
        "return [...document.querySelectorAll(arguments[0] + ' tbody tr')]
            .map(tr => [...tr.children].map(td => td.textContent.trim()))",
        json!([css]),
    );
    serde_json::from_value(v).expect("rows")
}

fn no_console_errors(b: &Browser, page: &str) {
    let errors: Vec<_> = b
        .console()
        .into_iter()
        .filter(|(level, _)| level == "SEVERE")
        .collect();
    assert!(errors.is_empty(), "console errors on {page}: {errors:?}");
}

fn sign_in(b: &Browser, s: &Service, token: &str) {
    b.go(&format!("{}/#/policies", s.url));
    b.wait(
        "the token prompt or the view",
        Duration::from_secs(10),
        "return !document.getElementById('token-panel').hidden || document.body.dataset.view",
    );
    b.click("#token-button");
    b.type_into("#token-input", token);
    b.js("document.body.dataset.view = ''", json!([]));
    b.click("#token-save");
    b.wait(
        "the policies view after the token",
        Duration::from_secs(10),
        "return (document.body.dataset.view || '').startsWith('policies')",
    );
    // The 401s before the token was entered (Chromium logs each as an error).
    b.console();
}

#[test]
fn the_dashboard_shows_the_store_live_and_swaps_policies_with_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start(dir.path());
    seed(&s);
    let shots = artifacts_dir();
    let b = Browser::start();

    // Without the token the page loads, asks for it, and shows no data.
    b.go(&format!("{}/", s.url));
    b.wait(
        "the token prompt",
        Duration::from_secs(10),
        "return !document.getElementById('token-panel').hidden",
    );
    assert_eq!(
        b.js(
            "return document.querySelectorAll('#by-kind').length",
            json!([])
        ),
        json!(0)
    );
    // The 401s are the only console errors so far: Chromium logs each.
    let early: Vec<_> = b
        .console()
        .into_iter()
        .filter(|(l, m)| l == "SEVERE" && !m.contains("401"))
        .collect();
    assert!(early.is_empty(), "{early:?}");

    // Overview: the numbers `healer incidents stats` prints.
    sign_in(&b, &s, TOKEN);
    b.go(&format!("{}/#/?since=2000-01-01T00:00:00Z", s.url));
    b.view("overview");
    let cli = cli_stats(&s);
    let page = table_rows(&b, "#by-kind");
    assert_eq!(page.len(), cli.len(), "{page:?} vs {cli:?}");
    for row in &cli {
        let key = row["key"].as_str().expect("key");
        let shown = page
            .iter()
            .find(|r| r[0] == key)
            .unwrap_or_else(|| panic!("no row {key} in {page:?}"));
        for (i, field) in [(1, "count"), (2, "healed"), (3, "open")] {
            assert_eq!(shown[i], row[field].to_string(), "{key} {field}");
        }
    }
    let total = |f: &str| cli.iter().map(|r| r[f].as_u64().expect("n")).sum::<u64>();
    let card = |id: &str| {
        b.js(
            "return document.querySelector('#' + arguments[0] + ' .n').textContent",
            json!([id]),
        )
    };
    assert_eq!(card("w-count"), json!(total("count").to_string()));
    assert_eq!(card("w-healed"), json!(total("healed").to_string()));
    assert_eq!(card("open-total"), json!(total("open").to_string()));
    assert!(total("healed") >= 2, "the cleared alarms healed: {cli:?}");
    assert!(
        b.js(
            "return document.getElementById('mode').textContent",
            json!([])
        )
        .as_str()
        .is_some_and(|m| m.starts_with("DRY RUN"))
    );
    b.screenshot(&shots.join("overview.png"));
    no_console_errors(&b, "the overview");

    // Incidents: the live list; a new incident appears without a reload.
    b.go(&format!("{}/#/incidents", s.url));
    b.view("incidents");
    b.wait(
        "the live feed",
        Duration::from_secs(5),
        "return document.getElementById('live-status').dataset.live === 'on'",
    );
    let before = table_rows(&b, "#incidents").len();
    assert!(before > 5, "{before} rows");
    b.js("window.__loaded = true", json!([]));
    let posted = Instant::now();
    post_event(
        &s,
        &alarm("i-0f7e5a0000000000f", "ALARM", chrono::Utc::now()),
    );
    b.wait(
        "the new incident in the list",
        Duration::from_secs(2),
        "return [...document.querySelectorAll('#incidents tbody tr')]
            .some(tr => tr.textContent.includes('i-0f7e5a0000000000f'))",
    );
    let appeared = posted.elapsed();
    assert_eq!(
        b.js("return window.__loaded === true", json!([])),
        json!(true),
        "the page reloaded"
    );
    assert!(appeared < Duration::from_secs(2), "{appeared:?}");
    b.screenshot(&shots.join("incidents.png"));

    // Filters narrow the list.
    b.js(
        "document.getElementById('f-kind').value = 'instance-impaired'",
        json!([]),
    );
    b.click("#apply");
    b.wait(
        "the filtered list",
        Duration::from_secs(5),
        "return location.hash.includes('kind=instance-impaired')
            && document.querySelectorAll('#incidents tbody tr').length > 0",
    );
    let alarms = table_rows(&b, "#incidents");
    assert!(alarms.len() < before + 1, "{} of {before}", alarms.len());
    assert!(
        alarms.iter().all(|r| r[1] == "instance-impaired"),
        "{alarms:?}"
    );
    no_console_errors(&b, "the incidents");

    // One incident: every stage it went through and every verdict: the
    // alarm that cleared, and one a policy decided.
    let cleared = b.js(
        "const a = [...document.querySelectorAll('#incidents tbody tr')]
            .find(tr => tr.textContent.includes('i-0da5b0a2d00000001'));
         return a && a.dataset.id",
        json!([]),
    );
    let cleared = cleared
        .as_str()
        .expect("the cleared alarm is listed")
        .to_owned();
    b.click(&format!("tr[data-id='{cleared}'] a"));
    let record = incident_page(&b, &s, &cleared);
    assert!(record["timestamps"].get("healed").is_some(), "{record}");
    let decided = get(&s, "/incidents?limit=500")["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|r| r["verdicts"].as_array().is_some_and(|v| !v.is_empty()))
        .map(|r| r["incident"]["id"].as_str().expect("id").to_owned())
        .expect("a policy decided some fixture");
    b.go(&format!("{}/#/incident/{decided}", s.url));
    incident_page(&b, &s, &decided);
    b.screenshot(&shots.join("incident.png"));
    b.js(
        "document.getElementById('decision').scrollIntoView()",
        json!([]),
    );
    b.screenshot(&shots.join("incident-decision.png"));
    no_console_errors(&b, "an incident");

    // The hostile alarm's incident page shows its name as text, runs nothing.
    let hostile = get(&s, "/incidents?kind=alarm&limit=500")["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|r| {
            r["incident"]["resource"]["id"]
                .as_str()
                .is_some_and(|id| id.contains("<img"))
        })
        .map(|r| r["incident"]["id"].as_str().expect("id").to_owned())
        .expect("the hostile alarm was recorded");
    b.go(&format!("{}/#/incident/{hostile}", s.url));
    b.view("incident");
    assert_eq!(
        b.js(
            "return [window.__xss === undefined, document.querySelectorAll('main img, main script').length,
                     document.getElementById('main').innerText.includes(arguments[0])]",
            json!([XSS])
        ),
        json!([true, 0, true])
    );

    // MTTR.
    b.go(&format!("{}/#/mttr?since=2000-01-01T00:00:00Z", s.url));
    b.view("mttr");
    assert_eq!(table_rows(&b, "#stats").len(), cli.len());
    b.screenshot(&shots.join("mttr.png"));

    // Policies: a push through the page swaps the version.
    b.go(&format!("{}/#/policies", s.url));
    b.view("policies");
    push_through_page(&b, artifacts::SWAP_V1, "1");
    push_through_page(&b, artifacts::SWAP_V2, "2");
    assert!(
        b.js("return window.__asked", json!([]))
            .as_str()
            .is_some_and(|m| m.starts_with("Push")),
        "the push asked for confirmation"
    );
    b.screenshot(&shots.join("policies.png"));
    no_console_errors(&b, "the policies");

    // A phone-width overview.
    b.resize(390, 844);
    b.go(&format!("{}/#/?since=2000-01-01T00:00:00Z", s.url));
    b.view("overview");
    b.screenshot(&shots.join("overview-phone.png"));
    assert_eq!(
        b.js(
            "return document.documentElement.scrollWidth <= window.innerWidth",
            json!([])
        ),
        json!(true),
        "the overview scrolls sideways on a phone: {}",
        b.js(
            "return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1).slice(0, 8).map(e => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right)).join(', ') + ' / ' + window.innerWidth",
            json!([])
        )
    );
    b.resize(1280, 900);

    // A wrong token: the push fails cleanly, the version stays.
    sign_in(&b, &s, "wrong-token-0123456789");
    b.go(&format!("{}/#/policies", s.url));
    b.wait(
        "the refusal",
        Duration::from_secs(10),
        "return document.body.dataset.view === 'policies-failed'
            && !document.getElementById('token-panel').hidden",
    );
    let (status, _) = http(
        &s.url,
        "POST",
        "/policies",
        &[("Authorization", "Bearer wrong-token-0123456789")],
        "x",
    );
    assert_eq!(status, 401);
    let (_, text) = http(&s.url, "GET", "/health", &[], "");
    assert!(text.contains("swap-test@2"), "{text}");
    println!(
        "dashboard: new incident listed {appeared:?} after its POST; screenshots in {}",
        shots.display()
    );
}
