//! Modbus test harness: an in-memory register bank with fault injection served by the
//! tokio-modbus TCP and RTU servers, a raw TCP server that answers with crafted (broken)
//! frames, socat pseudo-terminal pairs for RTU, the pymodbus peer, and collectors.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use citygate_protocols::{Event, Reading};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

/// How a simulated unit behaves.
#[derive(Debug, Clone, PartialEq)]
pub enum Behavior {
    /// Answers from its registers.
    Normal,
    /// Never answers (a dead slave).
    Silent,
    /// Answers every request with this exception code.
    Exception(u8),
    /// Answers this many requests with 06 (server busy), then normally.
    BusyFor(u32),
    /// Answers after a delay.
    Delay(Duration),
    /// Answers reads that touch this holding register with 02 (illegal data address).
    IllegalAt(u16),
    /// Acknowledges writes without storing them (a device that ignores writes).
    DropWrites,
}

/// The registers of one simulated unit.
#[derive(Debug)]
pub struct Bank {
    pub coils: Vec<bool>,
    pub discrete: Vec<bool>,
    pub input: Vec<u16>,
    pub holding: Vec<u16>,
    pub behavior: Behavior,
    /// Requests received.
    pub requests: u64,
    /// When each request arrived (before any `Delay`), as seen by the TCP simulator.
    pub arrivals: Vec<std::time::Instant>,
}

impl Default for Bank {
    fn default() -> Self {
        Bank {
            coils: vec![false; 2048],
            discrete: vec![false; 2048],
            input: vec![0; 2048],
            holding: vec![0; 2048],
            behavior: Behavior::Normal,
            requests: 0,
            arrivals: Vec::new(),
        }
    }
}

/// A bank shared between a simulator and the test.
pub type SharedBank = Arc<Mutex<Bank>>;

pub fn bank() -> SharedBank {
    Arc::new(Mutex::new(Bank::default()))
}

fn range<T: Clone>(v: &[T], addr: u16, n: u16) -> Result<Vec<T>, ExceptionCode> {
    let a = usize::from(addr);
    v.get(a..a + usize::from(n))
        .map(|s| s.to_vec())
        .ok_or(ExceptionCode::IllegalDataAddress)
}

fn store<T: Clone>(v: &mut [T], addr: u16, values: &[T]) -> Result<(), ExceptionCode> {
    let a = usize::from(addr);
    let dst = v
        .get_mut(a..a + values.len())
        .ok_or(ExceptionCode::IllegalDataAddress)?;
    dst.clone_from_slice(values);
    Ok(())
}

impl Bank {
    /// Serves one request; `Ok(None)` is "no answer".
    pub fn serve(&mut self, req: &Request<'_>) -> Result<Option<Response>, ExceptionCode> {
        self.requests += 1;
        match &self.behavior {
            Behavior::Normal | Behavior::Delay(_) => {}
            Behavior::DropWrites => match req {
                Request::WriteSingleCoil(a, v) => {
                    return Ok(Some(Response::WriteSingleCoil(*a, *v)))
                }
                Request::WriteSingleRegister(a, v) => {
                    return Ok(Some(Response::WriteSingleRegister(*a, *v)))
                }
                Request::WriteMultipleCoils(a, v) => {
                    return Ok(Some(Response::WriteMultipleCoils(*a, v.len() as u16)))
                }
                Request::WriteMultipleRegisters(a, v) => {
                    return Ok(Some(Response::WriteMultipleRegisters(*a, v.len() as u16)))
                }
                _ => {}
            },
            Behavior::Silent => return Ok(None),
            Behavior::Exception(c) => return Err(ExceptionCode::new(*c)),
            Behavior::BusyFor(n) => {
                let n = *n;
                self.behavior = if n <= 1 {
                    Behavior::Normal
                } else {
                    Behavior::BusyFor(n - 1)
                };
                return Err(ExceptionCode::ServerDeviceBusy);
            }
            Behavior::IllegalAt(bad) => {
                if let Request::ReadHoldingRegisters(a, n) = req {
                    if (*a..a.saturating_add(*n)).contains(bad) {
                        return Err(ExceptionCode::IllegalDataAddress);
                    }
                }
            }
        }
        let rsp = match req {
            Request::ReadCoils(a, n) => Response::ReadCoils(range(&self.coils, *a, *n)?),
            Request::ReadDiscreteInputs(a, n) => {
                Response::ReadDiscreteInputs(range(&self.discrete, *a, *n)?)
            }
            Request::ReadInputRegisters(a, n) => {
                Response::ReadInputRegisters(range(&self.input, *a, *n)?)
            }
            Request::ReadHoldingRegisters(a, n) => {
                Response::ReadHoldingRegisters(range(&self.holding, *a, *n)?)
            }
            Request::WriteSingleCoil(a, v) => {
                store(&mut self.coils, *a, &[*v])?;
                Response::WriteSingleCoil(*a, *v)
            }
            Request::WriteMultipleCoils(a, v) => {
                store(&mut self.coils, *a, v)?;
                Response::WriteMultipleCoils(*a, v.len() as u16)
            }
            Request::WriteSingleRegister(a, v) => {
                store(&mut self.holding, *a, &[*v])?;
                Response::WriteSingleRegister(*a, *v)
            }
            Request::WriteMultipleRegisters(a, v) => {
                store(&mut self.holding, *a, v)?;
                Response::WriteMultipleRegisters(*a, v.len() as u16)
            }
            _ => return Err(ExceptionCode::IllegalFunction),
        };
        Ok(Some(rsp))
    }
}

