//! Dynamic batching: documents from all concurrent requests are gathered into encoder batches.
//!
//! A [`Batcher`] is a cheap cloneable handle to a bounded queue served by worker threads (one
//! per encoder session); the [`Workers`] guard returned beside it closes the queue and joins
//! the threads when dropped, so an early return cannot leave them running.
//!
//! Admission: a request reserves queue slots for its documents up front; when the queue is
//! full it gets [`BatchError::Overloaded`] at once instead of waiting in an unbounded line. A
//! request larger than the whole queue is refused (the server checks at start-up that the
//! queue holds several of the largest requests). Documents whose caller has gone away are
//! dropped before they are encoded.
//!
//! Batching: tokenization and inference run on the worker side, off the async runtime. A
//! worker waits at most `max_wait` after the oldest queued document for a batch to fill, then
//! sorts a window of queued documents by length, cuts it into batches bounded by
//! `max_batch_docs` and `max_batch_tokens` (padded tokens), runs the batch holding the oldest
//! document and leaves the rest queued for whichever worker is free next. A batch carries at
//! most as much padding as batching gains on this CPU (both the batch size and that gain are
//! measured at start-up, see [`crate::encoder::batch_shape`]). An embedding never depends on
//! its batch neighbours (the encoder's padding invariance is tested), so neither does a code.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::encoder::{Embedder, EncoderError, TokenizedText};

/// The padding allowance before anything is measured: a quarter of the real tokens.
pub const DEFAULT_PADDING_PERMILLE: usize = 250;

/// How batches are formed and how much may wait.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Padded tokens (longest × documents) per encoder batch at most.
    pub max_batch_tokens: usize,
    /// Documents per encoder batch at most.
    pub max_batch_docs: usize,
    /// How long a worker waits for a batch to fill after the oldest queued document arrived.
    pub max_wait: Duration,
    /// Documents queued or being tokenized at most; beyond that, requests are refused.
    pub max_queue_docs: usize,
    /// Worker threads, one per encoder session.
    pub workers: usize,
    /// Documents a worker sorts by length, at least, before cutting its next batch from them
    /// (it sorts at least 4 batches' worth anyway). Larger windows mean less padding and hold
    /// no one up, since a worker runs only the batch holding the oldest document: offline
    /// labeling sorts its whole chunk, the server a few requests' worth.
    pub min_window_docs: usize,
}

