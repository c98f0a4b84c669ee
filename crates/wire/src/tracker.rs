//! Follows a server response frame by frame, so a proxy can forward the bytes untouched yet know when
//! the response ends, how many rows it carried, and the final status flags (transaction open, session
//! state changed) that decide whether the backend connection can go back to the pool.

use crate::caps::{self, status};
use crate::codec::{Frame, MAX_FRAME};
use crate::packets::{eof_status, OkPacket};
use crate::{Reader, Result, WireError};

/// What kind of response a command gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// COM_QUERY, COM_STMT_EXECUTE: OK, ERR, or result sets (several with MORE_RESULTS_EXISTS).
    ResultSets,
    /// COM_STMT_PREPARE: OK with parameter and column definitions, or ERR.
    Prepare,
    /// COM_STMT_FETCH: rows, then a terminator.
    Fetch,
    /// COM_FIELD_LIST: column definitions, then EOF.
    FieldList,
    /// One OK, ERR or EOF packet (COM_PING, COM_INIT_DB, COM_SET_OPTION, COM_RESET_CONNECTION, …).
    Simple,
    /// COM_STATISTICS: one text packet.
    Statistics,
}

/// The class of one frame of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Column,
    Row,
    /// The rest of a packet larger than one frame.
    Continuation,
    /// An OK or EOF ending one result (more may follow).
    Terminal {
        status: u16,
    },
    Error,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Columns(u64),
    ColumnsEof,
    Rows,
    /// Packets left in a prepare response (definitions and their EOFs).
    Prepare(u64),
    Done,
}

#[derive(Debug, Clone)]
pub struct Tracker {
    expect: Expect,
    capabilities: u32,
    state: State,
    continuing: bool,
    /// Rows seen in this response (all result sets).
    pub rows: u64,
    /// Status flags of the last OK/EOF seen.
    pub status: u16,
    /// True once an OK/EOF was seen (its flags may all be clear: autocommit off, no transaction).
    pub status_seen: bool,
    pub affected_rows: u64,
    pub last_insert_id: u64,
    /// Rows the last OK packet reported changed (not summed: what `ROW_COUNT()` says next).
    pub last_affected: u64,
    /// The response's last result was a result set (`ROW_COUNT()` then says -1).
    pub last_result_set: bool,
    /// True when the response ended with an ERR packet.
    pub error: bool,
    /// Warnings the server holds for the statement, summed over its results (OK/EOF counts): with
    /// an error, what `SHOW WARNINGS` would show the connection's next user.
    pub warnings: u32,
}

impl Tracker {
    pub fn new(expect: Expect, capabilities: u32) -> Tracker {
        let state = if expect == Expect::Fetch {
            State::Rows
        } else {
            State::Start
        };
        Tracker {
            expect,
            capabilities,
            state,
            continuing: false,
            rows: 0,
            status: 0,
            status_seen: false,
            affected_rows: 0,
            last_insert_id: 0,
            last_affected: 0,
            last_result_set: false,
            error: false,
            warnings: 0,
        }
    }

    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    fn deprecate_eof(&self) -> bool {
        self.capabilities & caps::DEPRECATE_EOF != 0
    }

    fn finish_ok(&mut self, payload: &[u8]) -> Result<u16> {
        let ok = OkPacket::parse(payload, self.capabilities)?;
        self.warnings = self.warnings.saturating_add(u32::from(ok.warnings));
        self.affected_rows = self.affected_rows.saturating_add(ok.affected_rows);
        if ok.last_insert_id != 0 {
            self.last_insert_id = ok.last_insert_id;
        }
        Ok(ok.status)
    }

    fn terminator_status(&mut self, payload: &[u8]) -> Result<u16> {
        if self.deprecate_eof() && payload.len() > 5 {
            self.finish_ok(payload)
        } else {
            if let Some(w) = payload.get(1..3) {
                self.warnings = self
                    .warnings
                    .saturating_add(u32::from(u16::from_le_bytes([w[0], w[1]])));
            }
            eof_status(payload).ok_or(WireError::Malformed("short EOF packet"))
        }
    }

