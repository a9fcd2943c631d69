//! [`AuditSink`]: a cheap, non-blocking handle that queues records for a
//! dedicated writer thread.
//!
//! Async code calls [`AuditSink::record`], which never blocks: it puts the
//! record on a bounded queue and returns. The writer thread takes everything
//! queued, appends it as one batch ([`AuditLog::append_batch`], one disk sync
//! per batch) and waits for more.
//!
//! # When records cannot be written
//!
//! A security log must not lose records silently. If the queue is full (the
//! disk cannot keep up) or the writer has stopped, `record` returns
//! [`AuditQueueFull`] and the record is counted as dropped; if a batch cannot
//! be written (disk full, I/O error), its records are counted as failed. Both
//! counts are visible in [`AuditSink::stats`] (export them as metrics), are
//! logged at error level (on the 1st, 2nd, 4th, 8th, ... occurrence, to bound
//! log volume), and the next batch that can be written starts with an
//! `audit_records_dropped` record carrying the counts since the last such
//! record, so the gap is visible in the log itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use thiserror::Error;

use super::record::{AuditEvent, AuditRecord};
use super::writer::AuditLog;

/// The most records written in one batch.
const MAX_BATCH: usize = 512;

/// Default queue capacity for [`AuditSink::spawn`] callers that have no better
/// number.
pub const DEFAULT_AUDIT_QUEUE_CAPACITY: usize = 4096;

/// The record was not queued: the queue is full or the writer has stopped.
/// It was counted as dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("audit record dropped: the audit queue is full or its writer has stopped")]
pub struct AuditQueueFull;

/// The writer thread has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the audit writer thread has stopped")]
pub struct AuditWriterStopped;

/// Counters of an [`AuditSink`] and its writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditSinkStats {
    /// Records written to the log (including `audit_records_dropped` ones).
    pub written: u64,
    /// Records refused because the queue was full or the writer had stopped.
    pub dropped: u64,
    /// Records lost because writing them failed.
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

enum Message {
    Record(AuditRecord),
    Flush(mpsc::Sender<()>),
}

/// A non-blocking handle that queues records for the writer thread. Cheap to
/// clone; the thread ends once every clone is dropped and the queue is
/// drained.
#[derive(Clone)]
pub struct AuditSink {
    sender: SyncSender<Message>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSink")
            .field("stats", &self.stats())
            .finish()
    }
}

/// The writer thread behind an [`AuditSink`].
#[derive(Debug)]
pub struct AuditWriterThread {
    handle: JoinHandle<()>,
}

impl AuditWriterThread {
    /// Waits for the thread to finish: it does once every [`AuditSink`] clone
    /// has been dropped and every queued record has been written. Blocks.
    pub fn join(self) -> Result<(), AuditWriterStopped> {
        self.handle.join().map_err(|_| AuditWriterStopped)
    }
}

impl AuditSink {
    /// Starts a writer thread (`dawn-audit`) that owns `log`, with a queue of
    /// `capacity` records (at least 1).
    pub fn spawn(
        log: AuditLog,
        capacity: usize,
    ) -> std::io::Result<(AuditSink, AuditWriterThread)> {
        let (sender, receiver) = mpsc::sync_channel(capacity.max(1));
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        let handle = thread::Builder::new()
            .name("dawn-audit".to_owned())
            .spawn(move || run_writer(&log, &receiver, &thread_counters))?;
        Ok((AuditSink { sender, counters }, AuditWriterThread { handle }))
    }

    /// Queues `record` without blocking. On [`AuditQueueFull`] the record is
    /// counted as dropped and reported as the [`audit`](crate::audit) module docs
    /// describe.
    pub fn record(&self, record: AuditRecord) -> Result<(), AuditQueueFull> {
        match self.sender.try_send(Message::Record(record)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.count_drop("the audit queue is full");
                Err(AuditQueueFull)
            }
            Err(TrySendError::Disconnected(_)) => {
                self.count_drop("the audit writer has stopped");
                Err(AuditQueueFull)
            }
        }
    }

    /// Waits until every record queued before this call has been written
    /// (or failed). Blocks, including while the queue is full; from async
    /// code use `spawn_blocking`.
    pub fn flush(&self) -> Result<(), AuditWriterStopped> {
        let (ack, done) = mpsc::channel();
        self.sender
            .send(Message::Flush(ack))
            .map_err(|_| AuditWriterStopped)?;
        done.recv().map_err(|_| AuditWriterStopped)
    }

    /// The counters so far.
    pub fn stats(&self) -> AuditSinkStats {
        AuditSinkStats {
            written: self.counters.written.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
        }
    }

    fn count_drop(&self, why: &'static str) {
        let total = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if total.is_power_of_two() {
            tracing::error!(dropped_total = total, "audit record dropped: {why}");
        }
    }
}

/// The `audit_records_dropped` record for `(dropped, failed)` counts.
fn drop_notice((dropped, failed): (u64, u64)) -> AuditRecord {
    AuditRecord::new(AuditEvent::AuditRecordsDropped)
        .reason("audit records were lost since the previous notice (queue full or write failures)")
        .detail("dropped", dropped)
        .detail("failed", failed)
}

/// The writer thread's loop.
fn run_writer(log: &AuditLog, receiver: &Receiver<Message>, counters: &Counters) {
    let mut reported_dropped = 0u64;
    let mut reported_failed = 0u64;
    let mut failures = 0u64;
    let mut open = true;
    while open {
        // Wait for work; wake now and then to report drops even when idle.
        let first = match receiver.recv_timeout(Duration::from_secs(1)) {
            Ok(message) => Some(message),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                open = false;
                None
            }
        };
        let mut batch = Vec::new();
        let mut acks = Vec::new();
        let mut next = first;
        while let Some(message) = next.take() {
            match message {
                Message::Record(record) => batch.push(record),
                Message::Flush(ack) => acks.push(ack),
            }
            if batch.len() < MAX_BATCH {
                next = receiver.try_recv().ok();
            }
        }

        let dropped = counters.dropped.load(Ordering::Relaxed);
        let failed = counters.failed.load(Ordering::Relaxed);
        let mut notice = None;
        if dropped > reported_dropped || failed > reported_failed {
            let counts = (dropped - reported_dropped, failed - reported_failed);
            batch.insert(0, drop_notice(counts));
            reported_dropped = dropped;
            reported_failed = failed;
            notice = Some(counts);
        }

        if !batch.is_empty() {
            match log.append_batch(&batch) {
                Ok(entries) => {
                    counters
                        .written
                        .fetch_add(entries.len() as u64, Ordering::Relaxed);
                }
                Err(error) => {
                    let lost = batch.len() as u64 - u64::from(notice.is_some());
                    if let Some((notice_dropped, notice_failed)) = notice {
                        // Report these counts again with the next notice.
                        reported_dropped -= notice_dropped;
                        reported_failed -= notice_failed;
                    }
                    let total = counters.failed.fetch_add(lost, Ordering::Relaxed) + lost;
                    failures += 1;
                    if failures.is_power_of_two() {
                        tracing::error!(
                            %error,
                            records = lost,
                            failed_total = total,
                            "audit records could not be written"
                        );
                    }
                }
            }
        }
        for ack in acks {
            // The flusher may have given up waiting; nothing to do then.
            let _ = ack.send(());
        }
    }
}