impl BatchConfig {
    /// For a corpus read in chunks of `chunk` documents, `in_flight` chunks at a time, by
    /// `sessions` encoder sessions: no waiting for stragglers, a queue that holds every chunk
    /// in flight, each chunk sorted by length whole.
    pub fn offline(sessions: usize, chunk: usize, in_flight: usize) -> Self {
        Self {
            max_batch_tokens: 8192,
            max_batch_docs: 32,
            max_wait: Duration::from_millis(2),
            max_queue_docs: chunk * in_flight,
            workers: sessions.max(1),
            min_window_docs: chunk,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("the batching queue is full ({queued} of {capacity} documents waiting); retry shortly")]
    Overloaded { queued: usize, capacity: usize },
    #[error("the encoder is shutting down")]
    Closed,
    #[error(transparent)]
    Encoder(#[from] EncoderError),
}

/// One text's embedding as the batcher returns it.
#[derive(Debug, Clone)]
pub struct DocEmbedding {
    pub vector: Vec<f32>,
    pub truncated: bool,
}

struct Job {
    tokens: TokenizedText,
    /// When it was queued: the batch deadline runs from the oldest job.
    enqueued: Instant,
    /// Closed when the caller went away; such a job is dropped unencoded.
    reply: oneshot::Sender<Result<Vec<f32>, Arc<EncoderError>>>,
}

struct Queue {
    jobs: VecDeque<Job>,
    /// Set by [`Batcher::close`]: no new jobs; workers drain and exit.
    closed: bool,
}

struct Shared {
    encoder: Arc<dyn Embedder>,
    config: BatchConfig,
    queue: Mutex<Queue>,
    /// Wakes workers on new jobs and on close.
    wake: Condvar,
    /// Documents reserved: being tokenized or waiting in `queue`.
    reserved: AtomicUsize,
    /// Documents per batch at most: `config.max_batch_docs` until [`Batcher::set_batch_shape`]
    /// (a measured value) replaces it.
    max_batch_docs: AtomicUsize,
    /// Padding a batch may carry, in thousandths of its real tokens: what batching gains on
    /// this CPU (measured by [`Batcher::set_batch_shape`]; [`DEFAULT_PADDING_PERMILLE`] until
    /// then). Padding costs encoder time in proportion, so a batch that pads more than
    /// batching saves is slower than running its documents apart.
    padding_permille: AtomicUsize,
}

/// Handle to the batching queue; clone freely.
#[derive(Clone)]
pub struct Batcher {
    shared: Arc<Shared>,
}

/// The worker threads. Dropping this closes the queue, lets the workers finish what is
/// queued, and joins them.
pub struct Workers {
    batcher: Batcher,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Closes the queue and waits for the workers to drain it.
    pub fn shutdown(mut self) {
        self.join();
    }

    fn join(&mut self) {
        self.batcher.close();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.join();
    }
}

impl Batcher {
    /// Starts the worker threads; they run until the returned [`Workers`] is dropped.
    pub fn start(encoder: Arc<dyn Embedder>, config: BatchConfig) -> (Self, Workers) {
        let max_batch_docs = AtomicUsize::new(config.max_batch_docs.max(1));
        let shared = Arc::new(Shared {
            max_batch_docs,
            padding_permille: AtomicUsize::new(DEFAULT_PADDING_PERMILLE),
            encoder,
            config,
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                closed: false,
            }),
            wake: Condvar::new(),
            reserved: AtomicUsize::new(0),
        });
        let threads = (0..shared.config.workers.max(1))
            .map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("hermes-batch-{i}"))
                    .spawn(move || worker(&shared))
                    .expect("spawn batch worker")
            })
            .collect();
        let batcher = Self { shared };
        let workers = Workers {
            batcher: batcher.clone(),
            threads,
        };
        (batcher, workers)
    }

    /// Caps documents per batch from now on (for a value measured on this CPU).
    pub fn set_max_batch_docs(&self, n: usize) {
        self.shared
            .max_batch_docs
            .store(n.max(1), Ordering::Relaxed);
    }

    /// Caps documents per batch and sets the padding a batch may carry (a fraction of its
    /// real tokens), both measured on this CPU: see [`crate::encoder::batch_shape`].
    pub fn set_batch_shape(&self, max_docs: usize, padding: f64) {
        self.set_max_batch_docs(max_docs);
        let permille = (padding.clamp(0.0, 1.0) * 1000.0).round() as usize;
        self.shared
            .padding_permille
            .store(permille, Ordering::Relaxed);
    }

    /// The encoder behind this queue.
    pub fn encoder(&self) -> &Arc<dyn Embedder> {
        &self.shared.encoder
    }

    /// Documents currently queued or being tokenized.
    pub fn queued(&self) -> usize {
        self.shared.reserved.load(Ordering::Relaxed)
    }

    /// Worker threads: batches that run at once, one per encoder session.
    pub fn workers(&self) -> usize {
        self.shared.config.workers.max(1)
    }

    pub fn capacity(&self) -> usize {
        self.shared.config.max_queue_docs
    }

    /// Stops accepting work; workers finish what is queued, then exit.
    pub fn close(&self) {
        let mut q = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.closed = true;
        self.shared.wake.notify_all();
    }

    /// Embeds `texts`, in order. Refuses at once when the queue has no room for all of them.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<DocEmbedding>, BatchError> {
        let n = texts.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let capacity = self.shared.config.max_queue_docs;
        let mut current = self.shared.reserved.load(Ordering::Relaxed);
        loop {
            if current + n > capacity {
                metrics::counter!("hermes_overloaded_total").increment(1);
                return Err(BatchError::Overloaded {
                    queued: current,
                    capacity,
                });
            }
            match self.shared.reserved.compare_exchange_weak(
                current,
                current + n,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        // Tokenize and enqueue on a blocking thread; the reservation is released by the worker
        // that takes each job (or here, if tokenization fails), never by a dropped request.
        let shared = self.shared.clone();
        let enqueued = match tokio::task::spawn_blocking(move || enqueue(&shared, &texts)).await {
            Ok(result) => result,
            // The tokenizer panicked: nothing was queued.
            Err(e) => Err(BatchError::Encoder(EncoderError::Tokenize(format!(
                "the tokenizer failed: {}",
                panic_message(e.into_panic().as_ref())
            )))),
        };
        let (receivers, truncated) = match enqueued {
            Ok(v) => v,
            Err(e) => {
                self.shared.reserved.fetch_sub(n, Ordering::AcqRel);
                return Err(e);
            }
        };
        let mut out = Vec::with_capacity(n);
        for (rx, truncated) in receivers.into_iter().zip(truncated) {
            let vector = rx
                .await
                .map_err(|_| BatchError::Closed)?
                .map_err(|e| BatchError::Encoder(EncoderError::Inference(e.to_string())))?;
            out.push(DocEmbedding { vector, truncated });
        }
        Ok(out)
    }
}

