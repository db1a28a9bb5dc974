//! Pure conversion between register contents and point values: byte/word order, data types,
//! scale and offset, in both directions (decode for polls, encode for writes).

use super::config::{ByteOrder, DataType, PointConfig};

/// A decoded point value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Engineering value (raw × scale + offset).
    Number(f64),
    /// A `string` point: the bytes of its `len` registers up to the first NUL, trailing
    /// spaces removed.
    Text(String),
}

/// Why a value cannot be encoded for a write.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    #[error("value {value} is outside the range of {ty:?} ({raw} raw)")]
    OutOfRange { value: f64, raw: f64, ty: DataType },
    #[error("value is not finite")]
    NotFinite,
    #[error("{0:?} points cannot be written as a number")]
    NotWritable(DataType),
}

/// The value's bytes, most significant first, from registers as they arrived on the wire.
pub fn value_bytes(words: &[u16], order: ByteOrder) -> Vec<u8> {
    let mut out = Vec::with_capacity(words.len() * 2);
    let ordered: Box<dyn Iterator<Item = &u16>> = if order.words_swapped() {
        Box::new(words.iter().rev())
    } else {
        Box::new(words.iter())
    };
    for w in ordered {
        let [hi, lo] = w.to_be_bytes();
        if order.bytes_swapped() {
            out.extend_from_slice(&[lo, hi]);
        } else {
            out.extend_from_slice(&[hi, lo]);
        }
    }
    out
}

/// The registers to put on the wire for a value whose bytes are `bytes` (most significant
/// first). Inverse of [`value_bytes`].
pub fn wire_words(bytes: &[u8], order: ByteOrder) -> Vec<u16> {
    let mut words: Vec<u16> = bytes
        .chunks(2)
        .map(|c| {
            let hi = c.first().copied().unwrap_or(0);
            let lo = c.get(1).copied().unwrap_or(0);
            if order.bytes_swapped() {
                u16::from_be_bytes([lo, hi])
            } else {
                u16::from_be_bytes([hi, lo])
            }
        })
        .collect();
    if order.words_swapped() {
        words.reverse();
    }
    words
}

fn array<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
    bytes.get(..N)?.try_into().ok()
}

/// The raw (unscaled) number held by `words`, or `None` when there are too few words.
pub fn raw_number(words: &[u16], ty: DataType, order: ByteOrder, bit: u8) -> Option<f64> {
    let first = *words.first()?;
    Some(match ty {
        DataType::Bool => f64::from(u8::from(first != 0)),
        DataType::U16 => f64::from(first),
        DataType::I16 => f64::from(first as i16),
        DataType::Bit => f64::from((first >> (bit & 15)) & 1),
        DataType::U32 | DataType::I32 | DataType::F32 => {
            let b = array::<4>(&value_bytes(words.get(..2)?, order))?;
            match ty {
                DataType::U32 => f64::from(u32::from_be_bytes(b)),
                DataType::I32 => f64::from(i32::from_be_bytes(b)),
                _ => f64::from(f32::from_be_bytes(b)),
            }
        }
        DataType::U64 | DataType::I64 | DataType::F64 => {
            let b = array::<8>(&value_bytes(words.get(..4)?, order))?;
            match ty {
                DataType::U64 => u64::from_be_bytes(b) as f64,
                DataType::I64 => i64::from_be_bytes(b) as f64,
                _ => f64::from_be_bytes(b),
            }
        }
        DataType::String => return None,
    })
}

/// Decodes a register point from the registers starting at its address.
pub fn decode_registers(point: &PointConfig, words: &[u16]) -> Option<Value> {
    let ty = point.data_type();
    if ty == DataType::String {
        // `len` counts registers, two bytes each; the text ends at the first NUL.
        let registers = usize::from(point.len.unwrap_or(0));
        let bytes = value_bytes(words.get(..registers)?, point.order);
        let text: Vec<u8> = bytes.into_iter().take_while(|b| *b != 0).collect();
        return Some(Value::Text(
            String::from_utf8_lossy(&text).trim_end().to_string(),
        ));
    }
    let raw = raw_number(words, ty, point.order, point.bit.unwrap_or(0))?;
    Some(Value::Number(scale(point, raw)))
}

