//! The peers the service is measured against: the ceiling, the best of every way of running
//! the encoder flat out ([`Layout::all`]: in this process through the `ort` crate, the
//! encoder + transform + quantizer called directly with no HTTP, and Python `onnxruntime` on
//! the same graph and texts; one session or process per core with one thread each, or one
//! with every core; batches of 1, 4 and 8), and `hermes label` (the batch command) on the same
//! texts.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use hermes::bundle::{LoadOptions, Model};
use hermes::encoder::{Embedder, EncoderConfig, MiniLm, TokenizedText};
use hermes::quantize::CodeSpace;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde_json::json;

use crate::support::load::Texts;
use crate::support::{default_bundle_dir, hermes_bin, root};

/// The batch sizes every ceiling layout is measured at.
pub const BATCHES: [usize; 3] = [1, 4, 8];

/// Which ONNX Runtime runs a ceiling: this process's (the `ort` crate, the library hermes
/// loads) or Python's `onnxruntime` wheel (`scripts/ort_throughput.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Engine {
    Rust,
    Python,
}

/// One way of running the encoder flat out: an engine, how the cores are split, a batch size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Layout {
    pub engine: Engine,
    /// One session (Python: one process) per core with one ONNX Runtime thread each, every
    /// one busy at once; otherwise one session (process) whose threads use every core.
    pub per_core: bool,
    pub batch: usize,
}

impl Layout {
    /// Every layout the ceiling is the best of: both engines, both splits, [`BATCHES`].
    pub fn all() -> Vec<Layout> {
        let mut all = Vec::new();
        for engine in [Engine::Rust, Engine::Python] {
            for per_core in [true, false] {
                for batch in BATCHES {
                    all.push(Layout {
                        engine,
                        per_core,
                        batch,
                    });
                }
            }
        }
        all
    }

    /// E.g. `Python ORT, 2 processes x 1 thread, batch 4`.
    pub fn name(&self) -> String {
        let cores = crate::support::cores();
        let (engine, unit, units) = match self.engine {
            Engine::Rust => ("Rust ORT (in-process)", "session", "sessions"),
            Engine::Python => ("Python ORT", "process", "processes"),
        };
        let split = if self.per_core {
            format!("{cores} {units} x 1 thread")
        } else {
            format!("1 {unit} x {cores} threads")
        };
        format!("{engine}, {split}, batch {}", self.batch)
    }
}

/// What the ceiling layouts run on, loaded once: the in-process encoders of both splits and
/// the texts for Python (the same texts in the same order as the in-process callers take).
pub struct Ceilings {
    model: Arc<Model>,
    /// One session per core, one thread each (`serve`'s layout).
    per_core: Arc<MiniLm>,
    /// One session with a thread per core, spinning (Python's default; the batch commands').
    one: Arc<MiniLm>,
    /// `{"text": ...}` lines for `scripts/ort_throughput.py`; `None` without the set-up venv.
    python_texts: Option<tempfile::NamedTempFile>,
}

impl Ceilings {
    pub fn load(model: Arc<Model>) -> Self {
        let cores = crate::support::cores();
        let per_core = Arc::new(encoder_with(|c| {
            c.sessions = cores;
            c.intra_threads = 1;
            c.spinning = false;
        }));
        let one = Arc::new(encoder_with(|c| {
            c.sessions = 1;
            c.intra_threads = cores;
            c.spinning = true;
        }));
        let python_texts = python().is_file().then(|| {
            // A fresh sequence from the same seed: the texts the in-process ceiling starts on.
            let mut file = tempfile::NamedTempFile::new().expect("temp file");
            for (_, text) in Texts::wiki_shuffled(crate::TEXTS_SEED).take(4096) {
                writeln!(file, "{}", json!({ "text": text })).expect("write texts");
            }
            file
        });
        Self {
            model,
            per_core,
            one,
            python_texts,
        }
    }

