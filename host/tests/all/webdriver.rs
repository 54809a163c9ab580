//! A small blocking WebDriver (W3C) client for the dashboard tests: Debian's
//! `chromedriver` driving `chromium` headless, on 127.0.0.1 and a free port.
//! Missing either binary fails the test (scripts/test installs them).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{free_port, http};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session on it.
pub struct Browser {
    driver: Child,
    endpoint: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(
            &self.endpoint,
            "DELETE",
            &format!("/session/{}", self.session),
            &[],
            "",
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub fn start() -> Browser {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: install Debian's chromium and chromium-driver \
                 (scripts/test does, with apt-get)"
            );
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--window-size=1280,900",
        ];
        let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let mut b = Browser {
            driver,
            endpoint,
            session: String::new(),
            _profile: profile,
        };
        let v = b.call("POST", "/session", &caps);
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_owned();
        b
    }

    /// One WebDriver command; its `value`.
    fn call(&self, method: &str, path: &str, body: &Value) -> Value {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let (status, text) = http(
            &self.endpoint,
            method,
            path,
            &[("Content-Type", "application/json")],
            &body,
        );
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
        assert!(status == 200, "{method} {path} -> {status}: {v}");
        v["value"].clone()
    }

    fn session_call(&self, method: &str, path: &str, body: &Value) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Opens a URL.
    pub fn go(&self, url: &str) {
        self.session_call("POST", "/url", &json!({ "url": url }));
    }

    /// Runs a script in the page (`arguments[0]`… are `args`); its result.
    pub fn js(&self, script: &str, args: Value) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            &json!({ "script": script, "args": args }),
        )
    }

    /// Waits until `script` returns something truthy, up to `within`; that value.
    pub fn wait(&self, what: &str, within: Duration, script: &str) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.js(script, json!([]));
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            if truthy {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?} (page: {})",
                self.js("return document.body.innerText.slice(0, 2000)", json!([]))
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the view `name` to have rendered (the router marks the body).
    pub fn view(&self, name: &str) {
        self.wait(
            &format!("the {name} view"),
            Duration::from_secs(10),
            &format!("return document.body.dataset.view === {name:?}"),
        );
    }

    fn element(&self, css: &str) -> String {
        let v = self.session_call(
            "POST",
            "/element",
            &json!({"using": "css selector", "value": css}),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    /// Clicks an element as a user would.
    pub fn click(&self, css: &str) {
        let e = self.element(css);
        self.session_call("POST", &format!("/element/{e}/click"), &json!({}));
    }

    /// Types into an element (a file input takes a path).
    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css);
        self.session_call(
            "POST",
            &format!("/element/{e}/value"),
            &json!({ "text": text }),
        );
    }

    /// Sets the window's size.
    pub fn resize(&self, width: u32, height: u32) {
        self.session_call(
            "POST",
            "/window/rect",
            &json!({"width": width, "height": height}),
        );
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self, to: &Path) {
        let v = self.session_call("GET", "/screenshot", &Value::Null);
        let png = crate::support::base64(v.as_str().expect("base64 PNG"));
        std::fs::write(to, png).expect("write screenshot");
    }

    /// The browser's console entries since the last call, as (level, message).
    pub fn console(&self) -> Vec<(String, String)> {
        let v = self.session_call("POST", "/se/log", &json!({"type": "browser"}));
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["level"].as_str().unwrap_or_default().to_owned(),
                            e["message"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}
