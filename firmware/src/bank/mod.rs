//! Register banks: adapters that map Modbus reads and writes onto the devices through the
//! register maps in `citygate_protocols::registers`. The firmware serves them over RTU; the
//! gateway can host the same banks as virtual devices behind a Modbus server.

pub mod hazard;
pub mod signal;

pub use hazard::HazardBank;
pub use signal::SignalBank;

use crate::modbus::{check_range, Exception};

/// Fills `out` from `read(address + i)` after checking the range against `size`.
fn read_each<T>(
    address: u16,
    out: &mut [T],
    size: u16,
    mut read: impl FnMut(u16) -> T,
) -> Result<(), Exception> {
    check_range(address, out.len(), size)?;
    for (i, o) in out.iter_mut().enumerate() {
        *o = read(address.wrapping_add(i as u16));
    }
    Ok(())
}
