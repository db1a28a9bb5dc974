//! A TraCI client (SUMO's Traffic Control Interface) over a plain `TcpStream`: the message
//! framing, the typed values, and the handful of commands signal control needs (version,
//! simulation step, close, traffic-light state and links, induction loops, lane-area detectors,
//! lanes, simulation time and vehicles still expected).
//!
//! Wire format (all integers big-endian): a message is a 4-byte length (counting itself) followed
//! by commands. A command is a 1-byte length (counting itself) and a command id, or, when longer
//! than 255 bytes, a 0 byte, a 4-byte length (counting the 5 length bytes) and the id. Every
//! command is answered by a status (`RTYPE_OK` = 0x00, `RTYPE_ERR` = 0xFF, not implemented 0x01)
//! with a description string, and a get-variable command by a response command
//! (`id + 0x10`: variable id, object id, a typed value). The codes are those of SUMO's
//! `tools/traci/constants.py`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub const CMD_GETVERSION: u8 = 0x00;
pub const CMD_SIMSTEP: u8 = 0x02;
pub const CMD_CLOSE: u8 = 0x7F;
pub const CMD_GET_INDUCTIONLOOP_VARIABLE: u8 = 0xa0;
pub const CMD_GET_TL_VARIABLE: u8 = 0xa2;
pub const CMD_GET_LANE_VARIABLE: u8 = 0xa3;
pub const CMD_GET_SIM_VARIABLE: u8 = 0xab;
pub const CMD_GET_LANEAREA_VARIABLE: u8 = 0xad;
pub const CMD_SET_TL_VARIABLE: u8 = 0xc2;

pub const TYPE_UBYTE: u8 = 0x07;
pub const TYPE_BYTE: u8 = 0x08;
pub const TYPE_INTEGER: u8 = 0x09;
pub const TYPE_DOUBLE: u8 = 0x0B;
pub const TYPE_STRING: u8 = 0x0C;
pub const TYPE_STRINGLIST: u8 = 0x0E;
pub const TYPE_COMPOUND: u8 = 0x0F;

pub const RTYPE_OK: u8 = 0x00;

pub const ID_LIST: u8 = 0x00;
pub const LAST_STEP_VEHICLE_NUMBER: u8 = 0x10;
pub const LAST_STEP_VEHICLE_ID_LIST: u8 = 0x12;
pub const LAST_STEP_OCCUPANCY: u8 = 0x13;
pub const LAST_STEP_VEHICLE_HALTING_NUMBER: u8 = 0x14;
pub const JAM_LENGTH_VEHICLE: u8 = 0x18;
pub const JAM_LENGTH_METERS: u8 = 0x19;
pub const TL_RED_YELLOW_GREEN_STATE: u8 = 0x20;
pub const TL_CONTROLLED_LANES: u8 = 0x26;
pub const TL_CONTROLLED_LINKS: u8 = 0x27;
pub const VAR_TIME: u8 = 0x66;
pub const VAR_MIN_EXPECTED_VEHICLES: u8 = 0x7d;

/// Largest message accepted from SUMO (a guard against a corrupt length prefix).
pub const MAX_MESSAGE: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TraciError {
    #[error("TraCI connection to {addr}: {err}")]
    Connect { addr: String, err: std::io::Error },
    #[error("TraCI I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("TraCI: SUMO refused command 0x{command:02x} (status 0x{status:02x}): {message}")]
    Refused {
        command: u8,
        status: u8,
        message: String,
    },
    #[error("TraCI: malformed answer to command 0x{command:02x}: {what}")]
    Malformed { command: u8, what: String },
    #[error("TraCI: message of {0} bytes is larger than the limit")]
    TooLarge(usize),
}

/// A typed TraCI value (the subset signal control reads).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    UByte(u8),
    Byte(i8),
    Int(i32),
    Double(f64),
    Str(String),
    StrList(Vec<String>),
    /// A compound: its items in order.
    Compound(Vec<Value>),
}

