//! Stream plumbing shared by both directions: splitting a libp2p stream into a
//! framed reader and a batching writer task.

use futures::{AsyncReadExt as _, SinkExt as _};
use libp2p::Stream;
use tokio::sync::mpsc;
use tokio_util::{
    codec::{FramedRead, FramedWrite},
    compat::{Compat, FuturesAsyncReadCompatExt as _, FuturesAsyncWriteCompatExt as _},
    sync::CancellationToken,
};

use super::frame::{Frame, FrameCodec};

/// Frames queued per stream writer before senders wait.
pub(crate) const WRITE_QUEUE: usize = 1024;

pub(crate) type FrameReader = FramedRead<Compat<futures::io::ReadHalf<Stream>>, FrameCodec>;

/// Splits `stream`, spawns its writer task, and returns the reader plus the
/// sender feeding the writer. The writer stops when every sender is dropped,
/// when `stop` is cancelled, or on the first write error (it then cancels
/// `stop` so the reader side learns the stream is dead).
pub(crate) fn split_stream(
    stream: Stream,
    max_body: usize,
    stop: CancellationToken,
) -> (FrameReader, mpsc::Sender<Frame>) {
    let (read, write) = stream.split();
    let reader = FramedRead::new(read.compat(), FrameCodec::new(max_body));
    let writer = FramedWrite::new(write.compat_write(), FrameCodec::new(max_body));
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    tokio::spawn(write_loop(rx, writer, stop));
    (reader, tx)
}

async fn write_loop(
    mut rx: mpsc::Receiver<Frame>,
    mut sink: FramedWrite<Compat<futures::io::WriteHalf<Stream>>, FrameCodec>,
    stop: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            biased;
            frame = rx.recv() => frame,
            () = stop.cancelled() => None,
        };
        let Some(first) = first else { break };
        if let Err(error) = sink.feed(first).await {
            tracing::debug!(%error, "rpc stream write failed");
            stop.cancel();
            return;
        }
        // Batch everything already queued, then flush once.
        while let Ok(frame) = rx.try_recv() {
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
    }
    let _ = sink.close().await;
}
