//! Framing: `u24 length | u8 sequence | payload`. A payload of 0xFFFFFF bytes continues in the next
//! frame; a logical packet ends with a shorter frame (possibly empty).

use crate::{Result, WireError};
use bytes::{Buf, Bytes, BytesMut};

pub const MAX_FRAME: usize = 0xFF_FFFF;

/// One frame as it came off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub seq: u8,
    /// The whole frame, header included: what a proxy forwards.
    pub raw: Bytes,
}

impl Frame {
    pub fn payload(&self) -> &[u8] {
        &self.raw[4..]
    }
    /// True when another frame of the same packet follows.
    pub fn continues(&self) -> bool {
        self.raw.len() - 4 == MAX_FRAME
    }
}

/// Takes one complete frame off the front of `buf`, if there is one.
pub fn take_frame(buf: &mut BytesMut) -> Option<Frame> {
    if buf.len() < 4 {
        return None;
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], 0]) as usize;
    if buf.len() < 4 + len {
        return None;
    }
    let seq = buf[3];
    let raw = buf.split_to(4 + len).freeze();
    Some(Frame { seq, raw })
}

/// Appends `payload` as one logical packet starting at sequence `*seq`, advancing it.
pub fn put_packet(out: &mut BytesMut, seq: &mut u8, payload: &[u8]) {
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_FRAME);
        out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        out.extend_from_slice(&[*seq]);
        out.extend_from_slice(&rest[..n]);
        *seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_FRAME {
            break;
        }
    }
}

/// Joins frames into logical packets, refusing any larger than `limit` bytes.
pub struct Assembler {
    limit: usize,
    partial: Option<(u8, Vec<u8>)>,
    /// Bytes of an oversized packet passed over so far: its frames are read and dropped until its
    /// last one, so the refusal reaches the client in sequence, after everything it sent.
    discarding: Option<usize>,
}

impl Assembler {
    pub fn new(limit: usize) -> Self {
        Assembler {
            limit,
            partial: None,
            discarding: None,
        }
    }

    /// Feeds one frame; returns the packet (first frame's sequence, last frame's sequence, payload)
    /// once its last frame has arrived. A packet over the limit is `TooLarge` once its last frame
    /// has arrived (none of it is kept).
    pub fn push(&mut self, frame: &Frame) -> Result<Option<(u8, u8, Bytes)>> {
        let payload = frame.payload();
        if let Some(seen) = self.discarding.take() {
            let seen = seen.saturating_add(payload.len());
            if frame.continues() {
                self.discarding = Some(seen);
                return Ok(None);
            }
            return Err(WireError::TooLarge(seen, self.limit));
        }
        let (first, mut data) = match self.partial.take() {
            Some((first, data)) => (first, data),
            None if !frame.continues() => {
                return Ok(Some((frame.seq, frame.seq, frame.raw.slice(4..))))
            }
            None => (frame.seq, Vec::new()),
        };
        if data.len() + payload.len() > self.limit {
            let seen = data.len() + payload.len();
            if frame.continues() {
                self.discarding = Some(seen);
                return Ok(None);
            }
            return Err(WireError::TooLarge(seen, self.limit));
        }
        data.extend_from_slice(payload);
        if frame.continues() {
            self.partial = Some((first, data));
            Ok(None)
        } else {
            Ok(Some((first, frame.seq, Bytes::from(data))))
        }
    }
}

/// Reads a little-endian u24 length from a frame header (helper for tests and tools).
pub fn frame_len(header: &[u8]) -> usize {
    let mut h = header;
    if h.len() < 3 {
        return 0;
    }
    h.get_uint_le(3) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_and_big_packets() {
        let mut out = BytesMut::new();
        let mut seq = 0;
        put_packet(&mut out, &mut seq, b"\x03SELECT 1");
        let big = vec![7u8; MAX_FRAME + 10];
        put_packet(&mut out, &mut seq, &big);
        assert_eq!(seq, 3);
        let mut asm = Assembler::new(64 << 20);
        let f = take_frame(&mut out).unwrap();
        assert_eq!(asm.push(&f).unwrap().unwrap().2.as_ref(), b"\x03SELECT 1");
        let f1 = take_frame(&mut out).unwrap();
        assert!(f1.continues());
        assert!(asm.push(&f1).unwrap().is_none());
        let f2 = take_frame(&mut out).unwrap();
        let (first, last, p) = asm.push(&f2).unwrap().unwrap();
        assert_eq!((first, last, p.len()), (1, 2, MAX_FRAME + 10));
        assert!(out.is_empty());
        // exactly MAX_FRAME bytes needs an empty trailing frame
        let mut out = BytesMut::new();
        let mut seq = 0;
        put_packet(&mut out, &mut seq, &vec![1u8; MAX_FRAME]);
        assert_eq!(seq, 2);
        assert_eq!(out.len(), 4 + MAX_FRAME + 4);
    }

    #[test]
    fn oversized_is_refused() {
        let mut out = BytesMut::new();
        let mut seq = 0;
        put_packet(&mut out, &mut seq, &vec![0u8; MAX_FRAME + 1]);
        let mut asm = Assembler::new(1000);
        // Its frames are passed over up to the last, then it is refused; the next packet is read.
        let f = take_frame(&mut out).unwrap();
        assert!(matches!(asm.push(&f), Ok(None)));
        let f = take_frame(&mut out).unwrap();
        assert!(matches!(
            asm.push(&f),
            Err(WireError::TooLarge(n, 1000)) if n == MAX_FRAME + 1
        ));
        put_packet(&mut out, &mut seq, b"\x0e");
        let f = take_frame(&mut out).unwrap();
        assert_eq!(asm.push(&f).unwrap().unwrap().2.as_ref(), b"\x0e");
    }

    #[test]
    fn incomplete_frames_wait() {
        let mut b = BytesMut::from(&[5u8, 0, 0, 0, 1, 2][..]);
        assert!(take_frame(&mut b).is_none());
        assert_eq!(b.len(), 6);
        assert_eq!(frame_len(&[5, 0, 0]), 5);
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut b = BytesMut::from(&data[..]);
            let mut asm = Assembler::new(1 << 20);
            while let Some(f) = take_frame(&mut b) {
                let _ = asm.push(&f);
            }
        }
    }
}