    /// After a terminator: another result follows, or the response is complete.
    fn after_result(&mut self, st: u16) -> Event {
        self.status = st;
        self.status_seen = true;
        self.state = if st & status::MORE_RESULTS_EXISTS != 0 && self.expect == Expect::ResultSets {
            State::Start
        } else {
            State::Done
        };
        Event::Terminal { status: st }
    }

    /// Classifies the next frame of the response.
    pub fn feed(&mut self, frame: &Frame) -> Result<Event> {
        if self.continuing {
            self.continuing = frame.continues();
            return Ok(Event::Continuation);
        }
        self.continuing = frame.continues();
        let p = frame.payload();
        let first = *p
            .first()
            .ok_or(WireError::Malformed("empty packet in a response"))?;
        let is_terminator = first == 0xFE && p.len() < MAX_FRAME;
        match self.state {
            State::Done => Err(WireError::Malformed("data after the end of a response")),
            State::Start => match (self.expect, first) {
                (_, 0xFF) => {
                    self.error = true;
                    self.state = State::Done;
                    Ok(Event::Error)
                }
                (Expect::Statistics, _) => {
                    self.state = State::Done;
                    Ok(Event::Other)
                }
                (Expect::Simple, 0x00) | (Expect::ResultSets, 0x00) => {
                    let st = self.finish_ok(p)?;
                    self.last_result_set = false;
                    self.last_affected = OkPacket::parse(p, self.capabilities)?.affected_rows;
                    Ok(self.after_result(st))
                }
                (Expect::Simple, 0xFE) => {
                    let st = self.terminator_status(p)?;
                    Ok(self.after_result(st))
                }
                (Expect::Simple, _) => {
                    Err(WireError::Malformed("unexpected reply to a simple command"))
                }
                (Expect::FieldList, _) if is_terminator => {
                    let st = self.terminator_status(p)?;
                    Ok(self.after_result(st))
                }
                (Expect::FieldList, _) => Ok(Event::Column),
                (Expect::ResultSets, 0xFB) => {
                    Err(WireError::Malformed("LOCAL INFILE is not supported"))
                }
                (Expect::ResultSets, _) => {
                    let n = Reader::new(p).lenenc_int()?;
                    if n == 0 {
                        return Err(WireError::Malformed("result set with no columns"));
                    }
                    self.state = State::Columns(n);
                    self.last_result_set = true;
                    Ok(Event::Other)
                }
                (Expect::Prepare, 0x00) => {
                    let mut r = Reader::new(p);
                    r.u8()?;
                    r.u32()?;
                    let columns = r.u16()? as u64;
                    let params = r.u16()? as u64;
                    let eofs = !self.deprecate_eof();
                    let left = params
                        + columns
                        + u64::from(eofs && params > 0)
                        + u64::from(eofs && columns > 0);
                    self.state = if left == 0 {
                        State::Done
                    } else {
                        State::Prepare(left)
                    };
                    Ok(Event::Other)
                }
                (Expect::Prepare, _) => Err(WireError::Malformed("unexpected reply to a prepare")),
                (Expect::Fetch, _) => unreachable_state(),
            },
            State::Columns(n) => {
                self.state = if n > 1 {
                    State::Columns(n - 1)
                } else if self.deprecate_eof() {
                    State::Rows
                } else {
                    State::ColumnsEof
                };
                Ok(Event::Column)
            }
            State::ColumnsEof => {
                if !is_terminator {
                    return Err(WireError::Malformed(
                        "expected EOF after column definitions",
                    ));
                }
                let st = eof_status(p).unwrap_or(0);
                if st & status::CURSOR_EXISTS != 0 {
                    // A cursor was opened: rows come later, through COM_STMT_FETCH.
                    return Ok(self.after_result(st));
                }
                self.state = State::Rows;
                Ok(Event::Other)
            }
            State::Rows => {
                if first == 0xFF {
                    self.error = true;
                    self.state = State::Done;
                    return Ok(Event::Error);
                }
                if is_terminator {
                    let st = self.terminator_status(p)?;
                    return Ok(self.after_result(st));
                }
                self.rows += 1;
                Ok(Event::Row)
            }
            State::Prepare(left) => {
                self.state = if left > 1 {
                    State::Prepare(left - 1)
                } else {
                    State::Done
                };
                Ok(Event::Column)
            }
        }
    }
}

