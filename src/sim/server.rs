//! The simulator's HTTP/1.1 server: hyper on an already-bound listener, on the crate's shared
//! accept loop ([`crate::http::accept`]): one task per connection, graceful shutdown when the
//! `CancellationToken` fires (in-flight answers get [`GRACE`] to finish, then connections are
//! dropped).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{SimRequest, Simulator};

/// How long in-flight answers may take to finish after shutdown is asked for.
pub const GRACE: Duration = Duration::from_secs(3);

/// Serves the simulator on `listener` until `shutdown` is cancelled, then drains connections
/// for at most [`GRACE`]. Accept errors (e.g. out of file descriptors) are logged and retried.
pub async fn serve(
    listener: TcpListener,
    sim: Arc<Simulator>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let connection =
        move |stream: TcpStream, _peer, closing| serve_connection(stream, sim.clone(), closing);
    crate::http::accept::serve(listener, connection, shutdown, GRACE, "simulator").await;
    Ok(())
}

async fn serve_connection(stream: TcpStream, sim: Arc<Simulator>, shutdown: CancellationToken) {
    let reset = Arc::new(AtomicBool::new(false));
    let io = TokioIo::new(ResettableStream {
        inner: stream,
        reset: reset.clone(),
    });
    let stop = shutdown.clone();
    let service = service_fn(move |req| handle(req, sim.clone(), reset.clone(), stop.clone()));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(io, service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "simulator: connection ended");
    }
}

/// Returned by the service to make hyper drop the connection without answering.
#[derive(Debug, thiserror::Error)]
#[error("connection reset by an injected fault")]
struct InjectedReset;

async fn handle(
    req: Request<Incoming>,
    sim: Arc<Simulator>,
    reset: Arc<AtomicBool>,
    shutdown: CancellationToken,
) -> Result<Response<Full<Bytes>>, InjectedReset> {
    let arrived = Instant::now();
    let (parts, _body) = req.into_parts();
    let reply = sim.answer(&SimRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        arrived,
    });
    tracing::debug!(
        query = parts.uri.query().unwrap_or(""),
        status = reply.status,
        outcome = %reply.outcome,
        delay_ms = reply.delay.map(|d| d.as_millis() as u64),
        reset = reply.reset,
        "simulator: answered"
    );
    if let Some(delay) = reply.delay {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => {}
        }
    }
    if reply.reset {
        reset.store(true, Ordering::Relaxed);
        return Err(InjectedReset);
    }
    let mut response = Response::new(Full::new(reply.body));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    Ok(response)
}

/// A TCP stream that, when a reset was asked for, closes with RST (zero linger) rather than
/// FIN, like a crashed or overloaded upstream.
struct ResettableStream {
    inner: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for ResettableStream {
    fn drop(&mut self) {
        if self.reset.load(Ordering::Relaxed) {
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
