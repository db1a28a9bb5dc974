//! One Modbus call's request and answer, apart from the link that makes it: why a call
//! failed, which exceptions mean "ask again later", the read request of a planned span, the
//! length check of an answer (tokio-modbus only `debug_assert`s it), and a write's length
//! bounds, and a write of a named point resolved against the register map.

use tokio_modbus::{ExceptionCode, Request, Response};

use super::codec;
use super::config::{PointConfig, RegisterType};
use super::plan::ReadRequest;
use super::{Write, WriteError};

/// Why one call failed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CallError {
    Timeout,
    Transport(String),
    /// The answer did not belong to the request; the connection was reset.
    Mismatch(String),
    Exception(ExceptionCode),
}

impl CallError {
    pub(crate) fn describe(&self) -> String {
        match self {
            CallError::Timeout => "timeout".into(),
            CallError::Transport(e) => format!("transport error: {e}"),
            CallError::Mismatch(e) => format!("answer did not match the request: {e}"),
            CallError::Exception(c) => format!("exception {:02X} ({c})", u8::from(*c)),
        }
    }

    /// The link itself failed (as opposed to the device refusing one request).
    pub(crate) fn is_link_failure(&self) -> bool {
        !matches!(self, CallError::Exception(_))
    }
}

/// Exception codes 05 (acknowledge) and 06 (server busy) mean "ask again later"; 0A and 0B
/// (gateway path unavailable, target device failed to respond) fail the device's cycle; the
/// others (01 illegal function, 02 illegal address, 03 illegal value, 04 device failure, ...)
/// are errors of the points of that request.
pub(crate) fn is_busy(code: ExceptionCode) -> bool {
    matches!(
        code,
        ExceptionCode::Acknowledge | ExceptionCode::ServerDeviceBusy
    )
}

pub(crate) fn check_len(len: usize, max: u16, address: u16) -> Result<u16, WriteError> {
    let n = u16::try_from(len).unwrap_or(u16::MAX);
    if n == 0 || n > max || u32::from(address) + u32::from(n) > 65_536 {
        return Err(WriteError::BadLength { len, max });
    }
    Ok(n)
}

pub(crate) fn write_error(e: CallError) -> WriteError {
    match e {
        CallError::Timeout => WriteError::Timeout,
        CallError::Exception(c) => WriteError::Exception(u8::from(c)),
        CallError::Transport(m) | CallError::Mismatch(m) => WriteError::Transport(m),
    }
}

pub(crate) fn read_request(r: &ReadRequest) -> Request<'static> {
    match r.register {
        RegisterType::Coil => Request::ReadCoils(r.address, r.count),
        RegisterType::DiscreteInput => Request::ReadDiscreteInputs(r.address, r.count),
        RegisterType::InputRegister => Request::ReadInputRegisters(r.address, r.count),
        RegisterType::HoldingRegister => Request::ReadHoldingRegisters(r.address, r.count),
    }
}

/// Rejects answers whose length does not match the request (tokio-modbus only
/// `debug_assert`s this).
pub(crate) fn check_length(req: &Request<'_>, rsp: Response) -> Result<Response, CallError> {
    let want = match req {
        Request::ReadCoils(_, n)
        | Request::ReadDiscreteInputs(_, n)
        | Request::ReadInputRegisters(_, n)
        | Request::ReadHoldingRegisters(_, n) => usize::from(*n),
        _ => return Ok(rsp),
    };
    let (got, exact) = match &rsp {
        Response::ReadCoils(b) | Response::ReadDiscreteInputs(b) => (b.len(), false),
        Response::ReadInputRegisters(w) | Response::ReadHoldingRegisters(w) => (w.len(), true),
        _ => return Err(CallError::Mismatch("unexpected response kind".into())),
    };
    if got < want || (exact && got != want) {
        return Err(CallError::Mismatch(format!(
            "asked for {want} values, got {got}"
        )));
    }
    Ok(rsp)
}

pub(crate) fn resolve_point_write(
    points: &[PointConfig],
    addresses: &[u16],
    w: Write,
) -> Result<Write, WriteError> {
    let Write::Point { name, value } = w else {
        return Ok(w);
    };
    let (i, p) = points
        .iter()
        .enumerate()
        .find(|(_, p)| p.name == name)
        .ok_or_else(|| WriteError::UnknownPoint(name.clone()))?;
    let address = *addresses
        .get(i)
        .ok_or_else(|| WriteError::UnknownPoint(name.clone()))?;
    match p.register {
        RegisterType::Coil => Ok(Write::Coil {
            address,
            value: value != 0.0,
        }),
        RegisterType::HoldingRegister => {
            let words = codec::encode_registers(p, value)
                .map_err(|e| WriteError::NotWritable(format!("{name}: {e}")))?;
            Ok(match words.as_slice() {
                [w] => Write::Register { address, value: *w },
                _ => Write::Registers {
                    address,
                    values: words,
                },
            })
        }
        other => Err(WriteError::NotWritable(format!(
            "{name} is a read-only {}",
            other.as_str()
        ))),
    }
}
