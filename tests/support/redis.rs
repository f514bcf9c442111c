//! A throwaway `redis-server` for one test: its own free port and temporary directory (append-only file, fsync on
//! every write, no snapshots; or, to play a Redis that loses acknowledged writes, snapshots only), killed when the
//! guard drops, also when the test panics. One implementation for the
//! integration tests and the in-crate contract suites (`src/server/store/mod.rs` includes this file by path), so
//! it needs only `std` and `tempfile`. `command` speaks just enough RESP to drive the server without a client crate.
//!
//! A missing `redis-server` fails the test with a message saying how to install it: these tests never skip.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a starting server may take to answer PING (an AOF replay included).
const START_WITHIN: Duration = Duration::from_secs(10);

/// Every write on disk before it is answered: what the deployment asks of Redis.
const DURABLE: &[&str] = &["--appendonly", "yes", "--appendfsync", "always", "--save", ""];
/// Snapshots only, taken when the test says `SAVE`: a restart comes back with the last snapshot, losing what was
/// acknowledged after it (as a failover to a lagging replica, or `appendfsync everysec` after a crash, does).
const SNAPSHOTS_ONLY: &[&str] = &["--appendonly", "no", "--save", ""];

pub struct TestRedis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    persistence: &'static [&'static str],
}

/// A RESP reply, as far as the tests need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Vec<Reply>),
}

impl Reply {
    /// The text of a bulk or status reply (None for nil or another kind).
    pub fn text(&self) -> Option<&str> {
        match self {
            Reply::Bulk(Some(text)) | Reply::Status(text) => Some(text),
            _ => None,
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            Reply::Int(n) => Some(*n),
            _ => None,
        }
    }
}

impl TestRedis {
    /// Starts a server on a free port in a fresh temporary directory and waits until it answers.
    pub fn start() -> TestRedis {
        Self::start_with(DURABLE)
    }

    /// A server that keeps only the snapshots the test takes (`SAVE`): killed and restarted, it comes back with the
    /// last one and forgets every write acknowledged since.
    pub fn start_snapshots_only() -> TestRedis {
        Self::start_with(SNAPSHOTS_ONLY)
    }

    fn start_with(persistence: &'static [&'static str]) -> TestRedis {
        let dir = tempfile::tempdir().expect("a temporary directory for redis-server");
        let port = free_port();
        let mut redis = TestRedis { child: None, port, dir, persistence };
        redis.launch();
        redis
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn launch(&mut self) {
        let spawned = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--dir"])
            .arg(self.dir.path())
            .args(self.persistence)
            .args(["--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed (not on PATH): these tests need it; run scripts/setup.sh \
                 (Debian: apt-get install redis-server)"
            ),
            Err(err) => panic!("cannot start redis-server: {err}"),
        };
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < START_WITHIN {
            if self.try_command(&["PING"]).is_ok_and(|reply| reply == Reply::Status("PONG".into())) {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|child| child.try_wait().ok().flatten()) {
                panic!("redis-server on port {} exited at start: {status}", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not answer PING within {START_WITHIN:?}", self.port);
    }

    /// SIGKILL: no shutdown code runs; what was fsynced to the append-only file is all that survives.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory (it replays its append-only file, or loads its
    /// snapshot).
    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    /// Kills the server, deletes everything it kept and starts it again empty on the same port.
    pub fn restart_empty(&mut self) {
        self.kill9();
        for entry in std::fs::read_dir(self.dir.path()).expect("the redis directory").flatten() {
            let path: PathBuf = entry.path();
            let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        }
        self.launch();
    }

    /// Runs one command; panics on a transport failure (the server is expected up).
    pub fn command(&self, args: &[&str]) -> Reply {
        self.try_command(args).unwrap_or_else(|err| panic!("redis command {args:?} failed: {err}"))
    }

    pub fn try_command(&self, args: &[&str]) -> std::io::Result<Reply> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes())?;
        read_reply(&mut BufReader::new(stream))
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A port nobody listens on now (the kernel's pick for port 0).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

fn read_reply(reader: &mut impl BufRead) -> std::io::Result<Reply> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
    }
    let line = line.trim_end_matches("\r\n");
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad reply line {line:?}"));
    let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
    let number = || rest.parse::<i64>().map_err(|_| bad());
    Ok(match kind {
        "+" => Reply::Status(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Int(number()?),
        "$" if number()? < 0 => Reply::Bulk(None),
        "$" => {
            let mut bytes = vec![0; number()? as usize + 2];
            reader.read_exact(&mut bytes)?;
            bytes.truncate(bytes.len() - 2);
            Reply::Bulk(Some(String::from_utf8_lossy(&bytes).into_owned()))
        }
        "*" if number()? < 0 => Reply::Array(Vec::new()),
        "*" => Reply::Array((0..number()?).map(|_| read_reply(reader)).collect::<Result<_, _>>()?),
        _ => return Err(bad()),
    })
}
