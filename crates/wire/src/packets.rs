//! OK, ERR and EOF packets, and the pieces of a text result set the gateway answers by itself.

use crate::caps;
use crate::{put_lenenc, put_lenenc_bytes, Reader, Result, WireError};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OkPacket {
    /// 0x00, or 0xFE when it ends a result set under DEPRECATE_EOF.
    pub header: u8,
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
    pub info: Vec<u8>,
    /// Session state changes (only with SESSION_TRACK and SESSION_STATE_CHANGED).
    pub session_state: Option<Vec<u8>>,
}

impl OkPacket {
    pub fn parse(payload: &[u8], capabilities: u32) -> Result<OkPacket> {
        let mut r = Reader::new(payload);
        let header = r.u8()?;
        if header != 0x00 && header != 0xFE {
            return Err(WireError::Malformed("not an OK packet"));
        }
        let affected_rows = r.lenenc_int()?;
        let last_insert_id = r.lenenc_int()?;
        let status = r.u16()?;
        let warnings = r.u16()?;
        let mut ok = OkPacket {
            header,
            affected_rows,
            last_insert_id,
            status,
            warnings,
            ..Default::default()
        };
        if capabilities & caps::SESSION_TRACK != 0 {
            if !r.is_empty() {
                ok.info = r.lenenc_bytes()?.to_vec();
            }
            if status & caps::status::SESSION_STATE_CHANGED != 0 && !r.is_empty() {
                ok.session_state = Some(r.lenenc_bytes()?.to_vec());
            }
        } else if !r.is_empty() {
            // Without session tracking the server still sends the message length-encoded
            // (`net_send_ok`); a bare string is taken as it is.
            let rest = r.rest().to_vec();
            let mut lenenc = Reader::new(&rest);
            ok.info = match lenenc.lenenc_bytes() {
                Ok(info) if lenenc.is_empty() => info.to_vec(),
                _ => rest,
            };
        }
        Ok(ok)
    }

    pub fn encode(&self, capabilities: u32) -> Vec<u8> {
        let mut out = vec![self.header];
        put_lenenc(&mut out, self.affected_rows);
        put_lenenc(&mut out, self.last_insert_id);
        out.extend_from_slice(&self.status.to_le_bytes());
        out.extend_from_slice(&self.warnings.to_le_bytes());
        if capabilities & caps::SESSION_TRACK != 0 {
            if !self.info.is_empty() || self.session_state.is_some() {
                put_lenenc_bytes(&mut out, &self.info);
            }
            if let Some(s) = &self.session_state {
                if self.status & caps::status::SESSION_STATE_CHANGED != 0 {
                    put_lenenc_bytes(&mut out, s);
                }
            }
        } else if !self.info.is_empty() {
            // As the server does (`net_send_ok`): clients such as mysql_async parse it so, and a
            // bare string made them drop the whole OK packet (and its affected rows).
            put_lenenc_bytes(&mut out, &self.info);
        }
        out
    }

