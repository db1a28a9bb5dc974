//! The link task: owns one connection (a TCP device, or a serial bus shared by several RTU
//! slaves), polls its devices in turn, serves writes, and turns answers into readings and
//! failures into quality flags, events, backoff and offline probing.
//!
//! tokio-modbus has no timeouts: every call here is wrapped in one. After a timeout, a
//! transport error or an answer that does not match the request (transaction id, unit id,
//! function, length), the connection is dropped and reopened, so a late reply is never taken
//! as the answer to the next request. On a serial bus, where answers carry no transaction id,
//! the reopened port is moreover drained until the line has been silent for a guard time
//! (`rtu.guard_ms`, default half the failed device's timeout), so a late reply is discarded,
//! not misread. The
//! inter-frame silence (3.5 character times) is kept between frames, and a failing slave gets no immediate retries and is polled
//! no more often than its poll interval, so it costs its bus neighbours at most one timeout
//! per cycle.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use citygate_protocols::{Event, Quality, Reading};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_modbus::client::{Client, Context};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::{ExceptionCode, Request, Response, Slave};

use super::codec::{self, Value};
use super::config::{
    DataType, DeviceConfig, Parity, PointConfig, RtuConfig, MAX_WRITE_COILS, MAX_WRITE_REGISTERS,
};
use super::plan::{self, Limits, ReadRequest, Span};
use super::request::{
    check_len, check_length, is_busy, read_request, resolve_point_write, write_error, CallError,
};
use super::schedule;
use super::stats::{add, inc, Counters, DeviceState};
use super::{Write, WriteError};
use crate::backoff::Backoff;

/// What a link connects to.
#[derive(Debug, Clone)]
pub(crate) enum Transport {
    Tcp(String),
    Rtu(RtuConfig),
}

/// A write waiting for its link.
pub(crate) struct WriteJob {
    pub(crate) device: usize,
    pub(crate) write: Write,
    pub(crate) reply: oneshot::Sender<Result<(), WriteError>>,
}

/// What was last reported for a point.
#[derive(Debug, Default)]
struct PointState {
    /// Last good engineering value.
    last_good: Option<f64>,
    /// Last reported (value, quality).
    reported: Option<(f64, Quality)>,
    /// Last reported text of a string point.
    text: Option<String>,
    /// The point's last request ended in an exception.
    in_error: bool,
}

pub(crate) struct Device {
    pub(crate) cfg: DeviceConfig,
    pub(crate) counters: Arc<Counters>,
    plan: Vec<ReadRequest>,
    /// Resolved wire addresses, by point index.
    addresses: Vec<u16>,
    points: Vec<PointState>,
    /// Where in the poll interval this device's polls fall: the `slot`-th of `slots` devices
    /// of the source first polls `slot/slots` of an interval after the start, so polls are
    /// spread evenly over time across all links instead of all falling due at one instant.
    phase: Duration,
    due: Instant,
    /// The schedule slot and actual start of the last poll cycle.
    last_start: Option<(Instant, Instant)>,
    failures: u32,
    backoff: Backoff,
}

impl Device {
    pub(crate) fn new(
        cfg: DeviceConfig,
        counters: Arc<Counters>,
        seed: u64,
        (slot, slots): (u32, u32),
    ) -> Self {
        let addresses: Vec<u16> = cfg
            .points
            .iter()
            .map(|p| p.wire_address().unwrap_or(0))
            .collect();
        let spans: Vec<Span> = cfg
            .points
            .iter()
            .zip(&addresses)
            .map(|(p, &address)| Span {
                register: p.register,
                address,
                width: p.width(),
            })
            .collect();
        let plan = plan::plan(
            &spans,
            Limits {
                max_registers: cfg.max_registers_per_request,
                max_bits: cfg.max_bits_per_request,
                max_gap: cfg.max_gap,
            },
        );
        let backoff = Backoff::new(
            Duration::from_millis(cfg.backoff_min_ms),
            Duration::from_millis(cfg.backoff_max_ms),
            seed,
        );
        let points = cfg.points.iter().map(|_| PointState::default()).collect();
        Device {
            phase: Duration::from_millis(cfg.poll_interval_ms) * slot / slots.max(1),
            plan,
            addresses,
            points,
            due: Instant::now(),
            last_start: None,
            failures: 0,
            backoff,
            cfg,
            counters,
        }
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(self.cfg.poll_interval_ms)
    }