/// Decodes a coil or discrete-input point.
pub fn decode_bit(point: &PointConfig, bit: bool) -> Value {
    Value::Number(scale(point, f64::from(u8::from(bit))))
}

fn scale(point: &PointConfig, raw: f64) -> f64 {
    if point.scale == 1.0 && point.offset == 0.0 {
        raw
    } else {
        raw * point.scale + point.offset
    }
}

/// Encodes an engineering value of a register point into the registers to write.
/// `bit` points and strings are not written through this path.
pub fn encode_registers(point: &PointConfig, value: f64) -> Result<Vec<u16>, EncodeError> {
    if !value.is_finite() {
        return Err(EncodeError::NotFinite);
    }
    let ty = point.data_type();
    let raw = (value - point.offset) / point.scale;
    let int = |lo: f64, hi: f64| {
        let r = raw.round();
        if r < lo || r > hi {
            Err(EncodeError::OutOfRange { value, raw, ty })
        } else {
            Ok(r)
        }
    };
    let bytes: Vec<u8> = match ty {
        DataType::Bool => return Ok(vec![u16::from(raw != 0.0)]),
        DataType::U16 => return Ok(vec![int(0.0, 65_535.0)? as u16]),
        DataType::I16 => return Ok(vec![int(-32_768.0, 32_767.0)? as i16 as u16]),
        DataType::U32 => (int(0.0, 4_294_967_295.0)? as u32).to_be_bytes().to_vec(),
        DataType::I32 => (int(-2_147_483_648.0, 2_147_483_647.0)? as i32)
            .to_be_bytes()
            .to_vec(),
        DataType::U64 => (int(0.0, u64::MAX as f64)? as u64).to_be_bytes().to_vec(),
        DataType::I64 => (int(i64::MIN as f64, i64::MAX as f64)? as i64)
            .to_be_bytes()
            .to_vec(),
        DataType::F32 => (raw as f32).to_be_bytes().to_vec(),
        DataType::F64 => raw.to_be_bytes().to_vec(),
        DataType::Bit | DataType::String => return Err(EncodeError::NotWritable(ty)),
    };
    Ok(wire_words(&bytes, point.order))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::modbus::config::RegisterType;
    use proptest::prelude::*;

    fn pt(ty: DataType, order: ByteOrder) -> PointConfig {
        PointConfig::new("p", RegisterType::HoldingRegister, 0)
            .with_type(ty)
            .with_order(order)
    }

    fn wire(words: &[u16]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_be_bytes()).collect()
    }

    /// 123.456f32 is 0x42F6E979: bytes A=42 B=F6 C=E9 D=79.
    #[test]
    fn f32_orders_are_pinned_to_wire_bytes() {
        let cases = [
            (ByteOrder::Abcd, [0x42, 0xF6, 0xE9, 0x79]),
            (ByteOrder::Badc, [0xF6, 0x42, 0x79, 0xE9]),
            (ByteOrder::Cdab, [0xE9, 0x79, 0x42, 0xF6]),
            (ByteOrder::Dcba, [0x79, 0xE9, 0xF6, 0x42]),
        ];
        for (order, bytes) in cases {
            let p = pt(DataType::F32, order);
            let words = encode_registers(&p, 123.456).unwrap();
            assert_eq!(wire(&words), bytes, "{order:?}");
            let v = decode_registers(&p, &words).unwrap();
            assert_eq!(v, Value::Number(f64::from(123.456f32)), "{order:?}");
        }
    }

    /// 0x0102030405060708 as u64 in each order.
    #[test]
    fn u64_orders_are_pinned_to_wire_bytes() {
        let cases = [
            (ByteOrder::Abcd, [1, 2, 3, 4, 5, 6, 7, 8]),
            (ByteOrder::Badc, [2, 1, 4, 3, 6, 5, 8, 7]),
            (ByteOrder::Cdab, [7, 8, 5, 6, 3, 4, 1, 2]),
            (ByteOrder::Dcba, [8, 7, 6, 5, 4, 3, 2, 1]),
        ];
        for (order, bytes) in cases {
            let words: Vec<u16> = bytes
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            let raw = raw_number(&words, DataType::U64, order, 0).unwrap();
            assert_eq!(raw, 0x0102030405060708u64 as f64, "{order:?}");
        }
    }

    #[test]
    fn signed_bits_bool_and_scale() {
        assert_eq!(
            raw_number(&[0xFFFE], DataType::I16, ByteOrder::Abcd, 0),
            Some(-2.0)
        );
        assert_eq!(
            raw_number(&[0xFFFE], DataType::U16, ByteOrder::Abcd, 0),
            Some(65534.0)
        );
        assert_eq!(
            raw_number(&[0xFFFF, 0xFFFD], DataType::I32, ByteOrder::Abcd, 0),
            Some(-3.0)
        );
        assert_eq!(
            raw_number(&[0b1000], DataType::Bit, ByteOrder::Abcd, 3),
            Some(1.0)
        );
        assert_eq!(
            raw_number(&[0b1000], DataType::Bit, ByteOrder::Abcd, 2),
            Some(0.0)
        );
        assert_eq!(
            raw_number(&[7], DataType::Bool, ByteOrder::Abcd, 0),
            Some(1.0)
        );
        assert_eq!(raw_number(&[1], DataType::U32, ByteOrder::Abcd, 0), None);
        let mut p = pt(DataType::I16, ByteOrder::Abcd);
        p.scale = 0.1;
        p.offset = -5.0;
        assert_eq!(decode_registers(&p, &[100]), Some(Value::Number(5.0)));
        assert_eq!(encode_registers(&p, 5.0).unwrap(), vec![100]);
        assert!(encode_registers(&p, 1e9).is_err());
    }

    #[test]
    fn strings_decode_in_both_byte_orders() {
        let mut p = pt(DataType::String, ByteOrder::Abcd);
        p.len = Some(3);
        // "CityG" then padding: 'C''i' 't''y' 'G'0
        let words = [0x4369, 0x7479, 0x4700];
        assert_eq!(
            decode_registers(&p, &words),
            Some(Value::Text("CityG".into()))
        );
        p.order = ByteOrder::Badc;
        let swapped = [0x6943, 0x7974, 0x0047];
        assert_eq!(
            decode_registers(&p, &swapped),
            Some(Value::Text("CityG".into()))
        );
        assert_eq!(decode_registers(&p, &swapped[..2]), None);
    }

    #[test]
    fn string_len_counts_registers_not_bytes() {
        let mut p = pt(DataType::String, ByteOrder::Abcd);
        p.len = Some(5);
        // "CITYGATE-7" fills five registers exactly; a sixth (not part of the point) follows.
        let words = [0x4349, 0x5459, 0x4741, 0x5445, 0x2D37, 0x5858];
        assert_eq!(
            decode_registers(&p, &words),
            Some(Value::Text("CITYGATE-7".into()))
        );
        assert_eq!(decode_registers(&p, &words[..4]), None, "too few registers");
        p.len = Some(8);
        let padded = [0x4349, 0x5459, 0x4741, 0x5445, 0x2D37, 0x2020, 0, 0];
        assert_eq!(
            decode_registers(&p, &padded),
            Some(Value::Text("CITYGATE-7".into())),
            "space and NUL padding removed"
        );
        assert_eq!(p.width(), 8, "a string point reads `len` registers");
    }

    proptest! {
        #[test]
        fn value_bytes_inverts_wire_words(bytes in proptest::collection::vec(any::<u8>(), 0..8usize).prop_map(|mut v| { if v.len() % 2 == 1 { v.push(0) } v }),
                                          o in 0usize..4) {
            let order = [ByteOrder::Abcd, ByteOrder::Badc, ByteOrder::Cdab, ByteOrder::Dcba][o];
            prop_assert_eq!(value_bytes(&wire_words(&bytes, order), order), bytes);
        }

        #[test]
        fn integers_round_trip(v in any::<i32>(), o in 0usize..4) {
            let order = [ByteOrder::Abcd, ByteOrder::Badc, ByteOrder::Cdab, ByteOrder::Dcba][o];
            let p = pt(DataType::I32, order);
            let w = encode_registers(&p, f64::from(v)).unwrap();
            prop_assert_eq!(decode_registers(&p, &w), Some(Value::Number(f64::from(v))));
        }
    }
}
