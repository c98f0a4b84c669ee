//! The MySQL client/server protocol, as much as a proxy needs, with no I/O: framing, the handshake in
//! both directions, OK/ERR/EOF packets, and a tracker that follows a response packet by packet so the
//! gateway knows where it ends, how many rows it carried and the final status flags, while forwarding
//! the bytes untouched.
//!
//! Written here rather than taken from mysql_common: the gateway needs byte-exact control of both
//! sides and zero-copy forwarding, every parser must be total (fuzzed: no panic on any input), and
//! mysql_common's packet API moves between minors (0.37 → 0.38 moved the scramble module).

pub mod caps;
pub mod codec;
pub mod handshake;
pub mod listing;
pub mod packets;
pub mod tracker;

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    #[error("packet too large: {0} bytes (limit {1})")]
    TooLarge(usize, usize),
    #[error("packets out of order: expected sequence {expected}, got {got}")]
    Sequence { expected: u8, got: u8 },
}

pub type Result<T> = std::result::Result<T, WireError>;

/// A reader over a packet payload; every read checks bounds.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub fn remaining(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }
    pub fn u8(&mut self) -> Result<u8> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(WireError::Malformed("truncated (u8)"))?;
        self.pos += 1;
        Ok(b)
    }
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(WireError::Malformed("length overflow"))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(WireError::Malformed("truncated"))?;
        self.pos = end;
        Ok(s)
    }
    pub fn u16(&mut self) -> Result<u16> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn u24(&mut self) -> Result<u32> {
        let b = self.bytes(3)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], 0]))
    }
    pub fn u32(&mut self) -> Result<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self) -> Result<u64> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    /// A length-encoded integer (`None` for the NULL marker 0xFB).
    pub fn lenenc(&mut self) -> Result<Option<u64>> {
        match self.u8()? {
            0xFB => Ok(None),
            0xFC => Ok(Some(self.u16()? as u64)),
            0xFD => Ok(Some(self.u24()? as u64)),
            0xFE => Ok(Some(self.u64()?)),
            0xFF => Err(WireError::Malformed("0xFF is not a length-encoded integer")),
            b => Ok(Some(b as u64)),
        }
    }
    pub fn lenenc_int(&mut self) -> Result<u64> {
        self.lenenc()?
            .ok_or(WireError::Malformed("unexpected NULL"))
    }
    pub fn lenenc_bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.lenenc_int()?;
        let n = usize::try_from(n).map_err(|_| WireError::Malformed("length overflow"))?;
        self.bytes(n)
    }
    /// Bytes up to (not including) a NUL, which is consumed.
    pub fn nul_terminated(&mut self) -> Result<&'a [u8]> {
        let rest = self.remaining();
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(WireError::Malformed("missing NUL terminator"))?;
        self.pos += end + 1;
        Ok(&rest[..end])
    }
    pub fn rest(&mut self) -> &'a [u8] {
        let r = self.remaining();
        self.pos = self.buf.len();
        r
    }
}

pub fn put_lenenc(out: &mut Vec<u8>, n: u64) {
    match n {
        0..=250 => out.push(n as u8),
        251..=0xFFFF => {
            out.push(0xFC);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        0x1_0000..=0xFF_FFFF => {
            out.push(0xFD);
            out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xFE);
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
}

pub fn put_lenenc_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_lenenc(out, b.len() as u64);
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn lenenc_round_trips(n in any::<u64>()) {
            let mut out = Vec::new();
            put_lenenc(&mut out, n);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.lenenc_int().unwrap(), n);
            prop_assert!(r.is_empty());
        }

        #[test]
        fn reader_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&buf);
            let _ = r.lenenc_bytes();
            let _ = r.nul_terminated();
            let _ = r.u64();
        }
    }
}