/// Appends a 4-byte length-prefixed UTF-8 string.
pub fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Appends a typed value (type byte, then the value).
pub fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::UByte(b) => out.extend_from_slice(&[TYPE_UBYTE, *b]),
        Value::Byte(b) => out.extend_from_slice(&[TYPE_BYTE, *b as u8]),
        Value::Int(i) => {
            out.push(TYPE_INTEGER);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Value::Double(d) => {
            out.push(TYPE_DOUBLE);
            out.extend_from_slice(&d.to_be_bytes());
        }
        Value::Str(s) => {
            out.push(TYPE_STRING);
            put_string(out, s);
        }
        Value::StrList(l) => {
            out.push(TYPE_STRINGLIST);
            out.extend_from_slice(&(l.len() as u32).to_be_bytes());
            for s in l {
                put_string(out, s);
            }
        }
        Value::Compound(items) => {
            out.push(TYPE_COMPOUND);
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for i in items {
                put_value(out, i);
            }
        }
    }
}

/// Frames one command: length byte(s), command id, content.
pub fn encode_command(id: u8, content: &[u8]) -> Vec<u8> {
    let short = content.len() + 2;
    let mut out = Vec::with_capacity(short + 4);
    if short <= 255 {
        out.push(short as u8);
    } else {
        out.push(0);
        out.extend_from_slice(&((content.len() + 6) as u32).to_be_bytes());
    }
    out.push(id);
    out.extend_from_slice(content);
    out
}

/// Frames a message: total length (counting its own 4 bytes), then the commands.
pub fn encode_message(commands: &[Vec<u8>]) -> Vec<u8> {
    let len: usize = 4 + commands.iter().map(Vec::len).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    for c in commands {
        out.extend_from_slice(c);
    }
    out
}

/// The content of a get-variable command: variable id, object id.
pub fn get_variable(cmd: u8, var: u8, object: &str) -> Vec<u8> {
    let mut c = vec![var];
    put_string(&mut c, object);
    encode_command(cmd, &c)
}

/// A set-variable command: variable id, object id, typed value.
pub fn set_variable(cmd: u8, var: u8, object: &str, value: &Value) -> Vec<u8> {
    let mut c = vec![var];
    put_string(&mut c, object);
    put_value(&mut c, value);
    encode_command(cmd, &c)
}

/// `simulationStep` to `target` seconds (0 = exactly one step).
pub fn simulation_step(target: f64) -> Vec<u8> {
    encode_command(CMD_SIMSTEP, &target.to_be_bytes())
}

