//! Virtual field devices: the firmware's own logic — its register bank and Modbus RTU slave —
//! running on the host behind Modbus TCP, so that the demo and the tests reach the real
//! firmware over a real bus. A TCP request is turned into the RTU frame the firmware would
//! see on its RS-485 line (unit id, PDU, CRC) and the firmware's answer back into a TCP reply;
//! when the firmware stays silent (another unit id), so does the server.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use citygate_firmware::bank::{HazardBank, SignalBank};
use citygate_firmware::modbus::crc::crc16;
use citygate_firmware::modbus::{RegisterBank, RtuSlave};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A device the host can run: a register bank with a clock.
pub trait Device: Send + 'static {
    fn bank(&mut self) -> &mut dyn RegisterBank;
    /// Advances the device's logic to `now_ms` (milliseconds since the device started).
    fn tick(&mut self, now_ms: u64);
}

impl Device for SignalBank {
    fn bank(&mut self) -> &mut dyn RegisterBank {
        self
    }
    fn tick(&mut self, now_ms: u64) {
        SignalBank::tick(self, now_ms);
    }
}

/// A hazard node whose physical inputs come from a function of time: the water level in
/// metres the ultrasonic sensor would see (mounted `mount_mm` above the bed).
pub struct SimulatedHazardNode {
    pub bank: HazardBank,
    pub mount_mm: u16,
    pub water_level_m: Box<dyn Fn(u64) -> f64 + Send>,
}

impl Device for SimulatedHazardNode {
    fn bank(&mut self) -> &mut dyn RegisterBank {
        &mut self.bank
    }
    fn tick(&mut self, now_ms: u64) {
        let level_mm = ((self.water_level_m)(now_ms) * 1000.0).clamp(0.0, f64::from(self.mount_mm));
        let distance = f64::from(self.mount_mm) - level_mm;
        self.bank.node_mut().water.on_distance(distance as u16);
    }
}

/// A device and its RTU slave, shared by the server's connections and its clock.
pub struct Hosted<D> {
    pub slave: RtuSlave,
    pub device: D,
}

/// A running virtual device.
pub struct VirtualDevice<D> {
    pub addr: std::net::SocketAddr,
    pub unit: u8,
    shared: Arc<Mutex<Hosted<D>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl<D> std::fmt::Debug for VirtualDevice<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualDevice")
            .field("addr", &self.addr)
            .field("unit", &self.unit)
            .finish()
    }
}

fn lock<D>(m: &Mutex<Hosted<D>>) -> MutexGuard<'_, Hosted<D>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<D: Device> VirtualDevice<D> {
    /// Serves `device` as Modbus unit `unit` on `listener`, ticking it every `tick`.
    pub fn start(
        listener: TcpListener,
        unit: u8,
        device: D,
        tick: Duration,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Mutex::new(Hosted {
            slave: RtuSlave::new(unit),
            device,
        }));
        let clock = Arc::clone(&shared);
        let started = Instant::now();
        let ticker = tokio::spawn(async move {
            let mut every = tokio::time::interval(tick);
            loop {
                every.tick().await;
                lock(&clock)
                    .device
                    .tick(started.elapsed().as_millis() as u64);
            }
        });
        let server = Arc::clone(&shared);
        let acceptor = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_connection(stream, Arc::clone(&server)));
            }
        });
        Ok(VirtualDevice {
            addr,
            unit,
            shared,
            tasks: vec![ticker, acceptor],
        })
    }

    /// Serves `device` as RTU unit `unit` on the serial line `path` (a real port or one end of
    /// a pseudo-terminal pair), ticking it every `tick`. A frame ends after 3.5 characters of
    /// silence at `baud`, as on an RS-485 line.
    pub fn start_rtu(
        path: &std::path::Path,
        baud: u32,
        unit: u8,
        device: D,
        tick: Duration,
    ) -> std::io::Result<Self> {
        let builder = tokio_serial::new(path.to_string_lossy(), baud);
        let serial = tokio_serial::SerialStream::open(&builder).map_err(std::io::Error::other)?;
        let shared = Arc::new(Mutex::new(Hosted {
            slave: RtuSlave::new(unit),
            device,
        }));
        let ticker = spawn_clock(Arc::clone(&shared), tick);
        let line = tokio::spawn(serve_line(serial, baud, Arc::clone(&shared)));
        Ok(VirtualDevice {
            addr: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
            unit,
            shared,
            tasks: vec![ticker, line],
        })
    }

    /// Runs `f` on the device (to read its state or drive its inputs).
    pub fn with<R>(&self, f: impl FnOnce(&mut D) -> R) -> R {
        f(&mut lock(&self.shared).device)
    }
}

