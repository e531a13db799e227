//! The accept loop shared by the exporter's HTTP server and the simulator's: one task per
//! connection, accept errors retried and logged at most once a minute (running out of open
//! files is said with its fix, `ulimit -n`), and a graceful drain on shutdown (stop
//! accepting, ask every connection to finish its request in flight, wait at most a grace
//! period, then drop whatever remains).
//!
//! The caller turns each accepted stream into a connection future ([`ServeConnection`]), which is
//! handed a token that is cancelled when shutdown begins; it should then shut down gracefully
//! (hyper's `graceful_shutdown`) and complete.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What the accept loop does with one accepted connection: given the stream, the peer and a
/// token cancelled when shutdown begins, the future that serves it to the end.
pub trait ServeConnection: Send + 'static {
    type Future: Future<Output = ()> + Send + 'static;
    fn serve(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        closing: CancellationToken,
    ) -> Self::Future;
}

impl<F, Fut> ServeConnection for F
where
    F: Fn(TcpStream, SocketAddr, CancellationToken) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    type Future = Fut;
    fn serve(&self, stream: TcpStream, peer: SocketAddr, closing: CancellationToken) -> Fut {
        self(stream, peer, closing)
    }
}

/// Accepts on `listener` until `shutdown` is cancelled, serving each connection on its own
/// task; then stops accepting, cancels the connections' `closing` token, waits for them at
/// most `grace`, and drops whatever remains. Returns the number of connections dropped.
pub async fn serve(
    listener: TcpListener,
    connection: impl ServeConnection,
    shutdown: CancellationToken,
    grace: Duration,
    name: &'static str,
) -> usize {
    let mut connections = JoinSet::new();
    let mut accept_errors = AcceptErrors::default();
    // Cancelled (after `shutdown`) to tell every connection to finish gracefully.
    let closing = CancellationToken::new();
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Answers are written in large frames; the last short segment of one must
                    // not wait for the client's delayed ACK (Nagle).
                    let _ = stream.set_nodelay(true);
                    connections.spawn(connection.serve(stream, peer, closing.clone()));
                }
                Err(err) => {
                    accept_errors.failed(&err, name);
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    drop(listener);
    closing.cancel();
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_ok() {
        return 0;
    }
    let left = connections.len();
    tracing::info!(
        server = name,
        connections = left,
        "dropping HTTP connections still busy after the shutdown grace period"
    );
    connections.shutdown().await;
    left
}

/// The least time between two log lines about failing accepts.
pub const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(60);

/// Failing accepts, logged at most once per [`ACCEPT_ERROR_LOG_EVERY`] with how many there
/// were: out of file descriptors, `accept` fails ten times a second until connections close.
#[derive(Debug, Default)]
struct AcceptErrors {
    last_logged: Option<tokio::time::Instant>,
    unlogged: u64,
}

impl AcceptErrors {
    fn failed(&mut self, err: &std::io::Error, name: &'static str) {
        self.unlogged += 1;
        let now = tokio::time::Instant::now();
        if self
            .last_logged
            .is_some_and(|last| now.saturating_duration_since(last) < ACCEPT_ERROR_LOG_EVERY)
        {
            return;
        }
        let failures = std::mem::take(&mut self.unlogged);
        self.last_logged = Some(now);
        if out_of_files(err) {
            tracing::error!(
                server = name,
                error = %err,
                failures,
                "cannot accept connections: the process has run out of open files; raise the \
                 open-file limit (ulimit -n, LimitNOFILE= in systemd, nofile in Docker or \
                 Kubernetes). Stalled clients are closed after --web.read-header-timeout"
            );
        } else {
            tracing::warn!(server = name, error = %err, failures, "accepting a connection failed");
        }
    }
}

/// EMFILE or ENFILE: the process's or the system's open-file limit.
fn out_of_files(err: &std::io::Error) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    cfg!(unix) && matches!(err.raw_os_error(), Some(ENFILE | EMFILE))
}
