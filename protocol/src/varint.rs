//! Zigzag varints as record batches use them (Kafka's `ByteUtils.writeVarlong`):
//! the one encoder and decoder the producer, the consumer and the cleaner share.

use bytes::BufMut;

/// A varlong takes at most this many bytes.
pub const VARLONG_BYTES_MAX: usize = 10;

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The buffer ends inside it.
    Truncated,
    /// More than [`VARLONG_BYTES_MAX`] bytes.
    TooLong,
}

/// Reads a zigzag varlong at `*position` of `buf`, advancing past it.
#[inline]
pub fn read_varlong(buf: &[u8], position: &mut usize) -> Result<i64, VarintError> {
    let mut raw: u64 = 0;
    for i in 0..VARLONG_BYTES_MAX {
        let byte = *buf.get(*position).ok_or(VarintError::Truncated)?;
        *position += 1;
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((raw >> 1) as i64 ^ (raw & 1).wrapping_neg() as i64);
        }
    }
    Err(VarintError::TooLong)
}

/// Appends `value` as a zigzag varlong.
#[inline]
pub fn put_varlong(buf: &mut impl BufMut, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        buf.put_u8((raw as u8 & 0x7f) | 0x80);
        raw >>= 7;
    }
    buf.put_u8(raw as u8);
}

/// Bytes `value` takes as a zigzag varlong.
#[inline]
pub fn varlong_len(value: i64) -> usize {
    let raw = ((value << 1) ^ (value >> 63)) as u64;
    // 1 byte per started 7 bits, at least 1.
    (64 - (raw | 1).leading_zeros() as usize).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_value_round_trips_in_varlong_len_bytes(value in any::<i64>()) {
            let mut buf = Vec::new();
            put_varlong(&mut buf, value);
            prop_assert_eq!(buf.len(), varlong_len(value));
            let mut position = 0;
            prop_assert_eq!(read_varlong(&buf, &mut position), Ok(value));
            prop_assert_eq!(position, buf.len());
        }
    }

    #[test]
    fn cut_off_and_overlong_varints_are_errors() {
        let mut position = 0;
        assert_eq!(
            read_varlong(&[0x80, 0x80], &mut position),
            Err(VarintError::Truncated)
        );
        let mut position = 0;
        assert_eq!(
            read_varlong(&[0xff; 11], &mut position),
            Err(VarintError::TooLong)
        );
    }
}