/// A reader over one received message body.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    command: u8,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], command: u8) -> Self {
        Reader {
            buf,
            pos: 0,
            command,
        }
    }

    fn bad(&self, what: impl Into<String>) -> TraciError {
        TraciError::Malformed {
            command: self.command,
            what: format!("{} (at byte {})", what.into(), self.pos),
        }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], TraciError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(self.bad(format!("wanted {n} bytes, {} left", self.remaining()))),
        }
    }

    pub fn u8(&mut self) -> Result<u8, TraciError> {
        Ok(self.bytes(1)?[0])
    }

    pub fn i32(&mut self) -> Result<i32, TraciError> {
        let b = self.bytes(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn f64(&mut self) -> Result<f64, TraciError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_be_bytes(a))
    }

    fn count(&mut self) -> Result<usize, TraciError> {
        let n = self.i32()?;
        usize::try_from(n).map_err(|_| self.bad(format!("negative length {n}")))
    }

    pub fn string(&mut self) -> Result<String, TraciError> {
        let n = self.count()?;
        let b = self.bytes(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| self.bad("string is not UTF-8"))
    }

    /// A typed value; compounds nest up to 8 levels.
    pub fn value(&mut self) -> Result<Value, TraciError> {
        self.value_at(0)
    }

    fn value_at(&mut self, depth: usize) -> Result<Value, TraciError> {
        let t = self.u8()?;
        Ok(match t {
            TYPE_UBYTE => Value::UByte(self.u8()?),
            TYPE_BYTE => Value::Byte(self.u8()? as i8),
            TYPE_INTEGER => Value::Int(self.i32()?),
            TYPE_DOUBLE => Value::Double(self.f64()?),
            TYPE_STRING => Value::Str(self.string()?),
            TYPE_STRINGLIST => {
                let n = self.count()?;
                let mut l = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    l.push(self.string()?);
                }
                Value::StrList(l)
            }
            TYPE_COMPOUND if depth < 8 => {
                let n = self.count()?;
                let mut l = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    l.push(self.value_at(depth + 1)?);
                }
                Value::Compound(l)
            }
            other => return Err(self.bad(format!("unsupported value type 0x{other:02x}"))),
        })
    }

    /// A command header: returns (command id, content length left in the command).
    pub fn command_header(&mut self) -> Result<(u8, usize), TraciError> {
        let short = self.u8()? as usize;
        let (len, header) = if short == 0 {
            (self.count()?, 6)
        } else {
            (short, 2)
        };
        let id = self.u8()?;
        let body = len
            .checked_sub(header)
            .ok_or_else(|| self.bad(format!("command length {len} too short")))?;
        Ok((id, body))
    }

    /// A status answer to `expected`: fails with the SUMO message when it is not OK.
    pub fn status(&mut self, expected: u8) -> Result<(), TraciError> {
        let (id, _) = self.command_header()?;
        let status = self.u8()?;
        let message = self.string()?;
        if id != expected {
            return Err(self.bad(format!("status for command 0x{id:02x}")));
        }
        if status != RTYPE_OK {
            return Err(TraciError::Refused {
                command: expected,
                status,
                message,
            });
        }
        Ok(())
    }

    /// The response to a get-variable command `cmd` on `var` of `object`: its typed value.
    pub fn get_response(&mut self, cmd: u8, var: u8, object: &str) -> Result<Value, TraciError> {
        let (id, _) = self.command_header()?;
        let v = self.u8()?;
        let o = self.string()?;
        if id != cmd.wrapping_add(0x10) || v != var || o != object {
            return Err(self.bad(format!(
                "answer 0x{id:02x}/0x{v:02x}/{o} does not match 0x{cmd:02x}/0x{var:02x}/{object}"
            )));
        }
        self.value()
    }
}

/// Controlled links of a traffic light, by link index: (incoming lane, outgoing lane, via lane)
/// for each connection the signal controls. Decoded from the `TL_CONTROLLED_LINKS` compound:
/// number of signals, then per signal the number of links and a string list per link.
pub fn decode_controlled_links(v: &Value) -> Option<Vec<Vec<[String; 3]>>> {
    let Value::Compound(items) = v else {
        return None;
    };
    let mut it = items.iter();
    let Some(Value::Int(n)) = it.next() else {
        return None;
    };
    let mut out = Vec::new();
    for _ in 0..*n {
        let Some(Value::Int(k)) = it.next() else {
            return None;
        };
        let mut links = Vec::new();
        for _ in 0..*k {
            match it.next() {
                Some(Value::StrList(l)) if l.len() == 3 => {
                    links.push([l[0].clone(), l[1].clone(), l[2].clone()]);
                }
                _ => return None,
            }
        }
        out.push(links);
    }
    Some(out)
}

/// A connection to a SUMO started with `--remote-port`.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
}

