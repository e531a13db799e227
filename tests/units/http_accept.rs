//! `http::accept`: the accept loop and its graceful drain.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use volc_rtc_exporter::http::accept::serve;

#[tokio::test]
async fn serves_until_shutdown_then_drains_within_the_grace_period() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    // Echoes one byte; a connection that sent `s` ignores `closing` (stuck), others
    // finish when asked to.
    let echo = |mut stream: TcpStream, _peer, closing: CancellationToken| async move {
        let mut b = [0u8; 1];
        if stream.read_exact(&mut b).await.is_err() {
            return;
        }
        let _ = stream.write_all(&b).await;
        if b[0] == b's' {
            std::future::pending::<()>().await;
        }
        closing.cancelled().await;
    };
    let server = tokio::spawn(serve(
        listener,
        echo,
        shutdown.clone(),
        Duration::from_millis(200),
        "test",
    ));
    let mut polite = TcpStream::connect(addr).await.unwrap();
    polite.write_all(b"p").await.unwrap();
    let mut b = [0u8; 1];
    polite.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"p");
    let mut stuck = TcpStream::connect(addr).await.unwrap();
    stuck.write_all(b"s").await.unwrap();
    stuck.read_exact(&mut b).await.unwrap();
    shutdown.cancel();
    assert_eq!(
        server.await.unwrap(),
        1,
        "only the stuck connection is dropped"
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}