    /// Every layout of [`Layout::all`] for `seconds` each, in order: docs/s and docs per
    /// CPU-second, `None` for Python without the set-up venv.
    pub fn measure(&self, texts: &Arc<Texts>, seconds: f64) -> Vec<(Layout, Option<Rate>)> {
        let mut out = Vec::new();
        for per_core in [true, false] {
            for batch in BATCHES {
                let encoder = if per_core { &self.per_core } else { &self.one };
                let callers = if per_core { crate::support::cores() } else { 1 };
                // The bench process does nothing else meanwhile (the server is another
                // process, idle): its CPU time is the ceiling's.
                let cpu = process_cpu_s();
                let (docs_per_s, docs) =
                    in_process(encoder, &self.model, texts, callers, batch, seconds);
                let rate = Rate {
                    docs_per_s,
                    docs_per_cpu_s: docs as f64 / (process_cpu_s() - cpu).max(1e-9),
                };
                let layout = Layout {
                    engine: Engine::Rust,
                    per_core,
                    batch,
                };
                out.push((layout, Some(rate)));
            }
        }
        for per_core in [true, false] {
            let rates = self.python(per_core, seconds);
            for batch in BATCHES {
                let layout = Layout {
                    engine: Engine::Python,
                    per_core,
                    batch,
                };
                let rate = rates.iter().find(|r| r.0 == batch).map(|r| r.1);
                out.push((layout, rate));
            }
        }
        out
    }

    /// Python `onnxruntime` at every size of [`BATCHES`] in one split (one run of the script:
    /// its start-up is paid once); empty when the venv is missing or the script failed.
    fn python(&self, per_core: bool, seconds: f64) -> Vec<(usize, Rate)> {
        let Some(texts) = &self.python_texts else {
            return Vec::new();
        };
        let cores = crate::support::cores();
        let (processes, threads) = if per_core { (cores, 1) } else { (1, cores) };
        let batches: Vec<String> = BATCHES.iter().map(usize::to_string).collect();
        let out = Command::new(python())
            .arg(root().join("scripts/ort_throughput.py"))
            .arg(default_bundle_dir())
            .arg(texts.path())
            .arg(format!("{seconds}"))
            .args(["--processes", &processes.to_string()])
            .args(["--threads", &threads.to_string()])
            .args(["--batch", &batches.join(",")])
            .stderr(Stdio::inherit())
            .output();
        let Ok(out) = out else {
            return Vec::new();
        };
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace().map(str::parse::<f64>);
                let (b, docs_per_s, docs_per_cpu_s) =
                    (f.next()?.ok()?, f.next()?.ok()?, f.next()?.ok()?);
                Some((
                    b as usize,
                    Rate {
                        docs_per_s,
                        docs_per_cpu_s,
                    },
                ))
            })
            .collect()
    }
}

/// A layout's throughput: documents per second, and per CPU-second its threads or processes
/// used. On a shared machine the first measures this process's share of the cores as much as
/// its speed; the second does not.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Rate {
    pub docs_per_s: f64,
    pub docs_per_cpu_s: f64,
}

/// CPU seconds (user + system) this process used so far.
pub fn process_cpu_s() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// CPU seconds (user + system) process `pid` used so far, from `/proc/<pid>/stat`.
pub fn pid_cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the state, field 3;
    // utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / ticks
}

/// The set-up venv's Python.
fn python() -> std::path::PathBuf {
    root().join(".cache/venv/bin/python")
}

/// The default bundle, its encoder warmed up.
pub fn load_default_bundle() -> Model {
    let model = Model::load(&default_bundle_dir(), &LoadOptions::default())
        .expect("load the default bundle");
    let _ = model.encoder.embed(&["warm-up"]);
    model
}

/// The default bundle's encoder with some session option changed.
pub fn encoder_with(change: impl FnOnce(&mut EncoderConfig)) -> MiniLm {
    let mut config = EncoderConfig::for_dir(&default_bundle_dir());
    change(&mut config);
    MiniLm::load(&config).expect("load the encoder")
}