impl Client {
    /// Connects to SUMO on `port` at 127.0.0.1, retrying until `within` passes (SUMO opens
    /// the port only after loading the network).
    pub fn connect(port: u16, within: Duration) -> Result<Client, TraciError> {
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + within;
        loop {
            match TcpStream::connect(&addr) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    return Ok(Client { stream });
                }
                Err(e) if Instant::now() >= deadline => {
                    return Err(TraciError::Connect { addr, err: e })
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Sends one command and returns the whole answer message's body.
    pub fn exchange(&mut self, command: Vec<u8>) -> Result<Vec<u8>, TraciError> {
        self.exchange_many(&[command])
    }

    /// Sends several commands in one message and returns the whole answer message's body
    /// (SUMO answers them in order).
    pub fn exchange_many(&mut self, commands: &[Vec<u8>]) -> Result<Vec<u8>, TraciError> {
        self.stream.write_all(&encode_message(commands))?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let total = u32::from_be_bytes(len) as usize;
        if total > MAX_MESSAGE {
            return Err(TraciError::TooLarge(total));
        }
        let mut body = vec![0u8; total.saturating_sub(4)];
        self.stream.read_exact(&mut body)?;
        Ok(body)
    }

    /// `getVersion`: (API version, SUMO version string).
    pub fn version(&mut self) -> Result<(i32, String), TraciError> {
        let body = self.exchange(encode_command(CMD_GETVERSION, &[]))?;
        let mut r = Reader::new(&body, CMD_GETVERSION);
        r.status(CMD_GETVERSION)?;
        let (id, _) = r.command_header()?;
        if id != CMD_GETVERSION {
            return Err(r.bad(format!("version answer has id 0x{id:02x}")));
        }
        let api = r.i32()?;
        Ok((api, r.string()?))
    }

    /// `simulationStep` to `target` seconds (0 = one step). Subscriptions are not used, so
    /// the count of subscription results that follows must be 0.
    pub fn step(&mut self, target: f64) -> Result<(), TraciError> {
        let body = self.exchange(simulation_step(target))?;
        let mut r = Reader::new(&body, CMD_SIMSTEP);
        r.status(CMD_SIMSTEP)?;
        let subs = r.i32()?;
        if subs != 0 {
            return Err(r.bad(format!("{subs} subscription results, none subscribed")));
        }
        Ok(())
    }

    /// `close`: SUMO writes its outputs and exits.
    pub fn close(mut self) -> Result<(), TraciError> {
        let body = self.exchange(encode_command(CMD_CLOSE, &[]))?;
        Reader::new(&body, CMD_CLOSE).status(CMD_CLOSE)
    }

    /// A get-variable command: the typed value.
    pub fn get(&mut self, cmd: u8, var: u8, object: &str) -> Result<Value, TraciError> {
        let body = self.exchange(get_variable(cmd, var, object))?;
        let mut r = Reader::new(&body, cmd);
        r.status(cmd)?;
        r.get_response(cmd, var, object)
    }

    /// Several get-variable commands `(command, variable, object)` in one round trip: their
    /// values in order. An error answer to any of them fails the whole batch.
    pub fn get_batch(&mut self, queries: &[(u8, u8, &str)]) -> Result<Vec<Value>, TraciError> {
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        let commands: Vec<Vec<u8>> = queries
            .iter()
            .map(|(c, v, o)| get_variable(*c, *v, o))
            .collect();
        let body = self.exchange_many(&commands)?;
        let mut r = Reader::new(&body, queries[0].0);
        let mut out = Vec::with_capacity(queries.len());
        for (c, v, o) in queries {
            r.command = *c;
            r.status(*c)?;
            out.push(r.get_response(*c, *v, o)?);
        }
        Ok(out)
    }

    /// A set-variable command.
    pub fn set(&mut self, cmd: u8, var: u8, object: &str, value: &Value) -> Result<(), TraciError> {
        let body = self.exchange(set_variable(cmd, var, object, value))?;
        Reader::new(&body, cmd).status(cmd)
    }

    fn expect<T>(
        &mut self,
        cmd: u8,
        var: u8,
        object: &str,
        f: impl FnOnce(Value) -> Option<T>,
    ) -> Result<T, TraciError> {
        let v = self.get(cmd, var, object)?;
        let shown = format!("{v:?}");
        f(v).ok_or_else(|| TraciError::Malformed {
            command: cmd,
            what: format!("variable 0x{var:02x} of {object}: unexpected value {shown}"),
        })
    }

    fn get_int(&mut self, cmd: u8, var: u8, object: &str) -> Result<i32, TraciError> {
        self.expect(cmd, var, object, |v| match v {
            Value::Int(i) => Some(i),
            _ => None,
        })
    }

    fn get_double(&mut self, cmd: u8, var: u8, object: &str) -> Result<f64, TraciError> {
        self.expect(cmd, var, object, |v| match v {
            Value::Double(d) => Some(d),
            _ => None,
        })
    }

    fn get_strings(&mut self, cmd: u8, var: u8, object: &str) -> Result<Vec<String>, TraciError> {
        self.expect(cmd, var, object, |v| match v {
            Value::StrList(l) => Some(l),
            _ => None,
        })
    }

    /// Simulation time in seconds.
    pub fn time(&mut self) -> Result<f64, TraciError> {
        self.get_double(CMD_GET_SIM_VARIABLE, VAR_TIME, "")
    }

    /// Vehicles in the network plus those still to be inserted.
    pub fn min_expected_vehicles(&mut self) -> Result<i32, TraciError> {
        self.get_int(CMD_GET_SIM_VARIABLE, VAR_MIN_EXPECTED_VEHICLES, "")
    }

    pub fn traffic_light_ids(&mut self) -> Result<Vec<String>, TraciError> {
        self.get_strings(CMD_GET_TL_VARIABLE, ID_LIST, "")
    }

    /// The state string of a traffic light (one of `rRyYgGuoOs` per link index).
    pub fn red_yellow_green_state(&mut self, tls: &str) -> Result<String, TraciError> {
        self.expect(
            CMD_GET_TL_VARIABLE,
            TL_RED_YELLOW_GREEN_STATE,
            tls,
            |v| match v {
                Value::Str(s) => Some(s),
                _ => None,
            },
        )
    }

    pub fn set_red_yellow_green_state(&mut self, tls: &str, state: &str) -> Result<(), TraciError> {
        self.set(
            CMD_SET_TL_VARIABLE,
            TL_RED_YELLOW_GREEN_STATE,
            tls,
            &Value::Str(state.to_string()),
        )
    }

    pub fn controlled_lanes(&mut self, tls: &str) -> Result<Vec<String>, TraciError> {
        self.get_strings(CMD_GET_TL_VARIABLE, TL_CONTROLLED_LANES, tls)
    }

    /// Links by link index: (incoming lane, outgoing lane, via lane) for each.
    pub fn controlled_links(&mut self, tls: &str) -> Result<Vec<Vec<[String; 3]>>, TraciError> {
        self.expect(CMD_GET_TL_VARIABLE, TL_CONTROLLED_LINKS, tls, |v| {
            decode_controlled_links(&v)
        })
    }

    /// Vehicles on an induction loop during the last step.
    pub fn loop_vehicle_number(&mut self, det: &str) -> Result<i32, TraciError> {
        self.get_int(
            CMD_GET_INDUCTIONLOOP_VARIABLE,
            LAST_STEP_VEHICLE_NUMBER,
            det,
        )
    }

    /// Occupancy of an induction loop during the last step, in percent.
    pub fn loop_occupancy(&mut self, det: &str) -> Result<f64, TraciError> {
        self.get_double(CMD_GET_INDUCTIONLOOP_VARIABLE, LAST_STEP_OCCUPANCY, det)
    }

    /// Ids of the vehicles on an induction loop during the last step.
    pub fn loop_vehicle_ids(&mut self, det: &str) -> Result<Vec<String>, TraciError> {
        self.get_strings(
            CMD_GET_INDUCTIONLOOP_VARIABLE,
            LAST_STEP_VEHICLE_ID_LIST,
            det,
        )
    }

    pub fn lane_area_vehicle_number(&mut self, det: &str) -> Result<i32, TraciError> {
        self.get_int(CMD_GET_LANEAREA_VARIABLE, LAST_STEP_VEHICLE_NUMBER, det)
    }

    /// Jam length of a lane-area detector, in metres.
    pub fn lane_area_jam_length(&mut self, det: &str) -> Result<f64, TraciError> {
        self.get_double(CMD_GET_LANEAREA_VARIABLE, JAM_LENGTH_METERS, det)
    }

    pub fn lane_vehicle_number(&mut self, lane: &str) -> Result<i32, TraciError> {
        self.get_int(CMD_GET_LANE_VARIABLE, LAST_STEP_VEHICLE_NUMBER, lane)
    }

    pub fn lane_halting_number(&mut self, lane: &str) -> Result<i32, TraciError> {
        self.get_int(
            CMD_GET_LANE_VARIABLE,
            LAST_STEP_VEHICLE_HALTING_NUMBER,
            lane,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_version_message_is_byte_exact() {
        let m = encode_message(&[encode_command(CMD_GETVERSION, &[])]);
        assert_eq!(m, [0, 0, 0, 6, 2, 0]);
    }

    #[test]
    fn simulation_step_carries_a_raw_double() {
        let m = encode_message(&[simulation_step(1.5)]);
        let mut want = vec![0, 0, 0, 14, 10, CMD_SIMSTEP];
        want.extend_from_slice(&1.5f64.to_be_bytes());
        assert_eq!(m, want);
    }

    #[test]
    fn set_state_is_byte_exact() {
        let c = set_variable(
            CMD_SET_TL_VARIABLE,
            TL_RED_YELLOW_GREEN_STATE,
            "A0",
            &Value::Str("Gr".into()),
        );
        assert_eq!(
            c,
            [16, 0xc2, 0x20, 0, 0, 0, 2, b'A', b'0', 0x0C, 0, 0, 0, 2, b'G', b'r']
        );
    }

    #[test]
    fn get_variable_is_byte_exact() {
        let c = get_variable(CMD_GET_SIM_VARIABLE, VAR_TIME, "");
        assert_eq!(c, [7, 0xab, 0x66, 0, 0, 0, 0]);
    }

    #[test]
    fn long_commands_use_the_extended_length() {
        let content = vec![7u8; 300];
        let c = encode_command(0xc2, &content);
        assert_eq!(&c[..6], &[0, 0, 0, 0x01, 0x32, 0xc2]);
        assert_eq!(c.len(), 306);
        let mut r = Reader::new(&c, 0xc2);
        assert_eq!(r.command_header().unwrap(), (0xc2, 300));
    }

    /// An answer as SUMO writes it: status OK, then the response command.
    fn answer(cmd: u8, var: u8, object: &str, value: &Value) -> Vec<u8> {
        let mut status = vec![RTYPE_OK];
        put_string(&mut status, "");
        let mut out = encode_command(cmd, &status);
        let mut resp = vec![var];
        put_string(&mut resp, object);
        put_value(&mut resp, value);
        out.extend(encode_command(cmd + 0x10, &resp));
        out
    }

    #[test]
    fn decodes_a_get_answer() {
        let body = answer(CMD_GET_SIM_VARIABLE, VAR_TIME, "", &Value::Double(42.0));
        assert_eq!(
            body,
            [
                7, 0xab, 0, 0, 0, 0, 0, // status
                16, 0xbb, 0x66, 0, 0, 0, 0, 0x0B, 0x40, 0x45, 0, 0, 0, 0, 0, 0
            ]
        );
        let mut r = Reader::new(&body, CMD_GET_SIM_VARIABLE);
        r.status(CMD_GET_SIM_VARIABLE).unwrap();
        assert_eq!(
            r.get_response(CMD_GET_SIM_VARIABLE, VAR_TIME, "").unwrap(),
            Value::Double(42.0)
        );
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn an_error_status_carries_sumos_message() {
        let mut status = vec![0xFF];
        put_string(&mut status, "Traffic light 'X' is not known");
        let body = encode_command(CMD_GET_TL_VARIABLE, &status);
        let e = Reader::new(&body, CMD_GET_TL_VARIABLE)
            .status(CMD_GET_TL_VARIABLE)
            .unwrap_err();
        assert!(e.to_string().contains("'X' is not known"), "{e}");
    }

    #[test]
    fn a_mismatched_answer_is_an_error() {
        let body = answer(CMD_GET_TL_VARIABLE, 0x20, "B0", &Value::Str("G".into()));
        let mut r = Reader::new(&body, CMD_GET_TL_VARIABLE);
        r.status(CMD_GET_TL_VARIABLE).unwrap();
        assert!(r.get_response(CMD_GET_TL_VARIABLE, 0x20, "A0").is_err());
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let body = answer(CMD_GET_TL_VARIABLE, 0x20, "A0", &Value::Str("GGrr".into()));
        for cut in 0..body.len() {
            let mut r = Reader::new(&body[..cut], CMD_GET_TL_VARIABLE);
            let ok = r
                .status(CMD_GET_TL_VARIABLE)
                .and_then(|_| r.get_response(CMD_GET_TL_VARIABLE, 0x20, "A0"));
            assert!(ok.is_err(), "cut at {cut}");
        }
    }

    /// A fake SUMO: reads one message, checks it, sends `reply` framed as a message.
    fn fake_sumo(expect: Vec<u8>, reply: Vec<u8>) -> (u16, std::thread::JoinHandle<()>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut got = vec![0u8; expect.len()];
            s.read_exact(&mut got).unwrap();
            assert_eq!(got, expect);
            s.write_all(&encode_message(&[reply])).unwrap();
        });
        (port, h)
    }

    #[test]
    fn a_batch_goes_in_one_message_and_answers_decode_in_order() {
        let q = [
            (
                CMD_GET_INDUCTIONLOOP_VARIABLE,
                LAST_STEP_VEHICLE_ID_LIST,
                "d1",
            ),
            (CMD_GET_INDUCTIONLOOP_VARIABLE, LAST_STEP_OCCUPANCY, "d1"),
        ];
        let expect = encode_message(&[
            get_variable(q[0].0, q[0].1, q[0].2),
            get_variable(q[1].0, q[1].1, q[1].2),
        ]);
        assert_eq!(&expect[..4], &[0, 0, 0, 4 + 9 + 9]);
        let ids = Value::StrList(vec!["veh.1".into()]);
        let mut reply = answer(q[0].0, q[0].1, "d1", &ids);
        reply.extend(answer(q[1].0, q[1].1, "d1", &Value::Double(37.5)));
        let (port, h) = fake_sumo(expect, reply);
        let mut c = Client::connect(port, Duration::from_secs(5)).unwrap();
        let v = c.get_batch(&q).unwrap();
        assert_eq!(v, [ids, Value::Double(37.5)]);
        h.join().unwrap();
    }

    #[test]
    fn controlled_links_compound_decodes() {
        let link = |a: &str| Value::StrList(vec![a.into(), "out_0".into(), ":A0_0_0".into()]);
        let v = Value::Compound(vec![
            Value::Int(2),
            Value::Int(1),
            link("in_0"),
            Value::Int(2),
            link("in_1"),
            link("in_2"),
        ]);
        let mut bytes = Vec::new();
        put_value(&mut bytes, &v);
        let back = Reader::new(&bytes, 0).value().unwrap();
        assert_eq!(back, v);
        let links = decode_controlled_links(&back).unwrap();
        assert_eq!(links.len(), 2);
        assert_eq!(links[1][1][0], "in_2");
        assert_eq!(
            decode_controlled_links(&Value::Compound(vec![Value::Int(1)])),
            None
        );
    }
}
