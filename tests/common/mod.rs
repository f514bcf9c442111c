//! Test harness: runs the real server binary on port 0 and speaks HTTP to it, like any client would.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broadcasting::shared::wire::{EVENTS_PATH, JOIN_PATH, MESSAGES_PATH, SEND_PATH};
use futures::StreamExt;

#[path = "../support/process.rs"]
mod process;
#[path = "../support/sse.rs"]
mod sse;
use serde::de::DeserializeOwned;
use serde_json::Value;
pub use sse::{SseEvent, SseFrames};

pub struct Server {
    child: Child,
    pub base: String,
    /// Everything the server wrote to standard error; a panic in it fails the test.
    stderr: Arc<Mutex<String>>,
    /// The settings file and data directory; shared with the next server on `restart`.
    dir: Arc<tempfile::TempDir>,
    flags: Vec<String>,
}

impl Server {
    /// Starts `broadcasting` with the given extra flags, an empty settings file and a fresh data directory.
    pub fn start(flags: &[&str]) -> Server {
        Self::start_under(&[], flags)
    }

    /// The same, run by `wrapper` (e.g. `prlimit --nofile=1024:1024`), which must exec the server in its place.
    pub fn start_under(wrapper: &[&str], flags: &[&str]) -> Server {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        std::fs::write(dir.path().join("settings.toml"), "").unwrap();
        let owned = |list: &[&str]| list.iter().map(|f| f.to_string()).collect::<Vec<_>>();
        Self::launch(dir, owned(flags), owned(wrapper)).unwrap_or_else(|(status, stderr)| {
            panic!("the server did not start ({status}):\n{stderr}");
        })
    }

    /// Starts a second server on this one's data directory (and settings): its exit status and standard error if
    /// it does not start.
    pub fn start_beside(&self, flags: &[&str]) -> Result<Server, (std::process::ExitStatus, String)> {
        Self::launch(self.dir.clone(), flags.iter().map(|f| f.to_string()).collect(), Vec::new())
    }

    /// Runs the server with `flags` (under `wrapper`) on a fresh data directory prepared by `prepare`: the server,
    /// or its exit status and standard error if it does not start.
    pub fn try_start_prepared(
        flags: &[&str],
        wrapper: &[&str],
        prepare: impl FnOnce(&std::path::Path),
    ) -> Result<Server, (std::process::ExitStatus, String)> {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        std::fs::write(dir.path().join("settings.toml"), "").unwrap();
        prepare(&dir.path().join("data"));
        let owned = |list: &[&str]| list.iter().map(|f| f.to_string()).collect::<Vec<_>>();
        Self::launch(dir, owned(flags), owned(wrapper))
    }

    /// The same, expecting the server not to start: its exit status and standard error.
    pub fn fails_to_start(
        flags: &[&str],
        wrapper: &[&str],
        prepare: impl FnOnce(&std::path::Path),
    ) -> (std::process::ExitStatus, String) {
        match Self::try_start_prepared(flags, wrapper, prepare) {
            Ok(server) => panic!("the server started at {}", server.base),
            Err(failure) => failure,
        }
    }

    fn start_in(dir: Arc<tempfile::TempDir>, flags: Vec<String>) -> Server {
        Self::launch(dir, flags, Vec::new())
            .unwrap_or_else(|(status, stderr)| panic!("the server did not start ({status}):\n{stderr}"))
    }

