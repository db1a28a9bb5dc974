//! The Modbus source: polls Modbus TCP devices and RTU slaves on serial buses, emits
//! [`Reading`]s with quality flags and status [`Event`]s, and performs verified writes.
//!
//! - [`config`]: device and register-map configuration and its validation;
//! - [`codec`]: register contents ↔ values (byte/word order, types, scale);
//! - [`plan`]: the read planner (fewest requests within protocol limits);
//! - `poller`: the link tasks (timeouts, reconnects, backoff, offline probing, RTU bus turns);
//! - `schedule`: fixed-rate poll slots; a missed slot is skipped, never made up;
//! - [`stats`]: per-device counters.
//!
//! One task runs per link: all RTU devices on one serial port share one task and are polled
//! in turn; so do TCP devices with the same `host:port` (unit ids behind a Modbus TCP/RTU
//! gateway), over one connection, or spread over `connections = N` connections (links) for
//! servers that accept several.

pub mod builtin;
pub mod codec;
pub mod config;
pub mod plan;
pub mod stats;

mod poller;
mod request;
mod schedule;

use std::collections::HashMap;
use std::sync::Arc;

use citygate_protocols::{Event, Reading};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use config::{ConfigError, ConfigErrors, DeviceConfig, PointConfig, RegisterMapConfig};
pub use stats::{DeviceState, DeviceStats};

use poller::{Device, Link, Transport, WriteJob};
use stats::Counters;

/// A write to one device. Every write is read back and compared.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// FC 05.
    Coil { address: u16, value: bool },
    /// FC 15 (1–1968 coils).
    Coils { address: u16, values: Vec<bool> },
    /// FC 06.
    Register { address: u16, value: u16 },
    /// FC 16 (1–123 registers).
    Registers { address: u16, values: Vec<u16> },
    /// A configured coil or holding-register point, by name, in engineering units (the
    /// point's type, order, scale and offset apply; coils: non-zero is on).
    Point { name: String, value: f64 },
}

/// Why a write failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteError {
    #[error("no Modbus device of that name")]
    UnknownDevice,
    #[error("the device has no point named \"{0}\"")]
    UnknownPoint(String),
    #[error("not writable: {0}")]
    NotWritable(String),
    #[error("{len} values to write; 1 to {max} allowed, within the address space")]
    BadLength { len: usize, max: u16 },
    #[error("the device did not answer in time")]
    Timeout,
    #[error("transport error: {0}")]
    Transport(String),
    #[error("the device answered with exception {0:02X}")]
    Exception(u8),
    #[error("read-back does not match: {0}")]
    VerifyFailed(String),
    #[error("the Modbus source has stopped")]
    Closed,
}

struct DeviceRef {
    link: usize,
    index: usize,
    counters: Arc<Counters>,
}

/// The running Modbus source. Dropping it stops every link task.
pub struct ModbusHandle {
    devices: HashMap<String, DeviceRef>,
    order: Vec<String>,
    writes: Vec<mpsc::Sender<WriteJob>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for ModbusHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModbusHandle")
            .field("devices", &self.order)
            .field("links", &self.tasks.len())
            .finish()
    }
}