    fn sensor<'a>(&'a self, p: &'a PointConfig) -> &'a str {
        p.sensor.as_deref().unwrap_or(&self.cfg.name)
    }
}

pub(crate) struct Link {
    transport: Transport,
    pub(crate) devices: Vec<Device>,
    ctx: Option<Context>,
    /// The unit id the context currently addresses.
    ctx_unit: Option<u8>,
    last_frame: Option<Instant>,
    /// RTU: after a failed exchange, how long the bus must stay silent before the next frame.
    quarantine: Option<Duration>,
    readings: mpsc::Sender<Reading>,
    events: mpsc::Sender<Event>,
    writes: mpsc::Receiver<WriteJob>,
    shutdown: watch::Receiver<bool>,
}

/// Points without a fresh value.
fn none(points: &[usize]) -> Vec<(usize, Option<f64>)> {
    points.iter().map(|&i| (i, None)).collect()
}

impl Link {
    pub(crate) fn new(
        transport: Transport,
        devices: Vec<Device>,
        readings: mpsc::Sender<Reading>,
        events: mpsc::Sender<Event>,
        writes: mpsc::Receiver<WriteJob>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Link {
            transport,
            devices,
            ctx: None,
            ctx_unit: None,
            last_frame: None,
            quarantine: None,
            readings,
            events,
            writes,
            shutdown,
        }
    }