type Receivers = Vec<oneshot::Receiver<Result<Vec<f32>, Arc<EncoderError>>>>;

fn enqueue(shared: &Shared, texts: &[String]) -> Result<(Receivers, Vec<bool>), BatchError> {
    let tokens: Vec<TokenizedText> = texts
        .iter()
        .map(|t| shared.encoder.tokenize(t))
        .collect::<Result<_, _>>()?;
    let now = Instant::now();
    let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
    if q.closed {
        return Err(BatchError::Closed);
    }
    let mut receivers = Vec::with_capacity(tokens.len());
    let mut truncated = Vec::with_capacity(tokens.len());
    for t in tokens {
        let (tx, rx) = oneshot::channel();
        truncated.push(t.truncated);
        q.jobs.push_back(Job {
            tokens: t,
            enqueued: now,
            reply: tx,
        });
        receivers.push(rx);
    }
    metrics::gauge!("hermes_queue_docs").set(q.jobs.len() as f64);
    shared.wake.notify_all();
    Ok((receivers, truncated))
}

/// Takes the next batch: waits for work, then up to `max_wait` for a batch to fill. The
/// batch is cut from a window of queued jobs sorted by length (so that similar lengths share
/// a batch), and it is the window's batch that holds the oldest job, so no job waits behind
/// ever newer ones. The rest of the window goes back to the front of the queue: a worker
/// that kept a whole window would run it alone while the other workers found the queue
/// empty and waited out `max_wait` (measured: 1-document requests from 16 clients ran at
/// 0.93x the two-session ceiling that way).
fn next_batch(shared: &Shared) -> Option<Vec<Job>> {
    let cfg = &shared.config;
    let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if let Some(oldest) = q.jobs.front() {
            let deadline = oldest.enqueued + cfg.max_wait;
            let now = Instant::now();
            let max_docs = shared.max_batch_docs.load(Ordering::Relaxed);
            if q.jobs.len() >= max_docs || now >= deadline || q.closed {
                if let Some(batch) = take_batch(shared, &mut q) {
                    return Some(batch);
                }
                // Every job in the window was abandoned: look again.
                continue;
            }
            q = shared
                .wake
                .wait_timeout(q, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        } else if q.closed {
            return None;
        } else {
            q = shared.wake.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Cuts the next batch from the front of the queue (see [`next_batch`]); `None` when every
/// job of the window was abandoned. Runs under the queue lock: sorting a window of at most
/// a few thousand lengths takes microseconds next to a batch's milliseconds.
fn take_batch(shared: &Shared, q: &mut Queue) -> Option<Vec<Job>> {
    let max_docs = shared.max_batch_docs.load(Ordering::Relaxed);
    // A window of a few batches lets length-sorting group similar documents.
    let window_docs = (max_docs * 4).max(shared.config.min_window_docs);
    let take = q.jobs.len().min(window_docs);
    let mut window: Vec<Job> = q.jobs.drain(..take).collect();
    // A caller that went away (client disconnected, request timed out) gets nothing: its
    // documents are not worth encoder time.
    window.retain(|j| !j.reply.is_closed());
    let abandoned = take - window.len();
    if abandoned > 0 {
        metrics::counter!("hermes_abandoned_docs_total").increment(abandoned as u64);
    }
    let lengths: Vec<usize> = window.iter().map(|j| j.tokens.ids.len()).collect();
    let picked = oldest_batch(
        &lengths,
        max_docs,
        shared.config.max_batch_tokens,
        shared.padding_permille.load(Ordering::Relaxed),
    );
    let mut slots: Vec<Option<Job>> = window.into_iter().map(Some).collect();
    let batch: Vec<Job> = picked.iter().filter_map(|&i| slots[i].take()).collect();
    for job in slots.into_iter().rev().flatten() {
        q.jobs.push_front(job);
    }
    metrics::gauge!("hermes_queue_docs").set(q.jobs.len() as f64);
    shared
        .reserved
        .fetch_sub(batch.len() + abandoned, Ordering::AcqRel);
    if !q.jobs.is_empty() {
        // What went back may be another idle worker's next batch.
        shared.wake.notify_one();
    }
    (!batch.is_empty()).then_some(batch)
}

/// Serves batches until the queue is closed and drained. A batch whose encoder call panics
/// gets an error for each of its documents and the worker goes on: one bad batch must not
/// leave every later request waiting for a worker that is gone.
fn worker(shared: &Shared) {
    while let Some(batch) = next_batch(shared) {
        run_batch(shared, batch);
    }
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_string())
}

/// The batch to run next from a window of token `lengths` in queue order (oldest first): the
/// window is sorted by length and [`cut`], and the batch holding the oldest document wins.
/// Returns its window indices, shortest first.
fn oldest_batch(
    lengths: &[usize],
    max_docs: usize,
    max_tokens: usize,
    padding_permille: usize,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    let sorted: Vec<usize> = order.iter().map(|&i| lengths[i]).collect();
    let Some(oldest_at) = order.iter().position(|&i| i == 0) else {
        return Vec::new();
    };
    let mut start = 0;
    for size in cut(&sorted, max_docs, max_tokens, padding_permille) {
        if oldest_at < start + size {
            return order[start..start + size].to_vec();
        }
        start += size;
    }
    unreachable!("the cut covers the whole window")
}

/// Cuts a window of ascending token `lengths` into consecutive batch sizes. A batch grows
/// (the newcomer is its longest) while it has fewer than `max_docs` documents, documents ×
/// longest stays within `max_tokens`, and its padding stays within `padding_permille`
/// thousandths of its real tokens: what batching gains on this CPU.
fn cut(
    lengths: &[usize],
    max_docs: usize,
    max_tokens: usize,
    padding_permille: usize,
) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut i = 0;
    while i < lengths.len() {
        let (mut n, mut real) = (1, lengths[i]);
        while let Some(&len) = lengths.get(i + n) {
            let padded = (n + 1) * len;
            let fits = n < max_docs
                && padded <= max_tokens
                && padded * 1000 <= (real + len) * (1000 + padding_permille);
            if !fits {
                break;
            }
            real += len;
            n += 1;
        }
        sizes.push(n);
        i += n;
    }
    sizes
}

fn run_batch(shared: &Shared, jobs: Vec<Job>) {
    let refs: Vec<&TokenizedText> = jobs.iter().map(|j| &j.tokens).collect();
    let longest = refs.iter().map(|t| t.ids.len()).max().unwrap_or(0);
    let started = Instant::now();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        shared.encoder.embed_tokens(&refs)
    }))
    .unwrap_or_else(|payload| {
        let message = panic_message(payload.as_ref());
        tracing::error!(%message, docs = refs.len(), "the encoder panicked on a batch");
        Err(EncoderError::Inference(format!(
            "the encoder panicked: {message}"
        )))
    });
    metrics::histogram!("hermes_encoder_batch_seconds").record(started.elapsed().as_secs_f64());
    metrics::histogram!("hermes_batch_docs").record(jobs.len() as f64);
    metrics::histogram!("hermes_batch_tokens").record((longest * jobs.len()) as f64);
    // A send fails only when the request went away; there is nothing left to tell it.
    match result {
        Ok(vectors) => {
            for (job, row) in jobs
                .into_iter()
                .zip(vectors.chunks_exact(shared.encoder.dim()))
            {
                let _ = job.reply.send(Ok(row.to_vec()));
            }
        }
        Err(e) => {
            let e = Arc::new(e);
            for job in jobs {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{BatchConfig, BatchError, Batcher, cut, oldest_batch};
    use crate::encoder::{Embedder, EncoderError, Tier, TokenizedText};

    /// A deterministic encoder for the batcher's own logic: a text's embedding is its length
    /// and first byte; "panic-tokenize" and "panic-embed" panic where their names say, and
    /// "slow" takes 200 ms.
    struct TestEmbedder;

    impl Embedder for TestEmbedder {
        fn tier(&self) -> Tier {
            Tier::Static
        }
        fn dim(&self) -> usize {
            2
        }
        fn max_tokens(&self) -> usize {
            64
        }
        fn tokenize(&self, text: &str) -> Result<TokenizedText, EncoderError> {
            assert_ne!(text, "panic-tokenize", "tokenizer bug");
            Ok(TokenizedText {
                ids: text.bytes().map(u32::from).collect(),
                truncated: false,
            })
        }
        fn embed_tokens(&self, batch: &[&TokenizedText]) -> Result<Vec<f32>, EncoderError> {
            let panic: Vec<u32> = "panic-embed".bytes().map(u32::from).collect();
            let slow: Vec<u32> = "slow".bytes().map(u32::from).collect();
            let mut out = Vec::new();
            for t in batch {
                assert_ne!(t.ids, panic, "encoder bug");
                if t.ids == slow {
                    std::thread::sleep(Duration::from_millis(200));
                }
                out.extend([
                    t.ids.len() as f32,
                    t.ids.first().copied().unwrap_or(0) as f32,
                ]);
            }
            Ok(out)
        }
    }

    fn batcher(queue: usize) -> (Batcher, super::Workers) {
        Batcher::start(
            Arc::new(TestEmbedder),
            BatchConfig {
                max_batch_tokens: 4096,
                max_batch_docs: 4,
                max_wait: Duration::ZERO,
                max_queue_docs: queue,
                workers: 1,
                min_window_docs: 0,
            },
        )
    }

    fn texts(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_in_order_and_refuses_what_does_not_fit() {
        let (b, _w) = batcher(4);
        let out = b.embed(texts(&["ab", "c", "defg"])).await.unwrap();
        let lens: Vec<f32> = out.iter().map(|e| e.vector[0]).collect();
        assert_eq!(lens, [2.0, 1.0, 4.0]);
        let err = b
            .embed(texts(&["a", "b", "c", "d", "e"]))
            .await
            .unwrap_err();
        assert!(
            matches!(err, BatchError::Overloaded { capacity: 4, .. }),
            "{err}"
        );
        assert_eq!(b.queued(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_batch_fails_alone_and_the_worker_goes_on() {
        let (b, _w) = batcher(8);
        let err = b.embed(texts(&["panic-embed"])).await.unwrap_err();
        assert!(err.to_string().contains("the encoder panicked"), "{err}");
        let err = b.embed(texts(&["panic-tokenize"])).await.unwrap_err();
        assert!(err.to_string().contains("tokenizer bug"), "{err}");
        // Neither leaked its queue reservation, and the one worker still serves.
        assert_eq!(b.queued(), 0);
        assert_eq!(
            b.embed(texts(&["ok"])).await.unwrap()[0].vector,
            [2.0, 111.0]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abandoned_documents_release_their_reservation_and_close_drains() {
        let (b, w) = batcher(8);
        // The worker is busy with "slow" while a request that gives up at once is queued.
        let busy = tokio::spawn({
            let b = b.clone();
            async move { b.embed(texts(&["slow"])).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let gone = tokio::time::timeout(Duration::from_millis(10), b.embed(texts(&["x", "y"])));
        assert!(
            gone.await.is_err(),
            "the slow batch should still be running"
        );
        assert!(busy.await.unwrap().is_ok());
        // The abandoned documents were dropped, not left reserved.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while b.queued() > 0 {
            assert!(std::time::Instant::now() < deadline, "reservation leaked");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::task::spawn_blocking(move || w.shutdown())
            .await
            .unwrap();
        assert!(matches!(
            b.embed(texts(&["late"])).await,
            Err(BatchError::Closed)
        ));
    }

    #[test]
    fn the_oldest_document_is_in_the_next_batch() {
        // Sorted: 100 (2), 101 (0), 102 (3) share a batch; 150 (1) waits for a later one.
        assert_eq!(
            oldest_batch(&[101, 150, 100, 102], 4, 10_000, 135),
            vec![2, 0, 3]
        );
        // The oldest goes alone when no one is close to its length.
        assert_eq!(oldest_batch(&[150, 100, 101, 102], 4, 10_000, 135), vec![0]);
        assert!(oldest_batch(&[], 4, 10_000, 135).is_empty());
    }

    #[test]
    fn batches_pad_no_more_than_batching_gains() {
        // 13.5% allowed: four close lengths share a batch, a long one goes alone.
        assert_eq!(cut(&[100, 101, 102, 103, 150], 4, 10_000, 135), vec![4, 1]);
        // No allowance (a CPU where batches do not pay): only equal lengths share.
        assert_eq!(cut(&[100, 100, 101, 101], 32, 10_000, 0), vec![2, 2]);
        // The document cap and the padded-token budget both cut.
        assert_eq!(cut(&[10; 10], 4, 10_000, 250), vec![4, 4, 2]);
        assert_eq!(cut(&[100; 5], 32, 250, 250), vec![2, 2, 1]);
        assert!(cut(&[], 4, 100, 0).is_empty());
    }
}
