//! Stream plumbing shared by both directions: splitting a libp2p stream into a
//! framed reader and a batching writer task. Both sides record the peer's
//! RPC activity (for the connection manager) and frame sizes (metrics).

use futures::{AsyncReadExt as _, SinkExt as _, StreamExt as _};
use libp2p::Stream;
use tokio::sync::mpsc;
use tokio_util::{
    codec::{FramedRead, FramedWrite},
    compat::{Compat, FuturesAsyncReadCompatExt as _, FuturesAsyncWriteCompatExt as _},
    sync::CancellationToken,
    task::TaskTracker,
};

use super::frame::{Frame, FrameCodec, FrameError};
use crate::{limits::ActivityHandle, telemetry::RpcSizeMetrics};

/// Frames queued per stream writer before senders wait.
pub(crate) const WRITE_QUEUE: usize = 1024;

/// The reading half of an RPC stream.
pub(crate) struct FrameReader {
    inner: FramedRead<Compat<futures::io::ReadHalf<Stream>>, FrameCodec>,
    activity: ActivityHandle,
    sizes: RpcSizeMetrics,
}

impl FrameReader {
    /// The next frame; `None` at the end of the stream.
    pub(crate) async fn next(&mut self) -> Option<Result<Frame, FrameError>> {
        let next = self.inner.next().await;
        if let Some(Ok(frame)) = &next {
            self.activity.touch();
            self.sizes.inbound(frame);
        }
        next
    }
}

/// Splits `stream`, spawns its writer task on `streams`, and returns the
/// reader plus the sender feeding the writer. The writer stops when every
/// sender is dropped, on the first write error (it then cancels `stop` so
/// the reader side learns the stream is dead), or when `stop` is cancelled
/// and nothing is left queued: frames sent before the cancellation are still
/// written, which is what lets [`crate::Transport::shutdown`] wait for
/// `streams` and lose no response queued just before it.
pub(crate) fn split_stream(
    stream: Stream,
    max_body: usize,
    stop: CancellationToken,
    activity: ActivityHandle,
    streams: &TaskTracker,
) -> (FrameReader, mpsc::Sender<Frame>) {
    let (read, write) = stream.split();
    let sizes = RpcSizeMetrics::new();
    let reader = FrameReader {
        inner: FramedRead::new(read.compat(), FrameCodec::new(max_body)),
        activity: activity.clone(),
        sizes: sizes.clone(),
    };
    let writer = FramedWrite::new(write.compat_write(), FrameCodec::new(max_body));
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    streams.spawn(write_loop(rx, writer, stop, activity, sizes));
    (reader, tx)
}

async fn write_loop(
    mut rx: mpsc::Receiver<Frame>,
    mut sink: FramedWrite<Compat<futures::io::WriteHalf<Stream>>, FrameCodec>,
    stop: CancellationToken,
    activity: ActivityHandle,
    sizes: RpcSizeMetrics,
) {
    loop {
        let first = tokio::select! {
            // Queued frames first: once `stop` is cancelled, what was sent
            // before is still written, then the loop ends.
            biased;
            frame = rx.recv() => frame,
            () = stop.cancelled() => None,
        };
        let Some(first) = first else { break };
        sizes.outbound(&first);
        if let Err(error) = sink.feed(first).await {
            tracing::debug!(%error, "rpc stream write failed");
            stop.cancel();
            return;
        }
        // Batch everything already queued, then flush once.
        while let Ok(frame) = rx.try_recv() {
            sizes.outbound(&frame);
            if let Err(error) = sink.feed(frame).await {
                tracing::debug!(%error, "rpc stream write failed");
                stop.cancel();
                return;
            }
        }
        if let Err(error) = sink.flush().await {
            tracing::debug!(%error, "rpc stream flush failed");
            stop.cancel();
            return;
        }
        activity.touch();
    }
    let _ = sink.close().await;
}
