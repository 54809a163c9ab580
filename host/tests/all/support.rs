//! Helpers shared by the integration tests.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use healer::Incident;
use healer::policy::{LoadedPolicy, PolicyEngine, PolicyLimits};

/// A fixed virtual time for decisions.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 10, 5, 0)
        .single()
        .expect("valid time")
}

/// An engine with default limits and no cache.
pub fn engine() -> Arc<PolicyEngine> {
    PolicyEngine::new(PolicyLimits::default(), None).expect("engine")
}

/// Loads a component by path.
pub fn load(engine: &PolicyEngine, path: &str) -> LoadedPolicy {
    engine
        .load(&healer_test_artifacts::bytes(path))
        .unwrap_or_else(|e| panic!("{path} loads: {e}"))
}

/// An incident from JSON.
pub fn incident(json: &str) -> Incident {
    Incident::from_json(json.as_bytes()).expect("valid incident JSON")
}

/// An `alarm` incident whose reason selects the hostile guest's behaviour.
pub fn alarm(reason: &str) -> Incident {
    incident(&format!(
        r#"{{"kind":"alarm","source":"test","reason":"{reason}",
            "resource":{{"kind":"alarm","id":"arn:aws:cloudwatch:us-east-1:1:alarm:{reason}"}},
            "detected-at":"2024-05-01T10:00:00Z"}}"#
    ))
}

/// `/health` of a service on `listen`, through `healer health` (the
/// container's probe): the report when it answers 200.
pub fn health(listen: &str) -> Option<serde_json::Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_healer"))
        .args(["health", "--listen", listen])
        .output()
        .expect("runs");
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("health JSON"))
}

/// A free port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `healer run` on `listen`, polling `queue` on the AWS at `endpoint` (moto),
/// with the policies in `policies` and SQLite in `data`; stderr piped.
pub fn spawn_run(
    policies: &std::path::Path,
    queue: &str,
    listen: &str,
    data: &std::path::Path,
    endpoint: &str,
) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_healer"))
        .args(["run", "--no-cache"])
        .env("HEALER_POLICIES", policies)
        .env("HEALER_SQS_QUEUE_URL", queue)
        .env("HEALER_LISTEN", listen)
        .env("HEALER_DATA_DIR", data)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("healer run starts")
}

/// Creates an SQS queue named `name` and returns its URL.
pub async fn queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("create_queue")
        .queue_url()
        .expect("queue url")
        .to_owned()
}

/// A topic standing for the team's channel and a queue subscribed to it
/// standing for their inbox (raw delivery when `raw`): (topic ARN, queue URL).
pub async fn inbox(shared: &aws_config::SdkConfig, name: &str, raw: bool) -> (String, String) {
    let sns = aws_sdk_sns::Client::new(shared);
    let sqs = aws_sdk_sqs::Client::new(shared);
    let topic = sns
        .create_topic()
        .name(name)
        .send()
        .await
        .expect("create_topic")
        .topic_arn()
        .expect("topic arn")
        .to_owned();
    let queue = queue(&sqs, &format!("{name}-inbox")).await;
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("get_queue_attributes")
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .expect("queue arn")
        .to_owned();
    let mut subscribe = sns
        .subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(arn);
    if raw {
        subscribe = subscribe.attributes("RawMessageDelivery", "true");
    }
    subscribe.send().await.expect("subscribe");
    (topic, queue)
}

/// The first line of `child`'s stderr (piped) that `wanted` accepts, within
/// `timeout`; the child is killed either way.
pub fn first_stderr_line(
    mut child: std::process::Child,
    wanted: fn(&str) -> bool,
    timeout: std::time::Duration,
) -> Option<String> {
    use std::io::BufRead;
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if wanted(&line) {
                let _ = tx.send(line);
                return;
            }
        }
    });
    let line = rx.recv_timeout(timeout).ok();
    let _ = child.kill();
    let _ = child.wait();
    line
}

/// An `ec2-replace` pipeline on a fresh SQLite store, with instance `i-0abc`
/// opted in (tagged `SelfHeal=true`), judged under `governor`.
pub struct Ec2World {
    _dir: tempfile::TempDir,
    pub store: Arc<dyn healer::store::Store>,
    pub registry: healer::policy::PolicyRegistry,
    pub governor: healer::safety::Governor,
    pub facts: healer::safety::StaticFacts,
}

impl Ec2World {
    /// The world, judged under `governor`.
    pub async fn new(governor: healer::safety::GovernorConfig) -> Self {
        use std::collections::BTreeMap;
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn healer::store::Store> = Arc::new(
            healer::store::SqliteStore::open(&dir.path().join("healer.db"))
                .await
                .expect("store"),
        );
        let registry = healer::policy::PolicyRegistry::new(engine());
        registry
            .swap(
                &healer_test_artifacts::bytes(healer_test_artifacts::EC2_REPLACE),
                healer::policy::PolicyRole::Active,
            )
            .expect("policy");
        let facts = healer::safety::StaticFacts(BTreeMap::from([(
            "i-0abc".to_owned(),
            healer::safety::ResourceFacts {
                tags: Some(BTreeMap::from([("SelfHeal".to_owned(), "true".to_owned())])),
                ..healer::safety::ResourceFacts::default()
            },
        )]));
        Ec2World {
            _dir: dir,
            store,
            registry,
            governor: healer::safety::Governor::new(governor),
            facts,
        }
    }

    /// The pipeline over it.
    pub fn pipeline(&self) -> healer::pipeline::Pipeline<'_> {
        healer::pipeline::Pipeline {
            store: self.store.as_ref(),
            registry: &self.registry,
            governor: &self.governor,
            facts: &self.facts,
        }
    }
}

/// Decodes standard base64 (padding optional).
pub fn base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// One HTTP/1.1 request to `endpoint` (`http://host:port`), answered with
/// `Connection: close`: the status and the body (read to its
/// `Content-Length`, else to the end).
pub fn http(
    endpoint: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use std::io::{BufRead, BufReader, Read, Write};
    let addr = endpoint.trim_start_matches("http://");
    let mut conn =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    conn.write_all(req.as_bytes()).expect("send");
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut length = None;
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header");
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse::<usize>().ok();
        }
    }
    let mut answer = Vec::new();
    match length {
        Some(n) => {
            answer.resize(n, 0);
            reader.read_exact(&mut answer).expect("body");
        }
        None => {
            reader.read_to_end(&mut answer).expect("body");
        }
    }
    (status, String::from_utf8_lossy(&answer).into_owned())
}

/// An alarm whose reason is `reason`, as EventBridge delivers it.
pub fn alarm_event(name: &str, reason: &str) -> String {
    serde_json::json!({
        "version": "0", "id": name, "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch", "account": "123456789012",
        "time": chrono::Utc::now().to_rfc3339(), "region": "us-east-1",
        "resources": [format!("arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}")],
        "detail": {
            "alarmName": name,
            "state": {"value": "ALARM", "reason": reason,
                      "timestamp": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()},
            "previousState": {"value": "OK", "reason": "", "timestamp": "2024-01-01T00:00:00.000+0000"},
            "configuration": {"metrics": []}
        }
    })
    .to_string()
}