    /// Runs until shutdown, or until the handle (and so the write channel) is gone.
    pub(crate) async fn run(mut self) {
        let start = Instant::now();
        for d in &mut self.devices {
            d.due = start + d.phase;
        }
        loop {
            let Some((idx, due)) = self
                .devices
                .iter()
                .enumerate()
                .map(|(i, d)| (i, d.due))
                .min_by_key(|(_, due)| *due)
            else {
                return;
            };
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => return,
                job = self.writes.recv() => match job {
                    Some(job) => {
                        let result = self.write(job.device, job.write).await;
                        let _ = job.reply.send(result);
                    }
                    None => return,
                },
                _ = sleep_until(due) => self.poll_device(idx, due).await,
            }
            if *self.shutdown.borrow() {
                return;
            }
        }
    }

    async fn connect(&mut self, unit: u8, limit: Duration) -> Result<(), CallError> {
        if self.ctx.is_some() {
            if self.ctx_unit != Some(unit) {
                if let Some(ctx) = self.ctx.as_mut() {
                    ctx.set_slave(Slave(unit));
                }
                self.ctx_unit = Some(unit);
            }
            return Ok(());
        }
        let ctx = match &self.transport {
            Transport::Tcp(addr) => {
                let stream =
                    match timeout(limit, tokio::net::TcpStream::connect(addr.as_str())).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => return Err(CallError::Transport(e.to_string())),
                        Err(_) => return Err(CallError::Timeout),
                    };
                let _ = stream.set_nodelay(true);
                tokio_modbus::client::tcp::attach_slave(stream, Slave(unit))
            }
            Transport::Rtu(r) => {
                use tokio_serial::SerialPort;
                let builder = tokio_serial::new(r.port.as_str(), r.baud)
                    .parity(match r.parity {
                        Parity::None => tokio_serial::Parity::None,
                        Parity::Even => tokio_serial::Parity::Even,
                        Parity::Odd => tokio_serial::Parity::Odd,
                    })
                    .data_bits(match r.data_bits {
                        5 => tokio_serial::DataBits::Five,
                        6 => tokio_serial::DataBits::Six,
                        7 => tokio_serial::DataBits::Seven,
                        _ => tokio_serial::DataBits::Eight,
                    })
                    .stop_bits(if r.stop_bits == 2 {
                        tokio_serial::StopBits::Two
                    } else {
                        tokio_serial::StopBits::One
                    });
                let mut stream = tokio_serial::SerialStream::open(&builder)
                    .map_err(|e| CallError::Transport(format!("{}: {e}", r.port)))?;
                // Whatever a slave sends after we gave up on it is not an answer to anything:
                // discard it until the line has been silent for the guard time.
                if let Some(guard) = self.quarantine.take() {
                    quiet_line(&mut stream, guard).await;
                }
                let _ = stream.clear(tokio_serial::ClearBuffer::All);
                tokio_modbus::client::rtu::attach_slave(stream, Slave(unit))
            }
        };
        self.ctx = Some(ctx);
        self.ctx_unit = Some(unit);
        Ok(())
    }

    fn drop_connection(&mut self) {
        self.ctx = None;
        self.ctx_unit = None;
    }

    /// One request with a timeout; on any link failure the connection is dropped.
    async fn call(&mut self, idx: usize, req: Request<'static>) -> Result<Response, CallError> {
        let Some(dev) = self.devices.get(idx) else {
            return Err(CallError::Transport("no such device".into()));
        };
        let unit = dev.cfg.unit_id;
        let limit = Duration::from_millis(dev.cfg.timeout_ms);
        let counters = dev.counters.clone();
        inc(&counters.requests);
        if let Transport::Rtu(r) = &self.transport {
            if let Some(last) = self.last_frame {
                sleep_until(last + r.inter_frame_silence()).await;
            }
        }
        let connected = self.ctx.is_some();
        let result = match self.connect(unit, limit).await {
            Err(e) => Err(e),
            Ok(()) => {
                if !connected {
                    inc(&counters.connects);
                }
                match self.ctx.as_mut() {
                    None => Err(CallError::Transport("not connected".into())),
                    Some(ctx) => match timeout(limit, ctx.call(req.clone())).await {
                        Err(_) => Err(CallError::Timeout),
                        Ok(Err(tokio_modbus::Error::Transport(e))) => {
                            Err(CallError::Transport(e.to_string()))
                        }
                        Ok(Err(tokio_modbus::Error::Protocol(e))) => {
                            Err(CallError::Mismatch(e.to_string()))
                        }
                        Ok(Ok(Err(code))) => Err(CallError::Exception(code)),
                        Ok(Ok(Ok(rsp))) => check_length(&req, rsp),
                    },
                }
            }
        };
        if matches!(self.transport, Transport::Rtu(_)) {
            self.last_frame = Some(Instant::now());
        }
        if let Err(e) = &result {
            inc(&counters.errors);
            match e {
                CallError::Timeout => inc(&counters.timeouts),
                CallError::Exception(_) => inc(&counters.exceptions),
                CallError::Mismatch(_) => inc(&counters.mismatches),
                CallError::Transport(_) => {}
            }
            if e.is_link_failure() {
                self.drop_connection();
                if let Transport::Rtu(r) = &self.transport {
                    self.quarantine = Some(match r.guard_ms {
                        Some(ms) => Duration::from_millis(ms),
                        None => limit / 2,
                    });
                }
            }
        }
        result
    }

    async fn poll_device(&mut self, idx: usize, due: Instant) {
        let Some(dev) = self.devices.get_mut(idx) else {
            return;
        };
        let start = Instant::now();
        let on_schedule = dev.failures == 0 && dev.counters.state() != DeviceState::Offline;
        if on_schedule && schedule::missed(due, dev.interval(), start) {
            // The link was busy with other devices past this slot: skip it, never make it up.
            let (next, between) = schedule::next_slot(due, dev.interval(), start);
            dev.due = next;
            add(&dev.counters.skipped, between + 1);
            return;
        }
        inc(&dev.counters.cycles);
        dev.counters
            .lateness
            .record(start.saturating_duration_since(due));
        if let Some((prev_due, prev_start)) = dev.last_start {
            if due == prev_due + dev.interval() {
                let period = start.saturating_duration_since(prev_start);
                dev.counters
                    .period_jitter
                    .record(period.abs_diff(dev.interval()));
            }
        }
        dev.last_start = Some((due, start));
        let offline = dev.counters.state() == DeviceState::Offline;
        let healthy = dev.failures == 0;
        let retries = if healthy { dev.cfg.retries } else { 0 };
        let mut failure: Option<CallError> = None;
        let mut r = 0;
        while let Some(req) = self.devices.get(idx).and_then(|d| d.plan.get(r)).cloned() {
            let mut attempt = 0;
            let outcome = loop {
                let result = self.call(idx, read_request(&req)).await;
                match result {
                    Err(e) if e.is_link_failure() && attempt < retries => attempt += 1,
                    Err(CallError::Mismatch(_)) if attempt < 1 => attempt += 1,
                    other => break other,
                }
            };
            match outcome {
                Ok(rsp) => self.on_answer(idx, &req, rsp).await,
                Err(CallError::Exception(code)) if is_busy(code) => {
                    // Ask again next cycle; the points keep their last value, marked stale.
                    self.report_points(idx, &none(&req.points), Quality::Stale)
                        .await;
                }
                Err(
                    e @ CallError::Exception(
                        ExceptionCode::GatewayPathUnavailable | ExceptionCode::GatewayTargetDevice,
                    ),
                ) => {
                    // 0A/0B: a TCP/RTU gateway cannot reach the device. The connection is
                    // fine (kept), the device is not: a failed cycle.
                    failure = Some(e);
                    break;
                }
                Err(CallError::Exception(
                    ExceptionCode::IllegalDataAddress | ExceptionCode::IllegalDataValue,
                )) if req.points.len() > 1 => {
                    // A merged request may span addresses the device refuses (02), or be
                    // longer than it accepts (03): read its points one by one from now on.
                    self.split_request(idx, r);
                    continue;
                }
                Err(e @ CallError::Exception(_)) => {
                    self.point_error(idx, &req.points, &e).await;
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
            if offline {
                // A probe of an offline device: one answer is enough to bring it back.
                break;
            }
            r += 1;
        }
        match failure {
            None => self.on_cycle_ok(idx, due, offline).await,
            Some(e) => self.on_cycle_failed(idx, &e).await,
        }
    }

    fn split_request(&mut self, idx: usize, r: usize) {
        let Some(dev) = self.devices.get_mut(idx) else {
            return;
        };
        let Some(req) = dev.plan.get(r).cloned() else {
            return;
        };
        let singles: Vec<ReadRequest> = req
            .points
            .iter()
            .filter_map(|&i| {
                let p = dev.cfg.points.get(i)?;
                Some(ReadRequest {
                    register: p.register,
                    address: *dev.addresses.get(i)?,
                    count: p.width().max(1),
                    points: vec![i],
                })
            })
            .collect();
        dev.plan.splice(r..=r, singles);
    }

    async fn on_cycle_ok(&mut self, idx: usize, due: Instant, was_offline: bool) {
        let Some(dev) = self.devices.get_mut(idx) else {
            return;
        };
        let back = dev.failures > 0 || was_offline;
        dev.failures = 0;
        dev.backoff.reset();
        let interval = dev.interval();
        let now = Instant::now();
        if was_offline {
            // The probe answered: poll fully right away.
            dev.due = now;
        } else if back {
            dev.due = now + interval;
        } else {
            let (next, skipped) = schedule::next_slot(due, interval, now);
            dev.due = next;
            if skipped > 0 {
                // The cycle ran past its next slot: wait for the first free one.
                inc(&dev.counters.overruns);
                add(&dev.counters.skipped, skipped);
            }
        }
        let prev = dev.counters.state();
        dev.counters.set_state(DeviceState::Online);
        if prev == DeviceState::Offline {
            let name = dev.cfg.name.clone();
            self.event("device_online", &name, format!("{name} answers again"))
                .await;
        }
    }

    async fn on_cycle_failed(&mut self, idx: usize, e: &CallError) {
        let Some(dev) = self.devices.get_mut(idx) else {
            return;
        };
        inc(&dev.counters.failed_cycles);
        dev.failures = dev.failures.saturating_add(1);
        let now = Instant::now();
        let state = dev.counters.state();
        let name = dev.cfg.name.clone();
        let all: Vec<usize> = (0..dev.cfg.points.len()).collect();
        if state == DeviceState::Offline {
            dev.due = now + Duration::from_millis(dev.cfg.probe_interval_ms);
            return;
        }
        if dev.failures >= dev.cfg.offline_after {
            dev.counters.set_state(DeviceState::Offline);
            dev.due = now + Duration::from_millis(dev.cfg.probe_interval_ms);
            let failures = dev.failures;
            self.report_points(idx, &none(&all), Quality::CommError)
                .await;
            self.event(
                "device_offline",
                &name,
                format!(
                    "{name} offline after {failures} failed poll cycles (last: {})",
                    e.describe()
                ),
            )
            .await;
        } else {
            let delay = dev.backoff.next_delay().max(dev.interval());
            dev.due = now + delay;
            dev.counters.set_state(DeviceState::Backoff);
            self.report_points(idx, &none(&all), Quality::Stale).await;
        }
    }

    async fn on_answer(&mut self, idx: usize, req: &ReadRequest, rsp: Response) {
        let Some(dev) = self.devices.get(idx) else {
            return;
        };
        let mut values: Vec<(usize, Option<Value>)> = Vec::with_capacity(req.points.len());
        for &i in &req.points {
            let (Some(p), Some(&addr)) = (dev.cfg.points.get(i), dev.addresses.get(i)) else {
                continue;
            };
            let off = usize::from(addr.saturating_sub(req.address));
            let v = match &rsp {
                Response::ReadCoils(bits) | Response::ReadDiscreteInputs(bits) => {
                    bits.get(off).map(|b| codec::decode_bit(p, *b))
                }
                Response::ReadHoldingRegisters(w) | Response::ReadInputRegisters(w) => {
                    w.get(off..).and_then(|w| codec::decode_registers(p, w))
                }
                _ => None,
            };
            values.push((i, v));
        }
        let mut numbers = Vec::with_capacity(values.len());
        for (i, v) in values {
            match v {
                Some(Value::Number(x)) => {
                    if let Some(ps) = self.devices.get_mut(idx).and_then(|d| d.points.get_mut(i)) {
                        ps.in_error = false;
                    }
                    numbers.push((i, Some(x)));
                }
                Some(Value::Text(t)) => self.report_text(idx, i, t).await,
                None => {}
            }
        }
        self.report_points(idx, &numbers, Quality::Good).await;
    }

    /// Reports points, all stamped with one time: with a value, a fresh value of the given quality (turned into
    /// `out_of_range` when outside min/max); without, the last good value with `quality`.
    async fn report_points(
        &mut self,
        idx: usize,
        points: &[(usize, Option<f64>)],
        quality: Quality,
    ) {
        let time = crate::clock::wall_s();
        for &(i, value) in points {
            let Some(dev) = self.devices.get_mut(idx) else {
                return;
            };
            let (Some(p), Some(ps)) = (dev.cfg.points.get(i), dev.points.get_mut(i)) else {
                continue;
            };
            if p.data_type() == DataType::String {
                continue;
            }
            let (v, q) = match value {
                Some(v) => {
                    let out = p.min.is_some_and(|lo| v < lo) || p.max.is_some_and(|hi| v > hi);
                    if out {
                        (v, Quality::OutOfRange)
                    } else {
                        ps.last_good = Some(v);
                        (v, quality)
                    }
                }
                None => match (ps.last_good, quality) {
                    (Some(v), _) => (v, quality),
                    // Nothing good to repeat: a stale value without a value is a comm error.
                    (None, _) => (ps.reported.map(|r| r.0).unwrap_or(0.0), Quality::CommError),
                },
            };
            let send = match ps.reported {
                None => true,
                Some((last, lq)) => {
                    lq != q
                        || if p.deadband > 0.0 {
                            (v - last).abs() > p.deadband
                        } else if p.on_change {
                            v != last
                        } else {
                            true
                        }
                }
            };
            if !send {
                continue;
            }
            ps.reported = Some((v, q));
            let reading = Reading {
                sensor: dev.sensor(p).to_string(),
                quantity: p.name.clone(),
                value: v,
                unit: p.unit,
                time,
                quality: q,
            };
            inc(&dev.counters.readings);
            // A full channel is back-pressure: wait. A closed one means the gateway is
            // shutting down.
            let _ = self.readings.send(reading).await;
        }
    }

    async fn report_text(&mut self, idx: usize, i: usize, text: String) {
        let Some(dev) = self.devices.get_mut(idx) else {
            return;
        };
        let (Some(p), Some(ps)) = (dev.cfg.points.get(i), dev.points.get_mut(i)) else {
            return;
        };
        ps.in_error = false;
        if ps.text.as_deref() == Some(text.as_str()) {
            return;
        }
        ps.text = Some(text.clone());
        let source = format!("{}/{}", dev.sensor(p), p.name);
        self.event("point_text", &source, text).await;
    }

    async fn point_error(&mut self, idx: usize, points: &[usize], e: &CallError) {
        let mut newly = Vec::new();
        if let Some(dev) = self.devices.get_mut(idx) {
            for &i in points {
                let (Some(p), Some(ps)) = (dev.cfg.points.get(i), dev.points.get_mut(i)) else {
                    continue;
                };
                if !ps.in_error {
                    ps.in_error = true;
                    newly.push((format!("{}/{}", dev.sensor(p), p.name), p.register));
                }
            }
        }
        for (source, register) in newly {
            self.event(
                "point_error",
                &source,
                format!("reading {} failed: {}", register.as_str(), e.describe()),
            )
            .await;
        }
        self.report_points(idx, &none(points), Quality::CommError)
            .await;
    }

    async fn event(&mut self, kind: &str, source: &str, message: String) {
        let _ = self
            .events
            .send(Event {
                kind: kind.to_string(),
                source: source.to_string(),
                message,
                time: crate::clock::wall_s(),
            })
            .await;
    }

    /// Performs a write, then reads the same range back and compares.
    async fn write(&mut self, idx: usize, w: Write) -> Result<(), WriteError> {
        let dev = self.devices.get(idx).ok_or(WriteError::UnknownDevice)?;
        let w = resolve_point_write(&dev.cfg.points, &dev.addresses, w)?;
        let (req, verify): (Request<'static>, Request<'static>) = match &w {
            Write::Coil { address, value } => (
                Request::WriteSingleCoil(*address, *value),
                Request::ReadCoils(*address, 1),
            ),
            Write::Coils { address, values } => {
                let n = check_len(values.len(), MAX_WRITE_COILS, *address)?;
                (
                    Request::WriteMultipleCoils(*address, Cow::Owned(values.clone())),
                    Request::ReadCoils(*address, n),
                )
            }
            Write::Register { address, value } => (
                Request::WriteSingleRegister(*address, *value),
                Request::ReadHoldingRegisters(*address, 1),
            ),
            Write::Registers { address, values } => {
                let n = check_len(values.len(), MAX_WRITE_REGISTERS, *address)?;
                (
                    Request::WriteMultipleRegisters(*address, Cow::Owned(values.clone())),
                    Request::ReadHoldingRegisters(*address, n),
                )
            }
            Write::Point { .. } => return Err(WriteError::NotWritable("unresolved point".into())),
        };
        self.call(idx, req).await.map_err(write_error)?;
        let back = self.call(idx, verify).await.map_err(write_error)?;
        let ok = match (&w, &back) {
            (Write::Coil { value, .. }, Response::ReadCoils(b)) => b.first() == Some(value),
            (Write::Coils { values, .. }, Response::ReadCoils(b)) => {
                b.get(..values.len()) == Some(values.as_slice())
            }
            (Write::Register { value, .. }, Response::ReadHoldingRegisters(r)) => {
                r.first() == Some(value)
            }
            (Write::Registers { values, .. }, Response::ReadHoldingRegisters(r)) => {
                r.as_slice() == values.as_slice()
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(WriteError::VerifyFailed(format!(
                "wrote {w:?}, read back {back:?}"
            )))
        }
    }
}

/// Reads and discards until nothing has arrived for `guard` (at most four guards in all, so
/// that a babbling line cannot stall the bus forever).
async fn quiet_line(stream: &mut tokio_serial::SerialStream, guard: Duration) {
    use tokio::io::AsyncReadExt;
    let cap = Instant::now() + guard * 4;
    let mut buf = [0u8; 256];
    while Instant::now() < cap {
        match timeout(guard, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => continue,
            _ => return,
        }
    }
}