/// A tokio-modbus service over banks by unit id. Unknown units never answer (as on a bus).
#[derive(Clone, Default)]
pub struct SimService {
    pub units: HashMap<u8, SharedBank>,
    /// When set, every unit id is served by this bank (a TCP device that ignores unit ids).
    pub any: Option<SharedBank>,
}

impl SimService {
    pub fn single(bank: SharedBank) -> Self {
        SimService {
            units: HashMap::new(),
            any: Some(bank),
        }
    }

    pub fn units(units: impl IntoIterator<Item = (u8, SharedBank)>) -> Self {
        SimService {
            units: units.into_iter().collect(),
            any: None,
        }
    }
}

type BoxFut = Pin<Box<dyn Future<Output = Result<Option<Response>, ExceptionCode>> + Send>>;

impl tokio_modbus::server::Service for SimService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = BoxFut;

    fn call(&self, req: Self::Request) -> Self::Future {
        let bank = self
            .any
            .clone()
            .or_else(|| self.units.get(&req.slave).cloned());
        Box::pin(async move {
            let Some(bank) = bank else {
                return Ok(None);
            };
            let delay = match bank.lock().map(|mut b| {
                b.arrivals.push(std::time::Instant::now());
                b.behavior.clone()
            }) {
                Ok(Behavior::Delay(d)) => Some(d),
                _ => None,
            };
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            let mut b = bank
                .lock()
                .map_err(|_| ExceptionCode::ServerDeviceFailure)?;
            b.serve(&req.request)
        })
    }
}

pub use crate::free_port;

/// A tokio-modbus TCP server that can be killed and restarted on the same port.
pub struct TcpSim {
    pub addr: SocketAddr,
    /// TCP connections accepted so far.
    pub connections: Arc<AtomicU64>,
    service: SimService,
    task: Option<JoinHandle<()>>,
}

impl TcpSim {
    pub async fn start(service: SimService) -> TcpSim {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut sim = TcpSim {
            addr,
            connections: Arc::new(AtomicU64::new(0)),
            service,
            task: None,
        };
        sim.serve(listener);
        sim
    }

    fn serve(&mut self, listener: TcpListener) {
        let service = self.service.clone();
        let connections = self.connections.clone();
        self.task = Some(tokio::spawn(async move {
            let server = tokio_modbus::server::tcp::Server::new(listener);
            let on_connected = |stream, _addr| {
                let service = service.clone();
                connections.fetch_add(1, Ordering::SeqCst);
                async move { Ok(Some((service, stream))) }
            };
            let _ = server.serve(&on_connected, |_e| {}).await;
        }));
    }