fn unreachable_state() -> Result<Event> {
    Err(WireError::Malformed("invalid tracker state"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{put_packet, take_frame};
    use crate::packets::{column_definition, eof, text_row, ErrPacket, OkPacket};
    use bytes::BytesMut;
    use proptest::prelude::*;

    fn run(expect: Expect, capabilities: u32, packets: &[Vec<u8>]) -> (Tracker, Vec<Event>) {
        let mut buf = BytesMut::new();
        let mut seq = 1;
        for p in packets {
            put_packet(&mut buf, &mut seq, p);
        }
        let mut t = Tracker::new(expect, capabilities);
        let mut events = Vec::new();
        while let Some(f) = take_frame(&mut buf) {
            assert!(!t.done(), "data after the end");
            events.push(t.feed(&f).unwrap());
        }
        (t, events)
    }

    fn ok(status: u16, affected: u64, last_id: u64) -> Vec<u8> {
        OkPacket {
            affected_rows: affected,
            last_insert_id: last_id,
            status,
            ..Default::default()
        }
        .encode(caps::SESSION_TRACK)
    }
    fn ok_fe(status: u16) -> Vec<u8> {
        OkPacket {
            header: 0xFE,
            status,
            ..Default::default()
        }
        .encode(caps::SESSION_TRACK)
    }
    fn col(n: &str) -> Vec<u8> {
        column_definition(n, 8, 63, 20, 0)
    }
    fn row(v: &str) -> Vec<u8> {
        text_row(&[Some(v.as_bytes())])
    }

    #[test]
    fn ok_only() {
        let (t, _) = run(
            Expect::ResultSets,
            caps::SESSION_TRACK,
            &[ok(status::IN_TRANS, 2, 9)],
        );
        assert!(t.done());
        assert_eq!(
            (t.affected_rows, t.last_insert_id, t.status),
            (2, 9, status::IN_TRANS)
        );
    }

    #[test]
    fn warnings_are_counted_from_oks_and_eofs() {
        let mut warned = OkPacket {
            warnings: 2,
            status: status::MORE_RESULTS_EXISTS,
            ..Default::default()
        }
        .encode(caps::SESSION_TRACK);
        let (t, _) = run(
            Expect::ResultSets,
            caps::SESSION_TRACK,
            &[
                warned.clone(),
                vec![1],
                col("a"),
                eof(0, 0),
                row("1"),
                eof(3, 0),
            ],
        );
        assert_eq!(t.warnings, 5);
        warned = ok(0, 1, 0);
        let (t, _) = run(Expect::ResultSets, caps::SESSION_TRACK, &[warned]);
        assert_eq!(t.warnings, 0);
    }

    #[test]
    fn result_set_classic_and_deprecated_eof() {
        let classic = [
            vec![1],
            col("a"),
            eof(0, 0),
            row("1"),
            row("2"),
            eof(0, status::AUTOCOMMIT),
        ];
        let (t, ev) = run(Expect::ResultSets, caps::SESSION_TRACK, &classic);
        assert!(t.done());
        assert_eq!(t.rows, 2);
        assert_eq!(ev.iter().filter(|e| **e == Event::Row).count(), 2);
        let dep = [
            vec![2],
            col("a"),
            col("b"),
            row("1"),
            ok_fe(status::AUTOCOMMIT),
        ];
        let c = caps::SESSION_TRACK | caps::DEPRECATE_EOF;
        let (t, _) = run(Expect::ResultSets, c, &dep);
        assert!(t.done());
        assert_eq!((t.rows, t.status), (1, status::AUTOCOMMIT));
    }

    #[test]
    fn multiple_results_and_errors() {
        let c = caps::SESSION_TRACK | caps::DEPRECATE_EOF;
        let more = status::MORE_RESULTS_EXISTS;
        let packets = [
            vec![1],
            col("a"),
            row("1"),
            ok_fe(more),
            ok(more, 1, 0),
            ErrPacket::new(1146, "42S02", "no").encode(),
        ];
        let (t, ev) = run(Expect::ResultSets, c, &packets);
        assert!(t.done() && t.error);
        assert_eq!(ev.last(), Some(&Event::Error));
        // an error in the middle of rows ends the response
        let (t, _) = run(
            Expect::ResultSets,
            c,
            &[
                vec![1],
                col("a"),
                row("1"),
                ErrPacket::new(1317, "70100", "interrupted").encode(),
            ],
        );
        assert!(t.done() && t.error && t.rows == 1);
    }

    #[test]
    fn prepare_and_fetch() {
        // 2 params, 1 column, classic EOFs: OK, p, p, EOF, c, EOF
        let mut okp = vec![0, 1, 0, 0, 0];
        okp.extend_from_slice(&1u16.to_le_bytes());
        okp.extend_from_slice(&2u16.to_le_bytes());
        okp.extend_from_slice(&[0, 0, 0]);
        let (t, _) = run(
            Expect::Prepare,
            caps::SESSION_TRACK,
            &[
                okp.clone(),
                col("?"),
                col("?"),
                eof(0, 2),
                col("a"),
                eof(0, 2),
            ],
        );
        assert!(t.done());
        let (t, _) = run(
            Expect::Prepare,
            caps::DEPRECATE_EOF,
            &[okp, col("?"), col("?"), col("a")],
        );
        assert!(t.done());
        let (t, _) = run(
            Expect::Fetch,
            0,
            &[vec![0, 0, 1], vec![0, 0, 2], eof(0, status::LAST_ROW_SENT)],
        );
        assert!(t.done());
        assert_eq!(t.rows, 2);
    }

    #[test]
    fn simple_and_field_list() {
        let (t, _) = run(Expect::Simple, 0, &[eof(0, 2)]);
        assert!(t.done());
        let (t, _) = run(Expect::FieldList, 0, &[col("a"), col("b"), eof(0, 2)]);
        assert!(t.done());
        let (t, _) = run(Expect::Statistics, 0, &[b"Uptime: 5".to_vec()]);
        assert!(t.done());
    }

    #[test]
    fn huge_rows_span_frames() {
        let big = text_row(&[Some(&vec![b'x'; MAX_FRAME + 100])]);
        let c = caps::DEPRECATE_EOF | caps::SESSION_TRACK;
        let (t, ev) = run(Expect::ResultSets, c, &[vec![1], col("a"), big, ok_fe(2)]);
        assert!(t.done());
        assert_eq!(t.rows, 1);
        assert!(ev.contains(&Event::Continuation));
    }

    proptest! {
        #[test]
        fn arbitrary_frames_never_panic(frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 0..10), c in any::<u32>()) {
            for expect in [Expect::ResultSets, Expect::Prepare, Expect::Fetch, Expect::FieldList, Expect::Simple, Expect::Statistics] {
                let mut t = Tracker::new(expect, c);
                for f in &frames {
                    let mut buf = BytesMut::new();
                    let mut seq = 0;
                    put_packet(&mut buf, &mut seq, f);
                    let frame = take_frame(&mut buf).unwrap();
                    if t.feed(&frame).is_err() || t.done() { break; }
                }
            }
        }
    }
}