impl<D> Drop for VirtualDevice<D> {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Ticks the device every `tick` with the milliseconds since it started.
fn spawn_clock<D: Device>(
    shared: Arc<Mutex<Hosted<D>>>,
    tick: Duration,
) -> tokio::task::JoinHandle<()> {
    let started = Instant::now();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(tick);
        loop {
            every.tick().await;
            lock(&shared)
                .device
                .tick(started.elapsed().as_millis() as u64);
        }
    })
}

/// Reads RTU frames off a serial line (a frame ends after 3.5 characters of silence) and
/// writes the slave's answers back.
async fn serve_line<D: Device>(
    mut serial: tokio_serial::SerialStream,
    baud: u32,
    shared: Arc<Mutex<Hosted<D>>>,
) {
    let silence = Duration::from_micros(u64::from(citygate_firmware::modbus::frame::t35_us(baud)));
    let mut frame = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    loop {
        let read = if frame.is_empty() {
            serial.read(&mut buf).await.ok()
        } else {
            match tokio::time::timeout(silence, serial.read(&mut buf)).await {
                Ok(r) => r.ok(),
                Err(_) => {
                    // Silence: the frame is complete.
                    let mut resp = [0u8; 256];
                    let answer = {
                        let mut h = lock(&shared);
                        let Hosted { slave, device } = &mut *h;
                        slave.handle_frame(device.bank(), &frame, &mut resp)
                    };
                    frame.clear();
                    if let Some(n) = answer {
                        if serial.write_all(&resp[..n]).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
            }
        };
        match read {
            Some(0) | None => return,
            Some(n) => {
                if frame.len() + n > 256 {
                    // Longer than any Modbus frame: line noise; start again.
                    frame.clear();
                } else {
                    frame.extend_from_slice(&buf[..n]);
                }
            }
        }
    }
}

/// Answers one Modbus TCP request (MBAP header + PDU) through the RTU slave; `None` when the
/// slave stays silent.
pub fn answer<D: Device>(hosted: &mut Hosted<D>, mbap: [u8; 7], pdu: &[u8]) -> Option<Vec<u8>> {
    let mut req = Vec::with_capacity(pdu.len() + 3);
    req.push(mbap[6]);
    req.extend_from_slice(pdu);
    req.extend_from_slice(&crc16(&req).to_le_bytes());
    let mut resp = [0u8; 256];
    let Hosted { slave, device } = hosted;
    let n = slave.handle_frame(device.bank(), &req, &mut resp)?;
    // RTU reply: unit, PDU, CRC (2 bytes).
    let body = resp.get(..n.checked_sub(2)?)?;
    let mut out = Vec::with_capacity(body.len() + 6);
    out.extend_from_slice(&mbap[..4]);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    Some(out)
}

async fn serve_connection<D: Device>(mut stream: TcpStream, shared: Arc<Mutex<Hosted<D>>>) {
    let _ = stream.set_nodelay(true);
    loop {
        let mut mbap = [0u8; 7];
        if stream.read_exact(&mut mbap).await.is_err() {
            return;
        }
        let len = usize::from(u16::from_be_bytes([mbap[4], mbap[5]]));
        // The length counts the unit id and the PDU; a PDU is 1 to 253 bytes.
        if !(2..=254).contains(&len) || mbap[2..4] != [0, 0] {
            return;
        }
        let mut pdu = vec![0u8; len - 1];
        if stream.read_exact(&mut pdu).await.is_err() {
            return;
        }
        let reply = answer(&mut lock(&shared), mbap, &pdu);
        if let Some(reply) = reply {
            if stream.write_all(&reply).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citygate_firmware::signal::demo::crossroads;
    use citygate_firmware::signal::SignalController;
    use citygate_protocols::registers::signal_controller as reg;

    fn hosted(unit: u8) -> Hosted<SignalBank> {
        Hosted {
            slave: RtuSlave::new(unit),
            device: SignalBank::new(SignalController::new(crossroads().unwrap(), 0).unwrap()),
        }
    }

    #[test]
    fn a_tcp_read_reaches_the_firmware_registers() {
        let mut h = hosted(7);
        // Read input registers: group count (1 register).
        let pdu = [0x04, 0x00, reg::IR_GROUP_COUNT as u8, 0x00, 0x01];
        let reply = answer(&mut h, [0x12, 0x34, 0, 0, 0, 6, 7], &pdu).unwrap();
        assert_eq!(
            reply,
            vec![0x12, 0x34, 0, 0, 0, 5, 7, 0x04, 0x02, 0x00, 0x02]
        );
    }

    #[test]
    fn another_unit_id_gets_silence_and_a_bad_address_an_exception() {
        let mut h = hosted(7);
        assert_eq!(
            answer(&mut h, [0, 1, 0, 0, 0, 6, 8], &[0x04, 0, 0, 0, 1]),
            None
        );
        let reply = answer(&mut h, [0, 1, 0, 0, 0, 6, 7], &[0x04, 0x7F, 0, 0, 1]).unwrap();
        assert_eq!(&reply[6..], &[7, 0x84, 0x02]);
    }
}