/// Validates `devices` (with maps already resolved, see [`config::resolve_maps`]) and starts
/// one task per link on the current tokio runtime.
pub fn spawn(
    devices: Vec<DeviceConfig>,
    readings: mpsc::Sender<Reading>,
    events: mpsc::Sender<Event>,
) -> Result<ModbusHandle, ConfigErrors> {
    config::validate(&devices, "sources.modbus")?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    // Group devices into links: one per TCP address, one per serial port.
    let mut links: Vec<(Transport, Vec<Device>)> = Vec::new();
    let mut by_port: HashMap<String, usize> = HashMap::new();
    let mut refs = HashMap::new();
    let mut order = Vec::new();
    let slots = u32::try_from(devices.len()).unwrap_or(u32::MAX);
    let connections = connections_per_address(&devices);
    let mut at_address: HashMap<&str, usize> = HashMap::new();
    let keys: Vec<Option<String>> = devices
        .iter()
        .map(|d| {
            let addr = d.tcp.as_deref()?;
            let seen = at_address.entry(addr).or_insert(0);
            let k = *seen % connections.get(addr).copied().unwrap_or(1);
            *seen += 1;
            Some(format!("tcp {addr} #{k}"))
        })
        .collect();
    for ((n, d), tcp_key) in devices.into_iter().enumerate().zip(keys) {
        let counters = Arc::new(Counters::default());
        let name = d.name.clone();
        let seed = 0x9E37_79B9_7F4A_7C15u64 ^ (n as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
        let (key, transport) = match (&d.tcp, &d.rtu, tcp_key) {
            (Some(addr), _, Some(key)) => (key, Transport::Tcp(addr.clone())),
            (None, Some(r), _) => (format!("rtu {}", r.port), Transport::Rtu(r.clone())),
            _ => continue, // rejected by validate
        };
        let link = *by_port.entry(key).or_insert_with(|| {
            links.push((transport, Vec::new()));
            links.len() - 1
        });
        let Some((_, devs)) = links.get_mut(link) else {
            continue;
        };
        let index = devs.len();
        let slot = u32::try_from(n).unwrap_or(u32::MAX);
        devs.push(Device::new(d, counters.clone(), seed, (slot, slots)));
        refs.insert(
            name.clone(),
            DeviceRef {
                link,
                index,
                counters,
            },
        );
        order.push(name);
    }
    let mut writes = Vec::new();
    let mut tasks = Vec::new();
    for (transport, devs) in links {
        let (tx, rx) = mpsc::channel(16);
        writes.push(tx);
        let link = Link::new(
            transport,
            devs,
            readings.clone(),
            events.clone(),
            rx,
            shutdown_rx.clone(),
        );
        tasks.push(tokio::spawn(link.run()));
    }
    Ok(ModbusHandle {
        devices: refs,
        order,
        writes,
        shutdown,
        tasks,
    })
}

/// `connections` of each TCP address (validated: the devices that set it agree; default 1).
fn connections_per_address(devices: &[DeviceConfig]) -> HashMap<&str, usize> {
    let mut n = HashMap::new();
    for d in devices {
        if let (Some(addr), Some(c)) = (d.tcp.as_deref(), d.connections) {
            n.insert(addr, usize::from(c.max(1)));
        }
    }
    n
}

/// Reads every device's counters, in configuration order; valid after the source stopped.
#[derive(Debug, Clone)]
pub struct ModbusStats(Arc<Vec<(String, Arc<Counters>)>>);

impl ModbusStats {
    /// Counters of every device, in configuration order.
    pub fn snapshot(&self) -> Vec<DeviceStats> {
        self.0.iter().map(|(n, c)| c.snapshot(n)).collect()
    }
}

/// A cloneable handle for writes only (e.g. for the signal actuation task), valid while the
/// [`ModbusHandle`] runs; afterwards writes fail with [`WriteError::Closed`].
#[derive(Debug, Clone)]
pub struct ModbusWriter {
    devices: Arc<HashMap<String, (usize, usize)>>,
    writes: Vec<mpsc::Sender<WriteJob>>,
}

impl ModbusWriter {
    /// As [`ModbusHandle::write`].
    pub async fn write(&self, device: &str, write: Write) -> Result<(), WriteError> {
        let &(link, index) = self.devices.get(device).ok_or(WriteError::UnknownDevice)?;
        send_write(self.writes.get(link), index, write).await
    }
}

async fn send_write(
    tx: Option<&mpsc::Sender<WriteJob>>,
    device: usize,
    write: Write,
) -> Result<(), WriteError> {
    let tx = tx.ok_or(WriteError::Closed)?;
    let (reply, rx) = oneshot::channel();
    tx.send(WriteJob {
        device,
        write,
        reply,
    })
    .await
    .map_err(|_| WriteError::Closed)?;
    rx.await.map_err(|_| WriteError::Closed)?
}

impl ModbusHandle {
    /// Writes to a device between its polls, then reads the range back and compares.
    pub async fn write(&self, device: &str, write: Write) -> Result<(), WriteError> {
        let d = self.devices.get(device).ok_or(WriteError::UnknownDevice)?;
        send_write(self.writes.get(d.link), d.index, write).await
    }

    /// A cloneable write-only handle.
    pub fn writer(&self) -> ModbusWriter {
        ModbusWriter {
            devices: Arc::new(
                self.devices
                    .iter()
                    .map(|(n, d)| (n.clone(), (d.link, d.index)))
                    .collect(),
            ),
            writes: self.writes.clone(),
        }
    }

    /// Counters of every device, in configuration order.
    pub fn stats(&self) -> Vec<DeviceStats> {
        self.order
            .iter()
            .filter_map(|n| self.devices.get(n).map(|d| d.counters.snapshot(n)))
            .collect()
    }

    /// A cloneable reader of every device's counters (for the status and the metrics).
    pub fn stats_reader(&self) -> ModbusStats {
        ModbusStats(Arc::new(
            self.order
                .iter()
                .filter_map(|n| self.devices.get(n).map(|d| (n.clone(), d.counters.clone())))
                .collect(),
        ))
    }

    /// Counters of one device.
    pub fn device_stats(&self, device: &str) -> Option<DeviceStats> {
        self.devices
            .get(device)
            .map(|d| d.counters.snapshot(device))
    }

    /// Stops every link task and waits for them.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for t in std::mem::take(&mut self.tasks) {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for ModbusHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}
