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
use super::passwd::Reloading;
use super::LogLimit;
use crate::clock::mono_ms;
use crate::outbox::drain::TokenBucket;
use crate::status::Stats;
use crate::tls::Credentials;

/// Time a client has to complete TLS and send its CONNECT.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest packet a field client may send (the embedded broker's payload limit plus headers).
pub const MAX_PACKET: usize = crate::broker::MAX_PAYLOAD + 1024;
/// Characters rumqttd 0.20's router refuses in a client id, without a CONNACK; such a
/// connection then leaks a will handler that makes rumqttd panic when the id connects again.
pub const NOT_IN_CLIENT_IDS: [char; 4] = ['+', '$', '#', '/'];
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
    pub passwords: Arc<Reloading>,
    pub acl: Acl,
    pub stats: Arc<Stats>,
    /// Publishes a second per device connection; 0: no limit.
    publish_per_s: u32,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Auth,
    Acl,
    Limits,
}

impl Gate {
    pub fn new(
        inner: SocketAddr,
        login: Credentials,
        passwords: Arc<Reloading>,
        acl: Acl,
        max_connections: usize,
        publish_per_s: u32,
        stats: Arc<Stats>,
    ) -> Gate {
        Gate {
            inner,
            login,
            passwords,
            acl,
            stats,
            publish_per_s,
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
        let inner_id = self.inner_id(&who, &connect.client_id);
        if inner_id.contains(NOT_IN_CLIENT_IDS) {
            let why = format!(
                "{who}: client id `{}` holds one of `+ $ # /`",
                inner_id.escape_debug()
            );
            self.refuse(Refusal::Limits, peer, &why);
            return connack(&mut client, ConnectReturnCode::BadClientId).await;
        }
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
        let mut inner = match self.open_inner(connect, inner_id).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("field gate: cannot reach the embedded broker: {e}");
                return connack(&mut client, ConnectReturnCode::ServiceUnavailable).await;
            }
        };
        // rumqttd's CONNACK is awaited even if the client is gone meanwhile: rumqttd 0.20 leaks
        // a will handler when a connection drops before its CONNACK is written, and panics (and
        // poisons its lock, refusing every later client) when that client id connects again.
        let mut ibuf = BytesMut::new();
        let ack = tokio::time::timeout(CONNECT_TIMEOUT, first_packet(&mut inner, &mut ibuf)).await;
        let ack = match ack {
            Ok(Ok(Packet::ConnAck(a))) => a,
            other => {
                tracing::error!(
                    "field gate: the embedded broker did not acknowledge a connection: {other:?}"
                );
                return connack(&mut client, ConnectReturnCode::ServiceUnavailable).await;
            }
        };
        let mut out = BytesMut::new();
        if ack.write(&mut out).is_err() {
            return;
        }
        out.extend_from_slice(&ibuf);
        if client.write_all(&out).await.is_err() || ack.code != ConnectReturnCode::Success {
            return;
        }
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
            tokio::task::spawn_blocking(move || pw.current().verify(&user, pass.as_bytes()))
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

    /// The client id on rumqttd: prefixed by the user, so that no device can take over
    /// another's session; an empty id gets a number of its own.
    fn inner_id(&self, who: &Identity, id: &str) -> String {
        let id = if id.is_empty() {
            format!("~{}", self.unnamed.fetch_add(1, Ordering::Relaxed))
        } else {
            id.to_string()
        };
        match who {
            Identity::Device(u) => format!("{u}:{id}"),
            Identity::Anonymous => format!("local:{id}"),
        }
    }

    /// Connects to rumqttd as the gate, with the client id `inner_id`.
    async fn open_inner(&self, mut c: Connect, inner_id: String) -> std::io::Result<TcpStream> {
        c.client_id = inner_id;
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

    /// Waits until `bucket` has a token for each of `publishes` (the client is not read from
    /// meanwhile, so TCP holds it back).
    async fn hold_back(&self, bucket: &mut TokenBucket, mut publishes: usize) {
        let mut counted = false;
        loop {
            publishes -= bucket.take(publishes, mono_ms());
            if publishes == 0 {
                return;
            }
            if !counted {
                Stats::inc(&self.stats.field.throttled);
                counted = true;
            }
            let wait = bucket.wait_ms(mono_ms()).max(1);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
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
        let rate = match who {
            Identity::Device(_) => self.publish_per_s,
            Identity::Anonymous => 0,
        };
        let mut bucket = TokenBucket::new(rate, mono_ms());
        loop {
            let publishes = screen(&mut buf, &mut out, &self.acl, who)?;
            self.hold_back(&mut bucket, publishes).await;
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
}

/// Moves every whole packet at the front of `buf` that `who` may send into `out`, and stops
/// at the first incomplete one; returns how many were publishes. A packet that is malformed,
/// too large or outside the ACL is the reason to close the connection. Pure: the relay and
/// the fuzz tests call it.
pub fn screen(
    buf: &mut BytesMut,
    out: &mut BytesMut,
    acl: &Acl,
    who: &Identity,
) -> Result<usize, (Refusal, String)> {
    let mut publishes = 0;
    loop {
        let header = match mqttbytes::check(buf.iter(), MAX_PACKET) {
            Ok(h) => h,
            Err(mqttbytes::Error::InsufficientBytes(_)) => return Ok(publishes),
            Err(e) => return Err((Refusal::Limits, format!("{who}: {e}"))),
        };
        let raw = buf.split_to(header.frame_length());
        let packet = Packet::read(&mut raw.clone(), MAX_PACKET)
            .map_err(|e| (Refusal::Limits, format!("{who}: malformed packet: {e}")))?;
        allowed(acl, &packet, who)?;
        publishes += usize::from(matches!(packet, Packet::Publish(_)));
        out.extend_from_slice(&raw);
    }
}

/// Whether `who` may send `p`.
fn allowed(acl: &Acl, p: &Packet, who: &Identity) -> Result<(), (Refusal, String)> {
    match p {
        Packet::Publish(p) if !acl.may_publish(who, &p.topic) => Err((
            Refusal::Acl,
            format!(
                "{who}: publish on `{}` is not in its ACL",
                p.topic.escape_debug()
            ),
        )),
        Packet::Subscribe(s) => match s.filters.iter().find(|f| !acl.may_subscribe(who, &f.path)) {
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

/// The first whole packet in `buf`, parsed (`None`: not all of it is there yet); the bytes
/// after it stay in `buf`. Pure: the fuzz tests call it.
pub fn first_in(buf: &mut BytesMut) -> Result<Option<Packet>, String> {
    match mqttbytes::check(buf.iter(), MAX_PACKET) {
        Ok(h) => {
            let mut raw = buf.split_to(h.frame_length());
            Packet::read(&mut raw, MAX_PACKET)
                .map(Some)
                .map_err(|e| e.to_string())
        }
        Err(mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Reads until one whole packet is in `buf` and parses it; the bytes after it stay in `buf`.
async fn first_packet<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
) -> Result<Packet, String> {
    loop {
        if let Some(p) = first_in(buf)? {
            return Ok(p);
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
