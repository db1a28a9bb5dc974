//! The field gate: the I/O shell between field clients and the embedded rumqttd.
//!
//! Each listener (plain or TLS) accepts at most `max_connections` clients at once. A client's
//! first packet must be an MQTT 3.1.1 CONNECT within [`CONNECT_TIMEOUT`]; the gate checks its
//! credentials (`passwd`) or, on a loopback listener that allows it, accepts it anonymously,
//! checks its will against the ACL, and then connects to rumqttd's inner listener itself, with
//! the gate's generated credentials and the client id prefixed by the user. From then on every
//! packet from the client is parsed and checked (`acl`) before it is forwarded; a refusal
//! closes the connection. What rumqttd sends back is copied unchanged.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{ConnAck, Connect, ConnectReturnCode, Login, Packet};
use rumqttc::mqttbytes::{self, Protocol};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::acl::{Acl, Identity};
use super::passwd::Passwords;
use super::LogLimit;
use crate::status::Stats;
use crate::tls::Credentials;

/// Time a client has to complete TLS and send its CONNECT.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest packet a field client may send (the embedded broker's payload limit plus headers).
pub const MAX_PACKET: usize = crate::broker::MAX_PAYLOAD + 1024;
/// Password checks (PBKDF2) running at once; more CONNECTs wait.
const HASHING_AT_ONCE: usize = 2;

/// One listener of the gate.
pub struct Listener {
    pub socket: TcpListener,
    pub tls: Option<TlsAcceptor>,
    /// Whether clients without credentials are accepted here (loopback listeners only).
    pub anonymous: bool,
}

/// What every connection of the gate shares.
pub struct Gate {
    /// rumqttd's inner listener.
    pub inner: SocketAddr,
    /// The gate's credentials on the inner listener.
    pub login: Credentials,
    pub passwords: Arc<Passwords>,
    pub acl: Acl,
    pub stats: Arc<Stats>,
    slots: Arc<Semaphore>,
    hashing: Semaphore,
    log: LogLimit,
    unnamed: AtomicU64,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("socket", &self.socket)
            .field("tls", &self.tls.is_some())
            .field("anonymous", &self.anonymous)
            .finish()
    }
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").field("inner", &self.inner).finish()
    }
}

/// Why a client was turned away.
enum Refusal {
    Auth,
    Acl,
    Limits,
}

impl Gate {
    pub fn new(
        inner: SocketAddr,
        login: Credentials,
        passwords: Arc<Passwords>,
        acl: Acl,
        max_connections: usize,
        stats: Arc<Stats>,
    ) -> Gate {
        Gate {
            inner,
            login,
            passwords,
            acl,
            stats,
            slots: Arc::new(Semaphore::new(max_connections)),
            hashing: Semaphore::new(HASHING_AT_ONCE),
            log: LogLimit::default(),
            unnamed: AtomicU64::new(0),
        }
    }

