//! Test helpers: the real `hermes serve` binary on a loopback port chosen by the OS, and
//! [`Proc`], the guard every process a test starts is held by.
#![allow(dead_code)]

pub mod gate;
pub mod inprocess;
pub mod kafka;
pub mod redis;
pub mod stream;

use std::io::{BufRead, BufReader};
use std::ops::{Deref, DerefMut};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A process a test started. Dropped, however the test ends (a panic unwinds through the
/// drop), it is killed with SIGKILL and reaped, so no test leaves a process behind:
///
/// - [`Proc::spawn`]: a program that does not fork (hermes, redis-server, tansu). It stays in
///   the test's process group, so a Ctrl-C of `cargo test` reaches it too; the drop kills it.
/// - [`Proc::spawn_group`]: a script, or a program that starts helpers (Chromium). It leads a
///   process group of its own and the drop kills the whole group, whatever it started.
///   Daemons that leave the group (`setsid`, as slurmctld and munged do) need their own stop:
///   see `Cluster` in tests/label.rs.
///
/// Both also get SIGKILL when the thread that spawned them dies (`PR_SET_PDEATHSIG`): a test
/// binary killed outright (a harness timeout, `kill -9`, an abort) leaves nothing either.
/// Spawn from a thread that lives as long as the process should (the test's own thread or a
/// runtime worker), never from `spawn_blocking` or a scoped thread.
pub struct Proc {
    child: Child,
    group: bool,
}

impl Proc {
    /// Starts `cmd` in the test's process group.
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Proc> {
        Self::start(cmd, false)
    }

    /// Starts `cmd` as the leader of a process group of its own.
    pub fn spawn_group(cmd: &mut Command) -> std::io::Result<Proc> {
        Self::start(cmd, true)
    }

    fn start(cmd: &mut Command, group: bool) -> std::io::Result<Proc> {
        if group {
            cmd.process_group(0);
        }
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(Proc {
            child: cmd.spawn()?,
            group,
        })
    }

    /// Runs `cmd` to its end in a group of its own (see [`Proc::spawn_group`]), then kills
    /// whatever it left running in that group.
    pub fn run_group(cmd: &mut Command) -> std::io::Result<ExitStatus> {
        let mut p = Self::spawn_group(cmd)?;
        p.child.wait()
    }

    /// Sends `signal` (`libc::SIGTERM`, ...) to the process, or to its group; nothing once
    /// it has exited.
    pub fn signal(&mut self, signal: i32) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let pid = self.child.id() as i32;
        // SAFETY: plain system call; the pid is our own child, not reaped yet (or its group).
        unsafe {
            libc::kill(if self.group { -pid } else { pid }, signal);
        }
    }

    /// SIGKILL (to the group for a group) and reap: `kill -9`.
    pub fn kill9(&mut self) {
        if self.group {
            // The group may outlive its leader: signal it even after the leader was reaped.
            // SAFETY: plain system call on our own process group.
            unsafe {
                libc::kill(-(self.child.id() as i32), libc::SIGKILL);
            }
        }
        // A no-op once the child was reaped, so never a signal to a reused pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The exit status, waiting at most `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait for a child") {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub struct Server {
    pub child: Proc,
    pub base: String,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `hermes serve --port 0` with extra flags and waits until `/readyz` is 200.
    pub async fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        let mut child = Proc::spawn(
            Command::new(env!("CARGO_BIN_EXE_hermes"))
                .arg("serve")
                .args(["--port", "0", "--log-format", "json"])
                .args(extra)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&log).unwrap()),
        )
        .expect("spawn hermes serve");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let base = first
            .trim()
            .strip_prefix("hermes listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}; log {}", log.display()))
            .to_string();
        let mut server = Server {
            child,
            base,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(r) = client().get(server.url("/readyz")).send().await
                && r.status() == 200
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "server not ready; log:\n{}",
                server.log_text()
            );
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("server exited ({status}); log:\n{}", server.log_text());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET `path` and return the body as text.
    pub async fn get_text(&self, path: &str) -> String {
        client()
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// GET `path` and parse the body as JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        client()
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (what a container runtime sends).
    pub fn terminate(&mut self) {
        self.child.signal(libc::SIGTERM);
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// `n` wiki texts spread over the corpus (it is grouped by topic).
pub fn wiki_texts(n: usize) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/data/wiki.jsonl");
    let docs = hermes::corpus::read_jsonl(&path, "text", None).expect("run `make setup`");
    let step = (docs.len() / n).max(1);
    docs.into_iter()
        .step_by(step)
        .take(n)
        .map(|d| d.text)
        .collect()
}

/// The wiki corpus split round-robin into `parts` files `base/in/part-K.jsonl` (each line's
/// object first changed by `edit(line index, object)`), labeled by the static tier into
/// `base/codes` with `carry`. Returns (inputs, codes).
pub fn label_wiki(
    base: &Path,
    parts: usize,
    carry: &[&str],
    edit: impl Fn(usize, &mut serde_json::Value),
) -> (PathBuf, PathBuf) {
    let _ = std::fs::remove_dir_all(base);
    let input = base.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let wiki = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/data/wiki.jsonl"),
    )
    .expect("run `make setup`");
    let mut files = vec![String::new(); parts];
    for (i, line) in wiki.lines().enumerate() {
        let mut o: serde_json::Value = serde_json::from_str(line).unwrap();
        edit(i, &mut o);
        files[i % parts].push_str(&o.to_string());
        files[i % parts].push('\n');
    }
    for (k, f) in files.iter().enumerate() {
        std::fs::write(input.join(format!("part-{k}.jsonl")), f).unwrap();
    }
    let codes = base.join("codes");
    let mut args = vec![
        "label".to_string(),
        "--input".into(),
        input.to_string_lossy().into_owned(),
        "--out".into(),
        codes.to_string_lossy().into_owned(),
        "--encoder".into(),
        "static".into(),
    ];
    if !carry.is_empty() {
        args.extend(["--carry".to_string(), carry.join(",")]);
    }
    let o = Command::new(env!("CARGO_BIN_EXE_hermes"))
        .args(&args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run hermes label");
    assert!(
        o.status.success(),
        "label: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (input, codes)
}

/// Runs the `hermes` binary in the repository root to the end.
pub fn hermes(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hermes"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run hermes")
}

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The requests a page made, from a Chromium net log: the navigation to `base` + `page` and
/// everything it initiated (Chromium's own background requests, which the test flags turn
/// off anyway, are not the page's).
pub fn page_requests(netlog: &str, base: &str, page: &str) -> Vec<String> {
    let log: serde_json::Value = serde_json::from_str(netlog).expect("netlog.json");
    log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            let p = &e["params"];
            let url = p["url"].as_str()?;
            let initiator = p["initiator"].as_str().unwrap_or("");
            (initiator.starts_with(base) || url.starts_with(&format!("{base}{page}")))
                .then(|| url.to_string())
        })
        .collect()
}
