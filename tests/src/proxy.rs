//! A TCP proxy for fault injection: forwards loopback connections to an upstream port, and on
//! command cuts them (closes every connection and refuses new ones) or stalls them (keeps them
//! open but forwards nothing, like a link that went silent), then restores the link.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Forwards both ways.
    Up,
    /// Every open connection is closed; new ones are accepted and closed at once.
    Cut,
    /// Connections stay open, nothing is forwarded (bytes wait in the socket buffers).
    Stalled,
}

/// A running proxy on `127.0.0.1:port` in front of `127.0.0.1:upstream`.
pub struct TcpProxy {
    pub port: u16,
    mode: watch::Sender<Link>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
    /// Connections accepted so far.
    pub accepted: Arc<std::sync::atomic::AtomicU64>,
}

impl TcpProxy {
    pub async fn start(upstream: u16) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let (mode, rx) = watch::channel(Link::Up);
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let c = Arc::clone(&conns);
        let n = Arc::clone(&accepted);
        let accept = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if *rx.borrow() == Link::Cut {
                    drop(down);
                    continue;
                }
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let _ = down.set_nodelay(true);
                let _ = up.set_nodelay(true);
                let (dr, dw) = down.into_split();
                let (ur, uw) = up.into_split();
                let mut list = c.lock().unwrap();
                list.retain(|h| !h.is_finished());
                list.push(tokio::spawn(pipe(dr, uw, rx.clone())));
                list.push(tokio::spawn(pipe(ur, dw, rx.clone())));
            }
        });
        TcpProxy {
            port,
            mode,
            conns,
            accept,
            accepted,
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Changes what the proxy does; `Cut` closes every open connection now.
    pub fn set(&self, link: Link) {
        let _ = self.mode.send(link);
        if link == Link::Cut {
            for h in self.conns.lock().unwrap().drain(..) {
                h.abort();
            }
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }
}

/// Copies `from` to `to` while the link is up; waits (reading nothing) while it is stalled.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Link>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let current = *mode.borrow_and_update();
        match current {
            Link::Cut => return,
            Link::Stalled => {
                if mode.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Link::Up => {}
        }
        tokio::select! {
            n = from.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            },
            _ = mode.changed() => {}
        }
    }
}