    /// Kills the server and every open connection.
    pub async fn kill(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Starts again on the same port.
    pub async fn restart(&mut self) {
        self.kill().await;
        let mut last = None;
        for _ in 0..100 {
            match TcpListener::bind(self.addr).await {
                Ok(l) => {
                    self.serve(l);
                    return;
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("cannot rebind {}: {last:?}", self.addr);
    }
}

impl Drop for TcpSim {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// What the raw server does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawReply {
    /// A correct answer from the bank.
    Normal,
    /// Bytes that are not a Modbus frame.
    Garbage,
    /// The first half of a correct answer, then silence.
    Truncated,
    /// A correct answer with another transaction id.
    WrongTransactionId,
    /// A correct answer whose byte count claims more registers than were asked.
    WrongLength,
}

/// A Modbus TCP server written by hand: answers FC 03 from a bank, and breaks the answers
/// as `script` says (request number → reply; past its end: `Normal`).
pub struct RawTcpSim {
    pub addr: SocketAddr,
    pub served: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl RawTcpSim {
    pub async fn start(bank: SharedBank, script: Vec<RawReply>) -> RawTcpSim {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let served = Arc::new(AtomicU64::new(0));
        let counter = served.clone();
        let script = Arc::new(script);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (bank, script, counter) = (bank.clone(), script.clone(), counter.clone());
                tokio::spawn(raw_connection(stream, bank, script, counter));
            }
        });
        RawTcpSim { addr, served, task }
    }
}

impl Drop for RawTcpSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn raw_connection(
    mut s: TcpStream,
    bank: SharedBank,
    script: Arc<Vec<RawReply>>,
    counter: Arc<AtomicU64>,
) {
    let mut hdr = [0u8; 7];
    loop {
        if s.read_exact(&mut hdr).await.is_err() {
            return;
        }
        let len = usize::from(u16::from_be_bytes([hdr[4], hdr[5]]));
        let mut pdu = vec![0u8; len.saturating_sub(1)];
        if s.read_exact(&mut pdu).await.is_err() {
            return;
        }
        let n = counter.fetch_add(1, Ordering::SeqCst) as usize;
        let mode = script.get(n).copied().unwrap_or(RawReply::Normal);
        let (fc, addr, cnt) = match pdu.as_slice() {
            [fc, a0, a1, c0, c1, ..] => (
                *fc,
                u16::from_be_bytes([*a0, *a1]),
                u16::from_be_bytes([*c0, *c1]),
            ),
            _ => return,
        };
        let mut body = Vec::new();
        if fc == 3 {
            let words = bank
                .lock()
                .ok()
                .and_then(|b| range(&b.holding, addr, cnt).ok())
                .unwrap_or_default();
            let claimed = if mode == RawReply::WrongLength {
                words.len() * 2 + 2
            } else {
                words.len() * 2
            };
            body.push(3);
            body.push(claimed as u8);
            for w in &words {
                body.extend_from_slice(&w.to_be_bytes());
            }
            if mode == RawReply::WrongLength {
                body.extend_from_slice(&[0, 0]);
            }
        } else {
            body.extend_from_slice(&[fc | 0x80, 1]);
        }
        let mut tid = [hdr[0], hdr[1]];
        if mode == RawReply::WrongTransactionId {
            tid = u16::from_be_bytes(tid).wrapping_add(7).to_be_bytes();
        }
        let mut frame = vec![tid[0], tid[1], 0, 0];
        frame.extend_from_slice(&((body.len() + 1) as u16).to_be_bytes());
        frame.push(hdr[6]);
        frame.extend_from_slice(&body);
        let out: Vec<u8> = match mode {
            RawReply::Garbage => b"\xde\xad\xbe\xef garbage \x00\x00\x00\x02\xff".to_vec(),
            RawReply::Truncated => frame.get(..frame.len() / 2).unwrap_or_default().to_vec(),
            _ => frame,
        };
        if s.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// A socat pseudo-terminal pair: two linked serial devices.
pub struct PtyPair {
    pub a: PathBuf,
    pub b: PathBuf,
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl PtyPair {
    pub async fn new() -> PtyPair {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("gw");
        let b = dir.path().join("bus");
        let child = tokio::process::Command::new("socat")
            .arg("-d")
            .arg("-d")
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("socat is needed for RTU tests (apt-get install socat)");
        for _ in 0..200 {
            if a.exists() && b.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(a.exists() && b.exists(), "socat did not create the ptys");
        PtyPair {
            a,
            b,
            child,
            _dir: dir,
        }
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Serves `service` as RTU slaves on the serial device `path`.
pub fn start_rtu_sim(path: &Path, baud: u32, service: SimService) -> JoinHandle<()> {
    let builder = tokio_serial::new(path.to_string_lossy(), baud);
    let serial = tokio_serial::SerialStream::open(&builder).expect("open pty");
    tokio::spawn(async move {
        let server = tokio_modbus::server::rtu::Server::new(serial);
        let _ = server.serve_forever(service).await;
    })
}

/// The python interpreter with pymodbus: `CITYGATE_PYTHON`, else `<repo>/.venv/bin/python`.
/// `None` (after a loud message) only when it is missing and `CI` is unset; under CI a
/// missing interpreter is a failure.
pub fn python() -> Option<PathBuf> {
    let path = std::env::var_os("CITYGATE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(".venv")
                .join("bin")
                .join("python")
        });
    if path.exists() {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "CI is set but the pymodbus interpreter {} is missing: create .venv and pip install pymodbus",
            path.display()
        );
    }
    eprintln!(
        "\n\n!!!!!!!! SKIPPING pymodbus peer test: {} not found (set CITYGATE_PYTHON or create .venv with pymodbus) !!!!!!!!\n",
        path.display()
    );
    None
}

/// The pymodbus peer script.
pub fn peer_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("py")
        .join("modbus_peer.py")
}

/// Starts the pymodbus peer with `args` and waits for its `READY` line.
pub async fn start_peer(python: &Path, args: &[&str]) -> tokio::process::Child {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(python)
        .arg(peer_script())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start pymodbus peer");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("pymodbus peer did not start in 30 s")
        .expect("read peer stdout");
    assert_eq!(
        line.as_deref(),
        Some("READY"),
        "pymodbus peer failed to start"
    );
    child
}

/// Waits until `addr` accepts TCP connections.
pub async fn wait_listening(addr: SocketAddr) {
    for _ in 0..300 {
        if TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{addr} never listened");
}

/// A device tuned for tests: 50 ms polls, 300 ms timeouts, short backoff, offline after two
/// failed cycles, probed every 200 ms.
pub fn fast_device(name: &str, tcp: SocketAddr) -> citygate::sources::modbus::DeviceConfig {
    let mut d = citygate::sources::modbus::DeviceConfig::tcp(name, tcp.to_string());
    d.poll_interval_ms = 50;
    d.timeout_ms = 300;
    d.backoff_min_ms = 50;
    d.backoff_max_ms = 200;
    d.offline_after = 2;
    d.probe_interval_ms = 200;
    d
}

/// Collects readings and events from a running source.
pub struct Collector {
    pub readings: mpsc::Receiver<Reading>,
    pub events: mpsc::Receiver<Event>,
}

impl Collector {
    /// Channels for a source, and the collector on their other ends.
    pub fn new(cap: usize) -> (mpsc::Sender<Reading>, mpsc::Sender<Event>, Collector) {
        let (rt, rr) = mpsc::channel(cap);
        let (et, er) = mpsc::channel(cap);
        (
            rt,
            et,
            Collector {
                readings: rr,
                events: er,
            },
        )
    }

    /// Receives readings until `pred` holds for one, within `within`; returns it.
    pub async fn reading_where(
        &mut self,
        within: Duration,
        mut pred: impl FnMut(&Reading) -> bool,
    ) -> Reading {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.readings.recv()).await {
                Ok(Some(r)) if pred(&r) => return r,
                Ok(Some(_)) => {}
                Ok(None) => panic!("reading channel closed"),
                Err(_) => panic!("no matching reading within {within:?}"),
            }
        }
    }

    /// Receives events until one of `kind` about `source` arrives, within `within`.
    pub async fn event(&mut self, within: Duration, kind: &str, source: &str) -> Event {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) if e.kind == kind && e.source == source => return e,
                Ok(Some(_)) => {}
                Ok(None) => panic!("event channel closed"),
                Err(_) => panic!("no {kind} event for {source} within {within:?}"),
            }
        }
    }

    /// Everything received so far, without waiting.
    pub fn drain(&mut self) -> (Vec<Reading>, Vec<Event>) {
        let mut r = Vec::new();
        while let Ok(x) = self.readings.try_recv() {
            r.push(x);
        }
        let mut e = Vec::new();
        while let Ok(x) = self.events.try_recv() {
            e.push(x);
        }
        (r, e)
    }
}

/// CRC-16/MODBUS of `data`, as sent on the wire (low byte first): the firmware's own.
pub fn crc16(data: &[u8]) -> [u8; 2] {
    citygate_firmware::modbus::crc::crc16(data).to_le_bytes()
}

/// A hand-written RTU slave on `path` answering FC 03 for `unit` from `bank`, breaking its
/// answers as `script` says (`WrongTransactionId` stands for "answer as another slave").
/// Also records, for each request, the silence since its previous answer was sent.
pub fn start_raw_rtu_sim(
    path: &Path,
    unit: u8,
    bank: SharedBank,
    script: Vec<RawReply>,
) -> RawRtuSim {
    let builder = tokio_serial::new(path.to_string_lossy(), 19200);
    let mut serial = tokio_serial::SerialStream::open(&builder).expect("open pty");
    let served = Arc::new(AtomicU64::new(0));
    let gaps = Arc::new(Mutex::new(Vec::new()));
    let (served2, gaps2) = (served.clone(), gaps.clone());
    let task = tokio::spawn(async move {
        let (served, gaps) = (served2, gaps2);
        let mut req = [0u8; 8];
        let mut last_answer: Option<std::time::Instant> = None;
        loop {
            if serial.read_exact(&mut req).await.is_err() {
                return;
            }
            if let (Some(t), Ok(mut g)) = (last_answer, gaps.lock()) {
                g.push(t.elapsed());
            }
            if req[0] != unit || req[1] != 3 || crc16(&req[..6]) != [req[6], req[7]] {
                continue;
            }
            let addr = u16::from_be_bytes([req[2], req[3]]);
            let cnt = u16::from_be_bytes([req[4], req[5]]);
            let n = served.fetch_add(1, Ordering::SeqCst) as usize;
            let mode = script.get(n).copied().unwrap_or(RawReply::Normal);
            let words = bank
                .lock()
                .ok()
                .and_then(|b| range(&b.holding, addr, cnt).ok())
                .unwrap_or_default();
            let slave = if mode == RawReply::WrongTransactionId {
                unit.wrapping_add(1)
            } else {
                unit
            };
            let mut frame = vec![slave, 3, (words.len() * 2) as u8];
            if mode == RawReply::WrongLength {
                frame[2] += 2;
            }
            for w in &words {
                frame.extend_from_slice(&w.to_be_bytes());
            }
            if mode == RawReply::WrongLength {
                frame.extend_from_slice(&[0, 0]);
            }
            let crc = crc16(&frame);
            frame.extend_from_slice(&crc);
            let out: Vec<u8> = match mode {
                RawReply::Garbage => b"\xde\xad\xbe\xef garbage \x00\x01\x02".to_vec(),
                RawReply::Truncated => frame.get(..frame.len() / 2).unwrap_or_default().to_vec(),
                _ => frame,
            };
            if serial.write_all(&out).await.is_err() {
                return;
            }
            let _ = serial.flush().await;
            last_answer = Some(std::time::Instant::now());
        }
    });
    RawRtuSim { served, gaps, task }
}

/// A running [`start_raw_rtu_sim`].
pub struct RawRtuSim {
    /// Requests answered (or broken).
    pub served: Arc<AtomicU64>,
    /// Silence on the line before each request, measured from the previous answer.
    pub gaps: Arc<Mutex<Vec<Duration>>>,
    task: JoinHandle<()>,
}

impl Drop for RawRtuSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}