    /// Accepts clients on `l` until the runtime stops.
    pub async fn run(self: Arc<Self>, l: Listener) {
        loop {
            let (sock, peer) = match l.socket.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("field gate: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else {
                self.refuse(Refusal::Limits, peer, "refused: max_connections reached");
                continue;
            };
            let _ = sock.set_nodelay(true);
            let gate = Arc::clone(&self);
            let tls = l.tls.clone();
            let anonymous = l.anonymous;
            tokio::spawn(async move {
                let _permit = permit;
                match tls {
                    None => gate.serve(sock, peer, anonymous).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(sock)).await {
                            Ok(Ok(s)) => gate.serve(s, peer, anonymous).await,
                            Ok(Err(e)) => gate.refuse(
                                Refusal::Limits,
                                peer,
                                &format!("TLS handshake failed: {e}"),
                            ),
                            Err(_) => gate.refuse(Refusal::Limits, peer, "TLS handshake timed out"),
                        }
                    }
                }
            });
        }
    }

    /// Counts a refusal and logs it (rate-limited).
    fn refuse(&self, kind: Refusal, peer: SocketAddr, what: &str) {
        let c = &self.stats.field;
        Stats::inc(match kind {
            Refusal::Auth => &c.auth_refused,
            Refusal::Acl => &c.acl_refused,
            Refusal::Limits => &c.limits_refused,
        });
        if let Some(left_out) = self.log.allow() {
            let more = if left_out > 0 {
                format!(" ({left_out} more refusals not logged)")
            } else {
                String::new()
            };
            tracing::warn!("field gate: client {peer}: {what}{more}");
        }
    }

    async fn serve<S>(self: Arc<Self>, mut client: S, peer: SocketAddr, anonymous: bool)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut buf = BytesMut::with_capacity(4096);
        let first = tokio::time::timeout(CONNECT_TIMEOUT, first_packet(&mut client, &mut buf));
        let connect = match first.await {
            Ok(Ok(Packet::Connect(c))) => c,
            Ok(Ok(_)) => return self.refuse(Refusal::Limits, peer, "first packet is not CONNECT"),
            Ok(Err(e)) => return self.refuse(Refusal::Limits, peer, &format!("CONNECT: {e}")),
            Err(_) => return self.refuse(Refusal::Limits, peer, "no CONNECT within 10 s"),
        };
        if connect.protocol != Protocol::V4 {
            self.refuse(Refusal::Limits, peer, "MQTT 5 is not supported (use 3.1.1)");
            return connack(&mut client, ConnectReturnCode::RefusedProtocolVersion).await;
        }
        let who = match self.authenticate(&connect, anonymous).await {
            Ok(who) => who,
            Err((code, why)) => {
                self.refuse(Refusal::Auth, peer, &why);
                return connack(&mut client, code).await;
            }
        };
        if let Some(w) = connect
            .last_will
            .as_ref()
            .filter(|w| !self.acl.may_publish(&who, &w.topic))
        {
            let why = format!(
                "{who}: will on `{}` is not in its ACL",
                w.topic.escape_debug()
            );
            self.refuse(Refusal::Acl, peer, &why);
            return connack(&mut client, ConnectReturnCode::NotAuthorized).await;
        }
        let inner = match self.open_inner(connect, &who).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("field gate: cannot reach the embedded broker: {e}");
                return connack(&mut client, ConnectReturnCode::ServiceUnavailable).await;
            }
        };
        Stats::inc(&self.stats.field.connected);
        let (mut cr, mut cw) = tokio::io::split(client);
        let (mut ir, mut iw) = inner.into_split();
        tokio::select! {
            _ = tokio::io::copy(&mut ir, &mut cw) => {}
            r = self.relay(&mut cr, &mut iw, buf, &who) => {
                if let Err((kind, why)) = r {
                    self.refuse(kind, peer, &why);
                }
            }
        }
        let _ = cw.shutdown().await;
    }

    async fn authenticate(
        &self,
        c: &Connect,
        anonymous: bool,
    ) -> Result<Identity, (ConnectReturnCode, String)> {
        let Some(login) = &c.login else {
            return if anonymous {
                Ok(Identity::Anonymous)
            } else {
                Err((
                    ConnectReturnCode::NotAuthorized,
                    "no user name and password (anonymous clients are not accepted here)".into(),
                ))
            };
        };
        let ok = {
            let _turn = self.hashing.acquire().await;
            let pw = Arc::clone(&self.passwords);
            let (user, pass) = (login.username.clone(), login.password.clone());
            tokio::task::spawn_blocking(move || pw.verify(&user, pass.as_bytes()))
                .await
                .unwrap_or(false)
        };
        if ok {
            Ok(Identity::Device(login.username.clone()))
        } else {
            Err((
                ConnectReturnCode::BadUserNamePassword,
                format!(
                    "wrong user name or password for `{}`",
                    login.username.escape_debug()
                ),
            ))
        }
    }

    /// Connects to rumqttd as the gate, on behalf of `who`.
    async fn open_inner(&self, mut c: Connect, who: &Identity) -> std::io::Result<TcpStream> {
        let id = if c.client_id.is_empty() {
            format!("~{}", self.unnamed.fetch_add(1, Ordering::Relaxed))
        } else {
            std::mem::take(&mut c.client_id)
        };
        c.client_id = match who {
            Identity::Device(u) => format!("{u}:{id}"),
            Identity::Anonymous => format!("local:{id}"),
        };
        c.login = Some(Login::new(
            self.login.username.clone(),
            self.login.password.expose(),
        ));
        let mut out = BytesMut::new();
        c.write(&mut out).map_err(std::io::Error::other)?;
        let mut s = TcpStream::connect(self.inner).await?;
        let _ = s.set_nodelay(true);
        s.write_all(&out).await?;
        Ok(s)
    }

    /// Forwards the client's packets that its ACL allows; the first that it does not ends the
    /// connection with the reason.
    async fn relay<R, W>(
        &self,
        from: &mut R,
        to: &mut W,
        mut buf: BytesMut,
        who: &Identity,
    ) -> Result<(), (Refusal, String)>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut out = BytesMut::with_capacity(8192);
        loop {
            loop {
                let header = match mqttbytes::check(buf.iter(), MAX_PACKET) {
                    Ok(h) => h,
                    Err(mqttbytes::Error::InsufficientBytes(_)) => break,
                    Err(e) => return Err((Refusal::Limits, format!("{who}: {e}"))),
                };
                let raw = buf.split_to(header.frame_length());
                let packet = Packet::read(&mut raw.clone(), MAX_PACKET)
                    .map_err(|e| (Refusal::Limits, format!("{who}: malformed packet: {e}")))?;
                self.allowed(&packet, who)?;
                out.extend_from_slice(&raw);
            }
            if !out.is_empty() {
                if to.write_all(&out).await.is_err() {
                    return Ok(());
                }
                out.clear();
            }
            match from.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return Ok(()),
                Ok(_) => {}
            }
        }
    }

    /// Whether `who` may send `p`.
    fn allowed(&self, p: &Packet, who: &Identity) -> Result<(), (Refusal, String)> {
        match p {
            Packet::Publish(p) if !self.acl.may_publish(who, &p.topic) => Err((
                Refusal::Acl,
                format!(
                    "{who}: publish on `{}` is not in its ACL",
                    p.topic.escape_debug()
                ),
            )),
            Packet::Subscribe(s) => match s
                .filters
                .iter()
                .find(|f| !self.acl.may_subscribe(who, &f.path))
            {
                Some(f) => Err((
                    Refusal::Acl,
                    format!(
                        "{who}: subscription to `{}` is not in its ACL",
                        f.path.escape_debug()
                    ),
                )),
                None => Ok(()),
            },
            Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp => Err((
                Refusal::Limits,
                format!("{who}: a client may not send {:?}", PacketKind(p)),
            )),
            _ => Ok(()),
        }
    }
}

/// A packet's type, for messages (never its payload).
struct PacketKind<'a>(&'a Packet);

impl std::fmt::Debug for PacketKind<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Packet::Connect(_) => "a second CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::SubAck(_) => "SUBACK",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingResp => "PINGRESP",
            _ => "this packet",
        })
    }
}

/// Reads until one whole packet is in `buf` and parses it; the bytes after it stay in `buf`.
async fn first_packet<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
) -> Result<Packet, String> {
    loop {
        match mqttbytes::check(buf.iter(), MAX_PACKET) {
            Ok(h) => {
                let mut raw = buf.split_to(h.frame_length());
                return Packet::read(&mut raw, MAX_PACKET).map_err(|e| e.to_string());
            }
            Err(mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
        match s.read_buf(buf).await {
            Ok(0) => return Err("connection closed".into()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Answers a refused CONNECT and closes.
async fn connack<S: AsyncWrite + Unpin>(s: &mut S, code: ConnectReturnCode) {
    let mut out = BytesMut::new();
    if ConnAck::new(code, false).write(&mut out).is_ok() {
        let _ = s.write_all(&out).await;
    }
    let _ = s.shutdown().await;
}