/// `callers` threads, each embedding and coding batches of `b` on `encoder` for `seconds`:
/// the docs/s of all of them together, and the documents they did.
pub fn in_process(
    encoder: &Arc<MiniLm>,
    model: &Model,
    texts: &Arc<Texts>,
    callers: usize,
    b: usize,
    seconds: f64,
) -> (f64, usize) {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..callers)
            .map(|k| {
                let encoder = encoder.clone();
                s.spawn(move || at(encoder.as_ref(), &model.space, texts, b, seconds, k as u64))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0.0, 0), |acc, (rate, docs)| (acc.0 + rate, acc.1 + docs))
    })
}

/// One caller at one batch size, docs/s over `seconds` and the documents done: chunks of 256 texts tokenized, sorted
/// by token count and cut into batches (almost no padding), embedded and coded. The batches
/// of a chunk run in a shuffled order and the clock is read after each, so a phase lasts
/// `seconds` (not whole chunks) and one cut short is not its chunk's shortest texts.
pub fn at(
    encoder: &dyn Embedder,
    space: &CodeSpace,
    texts: &Texts,
    b: usize,
    seconds: f64,
    seed: u64,
) -> (f64, usize) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let started = Instant::now();
    let mut docs = 0;
    'phase: loop {
        let chunk = texts.take(256);
        let mut tokens: Vec<TokenizedText> = chunk
            .iter()
            .map(|(_, t)| encoder.tokenize(t).expect("tokenize"))
            .collect();
        tokens.sort_by_key(|t| t.ids.len());
        let mut batches: Vec<&[TokenizedText]> = tokens.chunks(b).collect();
        batches.shuffle(&mut rng);
        for batch in batches {
            let refs: Vec<&TokenizedText> = batch.iter().collect();
            let e = encoder.embed_tokens(&refs).expect("embed");
            space.codes(&e).expect("code");
            docs += batch.len();
            if started.elapsed().as_secs_f64() >= seconds {
                break 'phase;
            }
        }
    }
    (docs as f64 / started.elapsed().as_secs_f64(), docs)
}

/// `hermes label` on `n` texts: `(n, docs/s with start-up, docs/s steady)`.
#[derive(Clone, Copy, Default)]
pub struct LabelRate {
    pub docs: usize,
    pub with_startup: f64,
    pub steady: f64,
}

/// `hermes label` (release binary, default flags) on `n` wiki texts in 4 `.jsonl` files:
/// documents per second of the whole run, model loading (and, for minilm, the start-up
/// measurement of the batch size) included, and the steady rate: the same run less the wall
/// time of a run on 4 documents (that fixed start-up cost is seconds; a corpus job runs hours).
pub fn label_throughput(texts: &Texts, n: usize, encoder: &str) -> LabelRate {
    let tiny = label_wall(texts, 4, encoder);
    let wall = label_wall(texts, n, encoder);
    LabelRate {
        docs: n,
        with_startup: n as f64 / wall,
        steady: n as f64 / (wall - tiny).max(1e-3),
    }
}

fn label_wall(texts: &Texts, n: usize, encoder: &str) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let docs = texts.take(n);
    for (f, chunk) in docs.chunks(docs.len().div_ceil(4)).enumerate() {
        let lines: String = chunk
            .iter()
            .map(|(i, t)| json!({"id": format!("l{i}"), "text": t}).to_string() + "\n")
            .collect();
        std::fs::write(dir.path().join(format!("part{f}.jsonl")), lines).expect("write input");
    }
    let started = Instant::now();
    let status = Command::new(hermes_bin())
        .args(["label", "--encoder", encoder, "--input"])
        .arg(dir.path())
        .arg("--out")
        .arg(dir.path().join("out"))
        .current_dir(root())
        .stderr(Stdio::null())
        .status()
        .expect("run hermes label");
    assert!(status.success(), "hermes label failed");
    started.elapsed().as_secs_f64()
}
