//! Loopback pieces for the proxy's demo and tests: echo backends of chosen speed, and a burst
//! of clients that check every byte comes back.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

/// An echo server on a loopback port that waits `delay` before echoing each chunk. Aborting
/// the handle closes the listener (new connections are refused); connections already open
/// go on.
pub async fn echo_backend(delay: Duration) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    if conn.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok((addr, handle))
}

/// What a burst of clients saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Burst {
    /// Connections whose every byte came back, in order.
    pub echoed: usize,
    /// Connections that failed (refused, reset, closed early, or wrong bytes).
    pub failed: usize,
    /// Bytes sent and checked.
    pub bytes: usize,
}

/// Opens `connections` client connections to `proxy`, at most `concurrency` at once; each
/// sends `messages` messages of `size` bytes (distinct per connection and message) and reads
/// each echo back before sending the next.
pub async fn burst(
    proxy: SocketAddr,
    connections: usize,
    concurrency: usize,
    messages: usize,
    size: usize,
) -> Burst {
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut clients = JoinSet::new();
    for c in 0..connections {
        let permit = Arc::clone(&gate)
            .acquire_owned()
            .await
            .expect("never closed");
        clients.spawn(async move {
            let result = client(proxy, c, messages, size).await;
            drop(permit);
            result
        });
    }
    let mut burst = Burst::default();
    while let Some(result) = clients.join_next().await {
        match result {
            Ok(Ok(bytes)) => {
                burst.echoed += 1;
                burst.bytes += bytes;
            }
            _ => burst.failed += 1,
        }
    }
    burst
}

async fn client(proxy: SocketAddr, c: usize, messages: usize, size: usize) -> io::Result<usize> {
    let mut conn = TcpStream::connect(proxy).await?;
    let mut back = vec![0u8; size];
    for m in 0..messages {
        let sent: Vec<u8> = (0..size).map(|i| (c * 31 + m * 7 + i) as u8).collect();
        conn.write_all(&sent).await?;
        conn.read_exact(&mut back).await?;
        if back != sent {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "echo differs"));
        }
    }
    conn.shutdown().await?;
    // The proxy closes its side once the backend saw our end: wait for that.
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).await?;
    if !rest.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected bytes",
        ));
    }
    Ok(messages * size)
}
