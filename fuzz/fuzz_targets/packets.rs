//! Framing, reassembly and response tracking over arbitrary bytes: never a panic, never a hang.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use strata_wire::codec::{take_frame, Assembler};
use strata_wire::packets::{ErrPacket, OkPacket};
use strata_wire::tracker::{Expect, Tracker};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let caps = u32::from(selector).wrapping_mul(0x0101_0101);
    let expect = [Expect::ResultSets, Expect::Prepare, Expect::Fetch, Expect::FieldList, Expect::Simple, Expect::Statistics]
        [usize::from(selector) % 6];
    let mut buf = BytesMut::from(rest);
    let mut asm = Assembler::new(1 << 20);
    let mut tracker = Tracker::new(expect, caps);
    while let Some(frame) = take_frame(&mut buf) {
        let _ = asm.push(&frame);
        let _ = OkPacket::parse(frame.payload(), caps);
        let _ = ErrPacket::parse(frame.payload());
        if !tracker.done() && tracker.feed(&frame).is_err() {
            break;
        }
    }
});