    fn launch(
        dir: Arc<tempfile::TempDir>,
        flags: Vec<String>,
        wrapper: Vec<String>,
    ) -> Result<Server, (std::process::ExitStatus, String)> {
        let config = dir.path().join("settings.toml");
        let binary = env!("CARGO_BIN_EXE_broadcasting");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        // Warnings and worse, unless the test asks for more (to check what the log holds).
        if !flags.iter().any(|flag| flag == "--log-level") {
            command.args(["--log-level", "warn"]);
        }
        let mut child = command
            .args(["--addr", "127.0.0.1:0", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            // Tests send thousands of messages in seconds; those about rate limits give `--send-rate` themselves.
            .env("BROADCASTING_SEND_RATE", "0")
            // Every test client is 127.0.0.1: the per-address budgets and stream cap are lifted too, except where
            // tested.
            .env("BROADCASTING_ADDRESS_RATE", "0")
            .env("BROADCASTING_MAX_STREAMS_PER_ADDRESS", "0")
            .args(&flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the server binary");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let Some(base) = line.trim().strip_prefix("broadcasting listening on ").map(str::to_owned) else {
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
            let status = child.wait().unwrap();
            return Err((status, format!("{line}{stderr}")));
        };
        let stderr = Arc::new(Mutex::new(String::new()));
        let (pipe, sink) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("server: {line}");
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        Ok(Server { child, base, stderr, dir, flags })
    }

    /// Everything the server wrote to standard error so far.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Whether the server's standard error shows `text` within 5 s.
    pub fn logs_within(&self, text: &str) -> bool {
        for _ in 0..50 {
            if self.log().contains(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// The data directory.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops this server the hard way (SIGKILL: no shutdown code runs) and starts another on the same data.
    pub fn crash_and_restart(mut self) -> Server {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        Self::start_in(self.dir.clone(), self.flags.clone())
    }

    /// Stops this server with SIGTERM, waits for it to exit, and starts another on the same data.
    pub fn restart(mut self) -> Server {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "a SIGTERM'd server exits cleanly: {exit:?}");
        Self::start_in(self.dir.clone(), self.flags.clone())
    }

    /// Sends SIGTERM and waits for the process to exit: its exit status and how long that took.
    pub fn terminate(mut self) -> (std::process::ExitStatus, Duration) {
        let started = std::time::Instant::now();
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        (exit, started.elapsed())
    }

    /// The server process's resident memory, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        process::rss_bytes(self.child.id()).unwrap()
    }

    /// `host:port`, for connections made by hand.
    pub fn address(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A new "browser": its own cookie jar, so its own session group.
    pub fn browser(&self) -> Browser {
        Browser { http: reqwest::Client::builder().cookie_store(true).build().unwrap(), base: self.base.clone() }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let stderr = self.stderr.lock().unwrap();
            assert!(
                !stderr.contains("panicked") && !stderr.contains("stack backtrace"),
                "the server panicked:\n{stderr}"
            );
        }
    }
}

#[derive(Clone)]
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
}

/// A status and a JSON body.
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn ok<T: DeserializeOwned>(self) -> T {
        assert_eq!(self.status, 200, "unexpected answer: {}", self.body);
        serde_json::from_value(self.body).unwrap()
    }

    /// Asserts a refusal with this status and kind; answers the message.
    pub fn refused(self, status: u16, kind: &str) -> String {
        assert_eq!((self.status, self.body["kind"].as_str()), (status, Some(kind)), "answer: {}", self.body);
        let message = self.body["message"].as_str().unwrap().to_owned();
        assert!(!message.is_empty());
        message
    }
}

impl Browser {
    async fn answer(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Answer { status, body }
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Answer {
        Self::answer(self.http.post(format!("{}{path}", self.base)).form(form).send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        Self::answer(self.http.get(format!("{}{path}", self.base)).send().await.unwrap()).await
    }

    pub async fn join(&self, name: &str) -> String {
        let joined: Value = self.post(JOIN_PATH, &[("username", name)]).await.ok();
        joined["ticket"].as_str().unwrap().to_owned()
    }

    pub async fn send(&self, ticket: &str, text: &str) -> Value {
        self.post(SEND_PATH, &[("ticket", ticket), ("text", text)]).await.ok()
    }

    /// The `Broadcasting-Epoch` of a page of the log.
    pub async fn epoch(&self) -> String {
        let response = self.http.get(format!("{}{MESSAGES_PATH}", self.base)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let epoch = response.headers().get(broadcasting::shared::wire::EPOCH_HEADER).expect("an epoch header");
        epoch.to_str().unwrap().to_owned()
    }

    pub async fn messages(&self, query: &str) -> Vec<Value> {
        self.get(&format!("{MESSAGES_PATH}{query}")).await.ok()
    }

    pub async fn events(&self) -> Events {
        self.events_with(&[]).await
    }

    pub async fn events_with(&self, headers: &[(&str, &str)]) -> Events {
        self.events_at(EVENTS_PATH, headers).await
    }

    /// The stream at `path` (`/events?feed=a&feed=b`, …), which must open.
    pub async fn events_at(&self, path: &str, headers: &[(&str, &str)]) -> Events {
        let mut request = self.http.get(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(header("content-type").as_deref(), Some("text/event-stream"));
        assert_eq!(header("x-accel-buffering").as_deref(), Some("no"));
        Events { body: response.bytes_stream().boxed(), frames: SseFrames::default() }
    }
}

/// `broadcasting_group=…`: the session-group cookie a response set, as a `Cookie` header sends it back.
pub fn group_cookie(headers: &reqwest::header::HeaderMap) -> String {
    let set = headers.get("set-cookie").expect("a group cookie").to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

/// The texts of a page of messages, in order.
pub fn texts(page: &[Value]) -> Vec<String> {
    page.iter().map(|m| m["text"].as_str().unwrap().to_owned()).collect()
}

/// The ids of a page of messages, in order.
pub fn ids(page: &[Value]) -> Vec<u64> {
    page.iter().map(|m| m["id"].as_u64().unwrap()).collect()
}

/// An open `/events` stream, parsed frame by frame.
pub struct Events {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    frames: SseFrames,
}

impl Events {
    /// The next `NewMessage` (keep-alives, `retry:` frames and `PresenceChanged` are skipped), or None if nothing
    /// comes within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<SseEvent> {
        self.next_named_within(wait, |name| name == broadcasting::shared::wire::NEW_MESSAGE).await
    }

    /// The next event of any name (keep-alives and `retry:` frames are skipped).
    pub async fn next_any_within(&mut self, wait: Duration) -> Option<SseEvent> {
        self.next_named_within(wait, |name| !name.is_empty()).await
    }

    async fn next_named_within(&mut self, wait: Duration, wanted: impl Fn(&str) -> bool) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(event) = self.frames.next_frame() {
                if wanted(&event.event) {
                    return Some(event);
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next()).await.ok()??.ok()?;
            self.frames.push(&chunk);
        }
    }

    pub async fn next(&mut self) -> SseEvent {
        self.next_within(Duration::from_secs(5)).await.expect("a NewMessage event within 5 s")
    }

    /// Asserts that no event arrives for a while.
    pub async fn assert_quiet(&mut self) {
        if let Some(event) = self.next_any_within(Duration::from_millis(400)).await {
            panic!("unexpected event {event:?}");
        }
    }
}