    pub fn simple(status: u16) -> OkPacket {
        OkPacket {
            status,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrPacket {
    pub code: u16,
    pub state: [u8; 5],
    pub message: String,
}

impl ErrPacket {
    pub fn new(code: u16, state: &str, message: impl Into<String>) -> ErrPacket {
        let mut s = [b'H', b'Y', b'0', b'0', b'0'];
        for (d, c) in s.iter_mut().zip(state.bytes()) {
            *d = c;
        }
        ErrPacket {
            code,
            state: s,
            message: message.into(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.message.len());
        out.push(0xFF);
        out.extend_from_slice(&self.code.to_le_bytes());
        out.push(b'#');
        out.extend_from_slice(&self.state);
        out.extend_from_slice(self.message.as_bytes());
        out
    }

    pub fn parse(payload: &[u8]) -> Result<ErrPacket> {
        let mut r = Reader::new(payload);
        if r.u8()? != 0xFF {
            return Err(WireError::Malformed("not an ERR packet"));
        }
        let code = r.u16()?;
        let mut state = *b"HY000";
        if r.remaining().first() == Some(&b'#') {
            r.u8()?;
            state.copy_from_slice(r.bytes(5)?);
        }
        Ok(ErrPacket {
            code,
            state,
            message: String::from_utf8_lossy(r.rest()).into_owned(),
        })
    }

    pub fn sqlstate(&self) -> String {
        String::from_utf8_lossy(&self.state).into_owned()
    }
}

/// The classic EOF packet (before DEPRECATE_EOF).
pub fn eof(warnings: u16, status: u16) -> Vec<u8> {
    let mut out = vec![0xFE];
    out.extend_from_slice(&warnings.to_le_bytes());
    out.extend_from_slice(&status.to_le_bytes());
    out
}

/// True for a classic EOF packet, or an OK packet with the 0xFE header ending a result set.
pub fn is_eof(payload: &[u8]) -> bool {
    payload.first() == Some(&0xFE) && payload.len() < 0xFF_FFFF && payload.len() < 9 + 0xFFFF
}

/// Status flags of a classic EOF packet.
pub fn eof_status(payload: &[u8]) -> Option<u16> {
    if payload.len() >= 5 && payload[0] == 0xFE {
        Some(u16::from_le_bytes([payload[3], payload[4]]))
    } else {
        None
    }
}

/// Column types the gateway uses in results it makes itself, or types a column as.
pub mod column_type {
    pub const LONGLONG: u8 = 0x08;
    pub const JSON: u8 = 0xF5;
    pub const VAR_STRING: u8 = 0xFD;
}

/// A column definition from a backend that sent MariaDB's extended metadata
/// (`MARIADB_CLIENT_EXTENDED_METADATA`), as a client that did not ask for it reads it: the metadata
/// removed, and a column MariaDB marks `format=json` (a JSON column is a LONGTEXT with a
/// `json_valid` check there, a JSON function's result a string) typed JSON, as MySQL 8 and
/// PlanetScale type it, so drivers such as mysql2 hand the application parsed values.
pub fn column_for_client(definition: &[u8]) -> Result<Vec<u8>> {
    let mut r = Reader::new(definition);
    // catalog, schema, table, org_table, name, org_name
    for _ in 0..6 {
        r.lenenc_bytes()?;
    }
    let head = definition.len() - r.remaining().len();
    let extended = r.lenenc_bytes()?;
    let fixed = r.rest();
    if fixed.first() != Some(&0x0C) || fixed.len() < 13 {
        return Err(WireError::Malformed("column definition"));
    }
    let mut out = Vec::with_capacity(head + fixed.len());
    out.extend_from_slice(&definition[..head]);
    out.extend_from_slice(fixed);
    if extended_format(extended)? == Some(&b"json"[..]) {
        // 0x0C, charset (2), length (4), then the type.
        out[head + 7] = column_type::JSON;
    }
    Ok(out)
}

/// The `format` entry (type 1) of MariaDB's extended metadata: pairs of a type byte and a
/// length-encoded value (type 0 is the data type's name, e.g. `inet6`).
fn extended_format(extended: &[u8]) -> Result<Option<&[u8]>> {
    let mut r = Reader::new(extended);
    while !r.is_empty() {
        let kind = r.u8()?;
        let value = r.lenenc_bytes()?;
        if kind == 1 {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

/// A column definition (protocol 41) for a result the gateway makes itself.
pub fn column_definition(
    name: &str,
    column_type: u8,
    charset: u16,
    length: u32,
    flags: u16,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + name.len());
    for part in [&b"def"[..], b"", b"", b"", name.as_bytes(), b""] {
        put_lenenc_bytes(&mut out, part);
    }
    out.push(0x0C);
    out.extend_from_slice(&charset.to_le_bytes());
    out.extend_from_slice(&length.to_le_bytes());
    out.push(column_type);
    out.extend_from_slice(&flags.to_le_bytes());
    out.push(0);
    out.extend_from_slice(&[0, 0]);
    out
}

/// A column definition (protocol 41, as [`column_for_client`] leaves it), read: what a result's
/// consumer needs to describe the column (the HTTP SQL endpoint's fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnDef<'a> {
    pub schema: &'a [u8],
    pub table: &'a [u8],
    pub org_table: &'a [u8],
    pub name: &'a [u8],
    pub org_name: &'a [u8],
    pub charset: u16,
    pub length: u32,
    pub column_type: u8,
    pub flags: u16,
    pub decimals: u8,
}

impl<'a> ColumnDef<'a> {
    pub fn parse(definition: &'a [u8]) -> Result<ColumnDef<'a>> {
        let mut r = Reader::new(definition);
        let _catalog = r.lenenc_bytes()?;
        let schema = r.lenenc_bytes()?;
        let table = r.lenenc_bytes()?;
        let org_table = r.lenenc_bytes()?;
        let name = r.lenenc_bytes()?;
        let org_name = r.lenenc_bytes()?;
        if r.lenenc_int()? != 0x0C {
            return Err(WireError::Malformed("column definition"));
        }
        Ok(ColumnDef {
            schema,
            table,
            org_table,
            name,
            org_name,
            charset: r.u16()?,
            length: r.u32()?,
            column_type: r.u8()?,
            flags: r.u16()?,
            decimals: r.u8()?,
        })
    }
}

/// The values of a text-protocol row (`None` for NULL).
pub fn text_row_values(row: &[u8]) -> Result<Vec<Option<&[u8]>>> {
    let mut r = Reader::new(row);
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(match r.lenenc()? {
            None => None,
            Some(n) => {
                let n = usize::try_from(n).map_err(|_| WireError::Malformed("length overflow"))?;
                Some(r.bytes(n)?)
            }
        });
    }
    Ok(out)
}

/// A text-protocol row.
pub fn text_row(values: &[Option<&[u8]>]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        match v {
            Some(b) => put_lenenc_bytes(&mut out, b),
            None => out.push(0xFB),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A column definition with MariaDB's extended metadata after `org_name`.
    fn extended_definition(name: &str, extended: &[u8], ty: u8) -> Vec<u8> {
        let plain = column_definition(name, ty, 45, 0xFFFF_FFFF, 0x10);
        let mut r = Reader::new(&plain);
        for _ in 0..6 {
            r.lenenc_bytes().unwrap();
        }
        let head = plain.len() - r.remaining().len();
        let mut out = plain[..head].to_vec();
        put_lenenc_bytes(&mut out, extended);
        out.extend_from_slice(&plain[head..]);
        out
    }

    #[test]
    fn extended_metadata_is_removed_and_json_typed() {
        const BLOB: u8 = 0xFC;
        let json = [&[1u8, 4][..], b"json"].concat();
        let inet6 = [&[0u8, 5][..], b"inet6"].concat();
        let both = [&inet6[..], &json[..]].concat();
        let cases: Vec<(Vec<u8>, u8, u8)> = vec![
            // (extended metadata, type sent, type the client reads)
            (Vec::new(), BLOB, BLOB),
            (json.clone(), BLOB, column_type::JSON),
            (json.clone(), column_type::VAR_STRING, column_type::JSON),
            (
                inet6.clone(),
                column_type::VAR_STRING,
                column_type::VAR_STRING,
            ),
            (both, BLOB, column_type::JSON),
            ([&[1u8, 3][..], b"xml"].concat(), BLOB, BLOB),
        ];
        for (extended, sent, read) in cases {
            let def = extended_definition("j", &extended, sent);
            let out = column_for_client(&def).unwrap();
            assert_eq!(
                out,
                column_definition("j", read, 45, 0xFFFF_FFFF, 0x10),
                "{extended:?}"
            );
        }
        // Malformed input is an error, never a panic.
        let good = extended_definition("j", &json, BLOB);
        for cut in 0..good.len() {
            let _ = column_for_client(&good[..cut]);
        }
        assert!(column_for_client(&extended_definition("j", &[1, 9, b'x'], BLOB)).is_err());
    }

    #[test]
    fn ok_info_is_length_encoded_without_session_tracking() {
        let ok = OkPacket {
            header: 0,
            affected_rows: 1,
            status: caps::status::AUTOCOMMIT,
            warnings: 1,
            info: b"Rows matched: 1  Changed: 1  Warnings: 1".to_vec(),
            ..Default::default()
        };
        let enc = ok.encode(caps::PROTOCOL_41);
        // header, affected, last id, status (2), warnings (2), then the length of the message.
        assert_eq!(enc[7] as usize, ok.info.len(), "{enc:?}");
        let back = OkPacket::parse(&enc, caps::PROTOCOL_41).unwrap();
        assert_eq!(back, ok);
        // A bare message (not length-encoded) is still read whole.
        let mut bare = enc[..7].to_vec();
        bare.extend_from_slice(b"Rows matched: 1");
        assert_eq!(
            OkPacket::parse(&bare, caps::PROTOCOL_41).unwrap().info,
            b"Rows matched: 1"
        );
        // No message: nothing after the warnings.
        let empty = OkPacket::simple(caps::status::AUTOCOMMIT).encode(caps::PROTOCOL_41);
        assert_eq!(empty.len(), 7);
    }
    use proptest::prelude::*;

    #[test]
    fn column_definitions_read_back() {
        let d = column_definition("total", column_type::LONGLONG, 63, 21, 0x20 | 0x80);
        let c = ColumnDef::parse(&d).unwrap();
        assert_eq!(c.name, b"total");
        assert_eq!(c.schema, b"");
        assert_eq!(
            (c.charset, c.length, c.column_type, c.flags, c.decimals),
            (63, 21, column_type::LONGLONG, 0xA0, 0)
        );
        assert!(ColumnDef::parse(&d[..d.len() - 4]).is_err());
        assert!(ColumnDef::parse(b"").is_err());
    }

    #[test]
    fn text_rows_read_back() {
        let long = vec![b'x'; 300];
        let values: Vec<Option<&[u8]>> = vec![Some(b"1"), None, Some(b""), Some(&long)];
        assert_eq!(text_row_values(&text_row(&values)).unwrap(), values);
        assert_eq!(text_row_values(b"").unwrap(), Vec::<Option<&[u8]>>::new());
        // A value longer than the row is an error, not a panic.
        assert!(text_row_values(&[5, b'a']).is_err());
    }

    #[test]
    fn ok_round_trips() {
        let with_state = OkPacket {
            header: 0,
            affected_rows: 3,
            last_insert_id: 70000,
            status: caps::status::AUTOCOMMIT | caps::status::SESSION_STATE_CHANGED,
            warnings: 1,
            info: b"Rows matched: 3".to_vec(),
            session_state: Some(vec![0, 5, 4, b'a', b'b', b'c', b'd']),
        };
        assert_eq!(
            OkPacket::parse(&with_state.encode(caps::SESSION_TRACK), caps::SESSION_TRACK).unwrap(),
            with_state
        );
        // Re-encoded for a client without SESSION_TRACK: the state block is dropped.
        let plain = with_state.encode(0);
        let back = OkPacket::parse(&plain, 0).unwrap();
        assert_eq!(back.session_state, None);
        assert_eq!(back.info, b"Rows matched: 3");
        let simple = OkPacket::simple(caps::status::AUTOCOMMIT);
        assert_eq!(
            simple.encode(caps::SESSION_TRACK),
            vec![0, 0, 0, 2, 0, 0, 0]
        );
    }

    #[test]
    fn err_round_trips() {
        let e = ErrPacket::new(1105, "HY000", "direct DDL is disabled");
        let p = e.encode();
        assert_eq!(&p[..3], &[0xFF, 0x51, 0x04]);
        assert_eq!(ErrPacket::parse(&p).unwrap(), e);
        assert_eq!(e.sqlstate(), "HY000");
    }

    #[test]
    fn eofs() {
        let p = eof(0, 2);
        assert!(is_eof(&p));
        assert_eq!(eof_status(&p), Some(2));
        assert!(!is_eof(&[0x00]));
    }

    proptest! {
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..100), c in any::<u32>()) {
            let _ = OkPacket::parse(&data, c);
            let _ = ErrPacket::parse(&data);
            let _ = eof_status(&data);
            let _ = ColumnDef::parse(&data);
            let _ = text_row_values(&data);
            let _ = column_for_client(&data);
        }
    }
}
