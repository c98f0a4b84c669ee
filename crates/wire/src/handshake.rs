//! The connection phase: the server greeting, the client's handshake response (and its SSL request),
//! auth switch and auth-more-data packets.

use crate::caps;
use crate::{put_lenenc, put_lenenc_bytes, Reader, Result, WireError};

pub const NATIVE_PASSWORD: &str = "mysql_native_password";
pub const CACHING_SHA2_PASSWORD: &str = "caching_sha2_password";
pub const CLEAR_PASSWORD: &str = "mysql_clear_password";

/// caching_sha2_password's AuthMoreData codes.
pub const FAST_AUTH_SUCCESS: u8 = 0x03;
pub const PERFORM_FULL_AUTHENTICATION: u8 = 0x04;
pub const REQUEST_PUBLIC_KEY: u8 = 0x02;

/// Initial handshake packet, protocol version 10.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub server_version: String,
    pub connection_id: u32,
    /// The 20-byte scramble nonce.
    pub nonce: Vec<u8>,
    pub capabilities: u32,
    pub charset: u8,
    pub status: u16,
    pub auth_plugin: String,
    /// MariaDB's extended capabilities (see [`caps::mariadb`]); 0 from MySQL.
    pub mariadb_capabilities: u32,
}

impl Greeting {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        out.push(10);
        out.extend_from_slice(self.server_version.as_bytes());
        out.push(0);
        out.extend_from_slice(&self.connection_id.to_le_bytes());
        let (part1, part2) = self.nonce.split_at(self.nonce.len().min(8));
        out.extend_from_slice(part1);
        out.extend(std::iter::repeat_n(0, 8 - part1.len()));
        out.push(0);
        out.extend_from_slice(&(self.capabilities as u16).to_le_bytes());
        out.push(self.charset);
        out.extend_from_slice(&self.status.to_le_bytes());
        out.extend_from_slice(&((self.capabilities >> 16) as u16).to_le_bytes());
        out.push((self.nonce.len() + 1) as u8);
        out.extend_from_slice(&[0; 6]);
        let extended = if self.capabilities & caps::LONG_PASSWORD == 0 {
            self.mariadb_capabilities
        } else {
            0
        };
        out.extend_from_slice(&extended.to_le_bytes());
        out.extend_from_slice(part2);
        out.extend(std::iter::repeat_n(0, 12usize.saturating_sub(part2.len())));
        out.push(0);
        out.extend_from_slice(self.auth_plugin.as_bytes());
        out.push(0);
        out
    }

    pub fn parse(payload: &[u8]) -> Result<Greeting> {
        let mut r = Reader::new(payload);
        if r.u8()? != 10 {
            return Err(WireError::Malformed("unsupported protocol version"));
        }
        let server_version = String::from_utf8_lossy(r.nul_terminated()?).into_owned();
        let connection_id = r.u32()?;
        let mut nonce = r.bytes(8)?.to_vec();
        r.u8()?;
        let lower = r.u16()? as u32;
        let charset = r.u8()?;
        let status = r.u16()?;
        let upper = r.u16()? as u32;
        let capabilities = lower | (upper << 16);
        let data_len = r.u8()? as usize;
        let reserved = r.bytes(10)?;
        let mariadb_capabilities = if capabilities & caps::LONG_PASSWORD == 0 {
            u32::from_le_bytes([reserved[6], reserved[7], reserved[8], reserved[9]])
        } else {
            0
        };
        if capabilities & caps::SECURE_CONNECTION != 0 {
            let n = data_len.saturating_sub(9).max(12);
            let part2 = r.bytes(n.min(r.remaining().len()))?;
            nonce.extend_from_slice(part2.strip_suffix(&[0]).unwrap_or(part2));
            if r.remaining().first() == Some(&0) {
                r.u8()?;
            }
        }
        let auth_plugin = if capabilities & caps::PLUGIN_AUTH != 0 && !r.is_empty() {
            let rest = r.rest();
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            String::from_utf8_lossy(&rest[..end]).into_owned()
        } else {
            NATIVE_PASSWORD.to_string()
        };
        Ok(Greeting {
            server_version,
            connection_id,
            nonce,
            capabilities,
            charset,
            status,
            auth_plugin,
            mariadb_capabilities,
        })
    }
}

/// The client's answer to the greeting (HandshakeResponse41).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HandshakeResponse {
    pub capabilities: u32,
    pub max_packet: u32,
    pub charset: u8,
    pub username: String,
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    pub auth_plugin: Option<String>,
    pub attributes: Vec<(String, String)>,
    /// MariaDB's extended capabilities, sent only without `LONG_PASSWORD` (see [`caps::mariadb`]).
    pub mariadb_capabilities: u32,
}

/// COM_CHANGE_USER's body (after the command byte), read with the session's capabilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeUser {
    pub username: String,
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    pub charset: Option<u16>,
    pub auth_plugin: Option<String>,
}

impl ChangeUser {
    pub fn parse(body: &[u8], capabilities: u32) -> Result<ChangeUser> {
        let mut r = Reader::new(body);
        let username = String::from_utf8_lossy(r.nul_terminated()?).into_owned();
        let auth_response = if capabilities & caps::SECURE_CONNECTION != 0 {
            let n = r.u8()? as usize;
            r.bytes(n)?.to_vec()
        } else {
            r.nul_terminated()?.to_vec()
        };
        let db = r.nul_terminated()?;
        let database = (!db.is_empty()).then(|| String::from_utf8_lossy(db).into_owned());
        let mut charset = None;
        let mut auth_plugin = None;
        if !r.is_empty() && capabilities & caps::PROTOCOL_41 != 0 {
            let b = r.bytes(2)?;
            charset = Some(u16::from_le_bytes([b[0], b[1]]));
        }
        if !r.is_empty() && capabilities & caps::PLUGIN_AUTH != 0 {
            auth_plugin = Some(String::from_utf8_lossy(r.nul_terminated()?).into_owned());
        }
        // Connection attributes may follow; nothing here needs them.
        Ok(ChangeUser {
            username,
            auth_response,
            database,
            charset,
            auth_plugin,
        })
    }
}

/// True when the packet is an SSLRequest: the short form of the handshake response, asking for TLS.
pub fn is_ssl_request(payload: &[u8]) -> bool {
    payload.len() == 32
        && u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]) & caps::SSL != 0
}

/// The capability flags of an SSLRequest or handshake response.
pub fn client_capabilities(payload: &[u8]) -> Option<u32> {
    payload
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl HandshakeResponse {
    pub fn parse(payload: &[u8]) -> Result<HandshakeResponse> {
        let mut r = Reader::new(payload);
        let capabilities = r.u32()?;
        if capabilities & caps::PROTOCOL_41 == 0 {
            return Err(WireError::Malformed(
                "clients older than protocol 4.1 are not supported",
            ));
        }
        let max_packet = r.u32()?;
        let charset = r.u8()?;
        let filler = r.bytes(23)?;
        let mariadb_capabilities = if capabilities & caps::LONG_PASSWORD == 0 {
            u32::from_le_bytes([filler[19], filler[20], filler[21], filler[22]])
        } else {
            0
        };
        let username = String::from_utf8_lossy(r.nul_terminated()?).into_owned();
        let auth_response = if capabilities & caps::PLUGIN_AUTH_LENENC_DATA != 0 {
            r.lenenc_bytes()?.to_vec()
        } else if capabilities & caps::SECURE_CONNECTION != 0 {
            let n = r.u8()? as usize;
            r.bytes(n)?.to_vec()
        } else {
            r.nul_terminated()?.to_vec()
        };
        let mut database = None;
        if capabilities & caps::CONNECT_WITH_DB != 0 && !r.is_empty() {
            let db = r.nul_terminated()?;
            if !db.is_empty() {
                database = Some(String::from_utf8_lossy(db).into_owned());
            }
        }
        let mut auth_plugin = None;
        if capabilities & caps::PLUGIN_AUTH != 0 && !r.is_empty() {
            auth_plugin = Some(String::from_utf8_lossy(r.nul_terminated()?).into_owned());
        }
        let mut attributes = Vec::new();
        if capabilities & caps::CONNECT_ATTRS != 0 && !r.is_empty() {
            let total = r.lenenc_int()? as usize;
            let block = r.bytes(total)?;
            let mut a = Reader::new(block);
            while !a.is_empty() {
                let k = String::from_utf8_lossy(a.lenenc_bytes()?).into_owned();
                let v = String::from_utf8_lossy(a.lenenc_bytes()?).into_owned();
                attributes.push((k, v));
            }
        }
        Ok(HandshakeResponse {
            capabilities,
            max_packet,
            charset,
            username,
            auth_response,
            database,
            auth_plugin,
            attributes,
            mariadb_capabilities,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&self.capabilities.to_le_bytes());
        out.extend_from_slice(&self.max_packet.to_le_bytes());
        out.push(self.charset);
        out.extend_from_slice(&[0; 19]);
        let extended = if self.capabilities & caps::LONG_PASSWORD == 0 {
            self.mariadb_capabilities
        } else {
            0
        };
        out.extend_from_slice(&extended.to_le_bytes());
        out.extend_from_slice(self.username.as_bytes());
        out.push(0);
        if self.capabilities & caps::PLUGIN_AUTH_LENENC_DATA != 0 {
            put_lenenc_bytes(&mut out, &self.auth_response);
        } else if self.capabilities & caps::SECURE_CONNECTION != 0 {
            // One length byte: longer data cannot be expressed in this form.
            let n = self.auth_response.len().min(255);
            out.push(n as u8);
            out.extend_from_slice(&self.auth_response[..n]);
        } else {
            out.extend_from_slice(&self.auth_response);
            out.push(0);
        }
        if self.capabilities & caps::CONNECT_WITH_DB != 0 {
            out.extend_from_slice(self.database.as_deref().unwrap_or("").as_bytes());
            out.push(0);
        }
        if self.capabilities & caps::PLUGIN_AUTH != 0 {
            out.extend_from_slice(
                self.auth_plugin
                    .as_deref()
                    .unwrap_or(NATIVE_PASSWORD)
                    .as_bytes(),
            );
            out.push(0);
        }
        if self.capabilities & caps::CONNECT_ATTRS != 0 {
            let mut block = Vec::new();
            for (k, v) in &self.attributes {
                put_lenenc_bytes(&mut block, k.as_bytes());
                put_lenenc_bytes(&mut block, v.as_bytes());
            }
            put_lenenc(&mut out, block.len() as u64);
            out.extend_from_slice(&block);
        }
        out
    }

    /// The SSLRequest a client sends before the TLS handshake.
    pub fn ssl_request(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        out.extend_from_slice(&(self.capabilities | caps::SSL).to_le_bytes());
        out.extend_from_slice(&self.max_packet.to_le_bytes());
        out.push(self.charset);
        out.extend_from_slice(&[0; 23]);
        out
    }
}

/// `0xFE plugin\0 data`: ask the other side to authenticate with another method.
pub fn auth_switch_request(plugin: &str, nonce: &[u8]) -> Vec<u8> {
    let mut out = vec![0xFE];
    out.extend_from_slice(plugin.as_bytes());
    out.push(0);
    out.extend_from_slice(nonce);
    out.push(0);
    out
}

/// Parses an auth switch request (client side): the plugin and its data.
pub fn parse_auth_switch(payload: &[u8]) -> Result<(String, Vec<u8>)> {
    let mut r = Reader::new(payload);
    if r.u8()? != 0xFE {
        return Err(WireError::Malformed("not an auth switch request"));
    }
    let plugin = String::from_utf8_lossy(r.nul_terminated()?).into_owned();
    let data = r.rest();
    Ok((plugin, data.strip_suffix(&[0]).unwrap_or(data).to_vec()))
}

/// `0x01 data`: more authentication data.
pub fn auth_more_data(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x01];
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn greeting() -> Greeting {
        Greeting {
            server_version: "5.5.5-10.11.19-MariaDB-strata".into(),
            connection_id: 42,
            nonce: (1..=20).collect(),
            capabilities: caps::GATEWAY | caps::SSL,
            charset: 45,
            status: caps::status::AUTOCOMMIT,
            auth_plugin: CACHING_SHA2_PASSWORD.into(),
            mariadb_capabilities: 0,
        }
    }

    #[test]
    fn greeting_round_trip() {
        let g = greeting();
        assert_eq!(Greeting::parse(&g.encode()).unwrap(), g);
        // MariaDB's: no CLIENT_MYSQL, extended capabilities in the filler.
        let m = Greeting {
            capabilities: caps::GATEWAY & !caps::LONG_PASSWORD,
            mariadb_capabilities: caps::mariadb::EXTENDED_METADATA | 1,
            ..greeting()
        };
        assert_eq!(Greeting::parse(&m.encode()).unwrap(), m);
        // With CLIENT_MYSQL set the filler means nothing.
        let mysql = Greeting {
            mariadb_capabilities: caps::mariadb::EXTENDED_METADATA,
            ..greeting()
        };
        assert_eq!(
            Greeting::parse(&mysql.encode())
                .unwrap()
                .mariadb_capabilities,
            0
        );
    }

    #[test]
    fn response_round_trip() {
        let r = HandshakeResponse {
            capabilities: caps::GATEWAY,
            max_packet: 1 << 24,
            charset: 45,
            username: "abc".into(),
            auth_response: vec![9; 32],
            database: Some("shop".into()),
            auth_plugin: Some(CACHING_SHA2_PASSWORD.into()),
            attributes: vec![("_client_name".into(), "test".into())],
            mariadb_capabilities: 0,
        };
        assert_eq!(HandshakeResponse::parse(&r.encode()).unwrap(), r);
        let m = HandshakeResponse {
            capabilities: caps::GATEWAY & !caps::LONG_PASSWORD,
            mariadb_capabilities: caps::mariadb::EXTENDED_METADATA,
            ..r.clone()
        };
        assert_eq!(HandshakeResponse::parse(&m.encode()).unwrap(), m);
        let ssl = r.ssl_request();
        assert!(is_ssl_request(&ssl));
        assert!(!is_ssl_request(&r.encode()));
        // Without lenenc auth data and without attributes.
        let r2 = HandshakeResponse {
            capabilities: caps::PROTOCOL_41 | caps::SECURE_CONNECTION | caps::PLUGIN_AUTH,
            auth_response: vec![1; 20],
            auth_plugin: Some(NATIVE_PASSWORD.into()),
            username: "u".into(),
            ..Default::default()
        };
        assert_eq!(HandshakeResponse::parse(&r2.encode()).unwrap(), r2);
    }

    #[test]
    fn auth_switch_round_trip() {
        let p = auth_switch_request(NATIVE_PASSWORD, &[7; 20]);
        assert_eq!(
            parse_auth_switch(&p).unwrap(),
            (NATIVE_PASSWORD.to_string(), vec![7; 20])
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(HandshakeResponse::parse(&[]).is_err());
        assert!(HandshakeResponse::parse(&[0, 0, 0, 0]).is_err());
        assert!(Greeting::parse(&[9]).is_err());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = HandshakeResponse::parse(&data);
            let _ = Greeting::parse(&data);
            let _ = parse_auth_switch(&data);
            let _ = is_ssl_request(&data);
        }

        #[test]
        fn mutated_responses_never_panic(pos in 0usize..80, b in any::<u8>()) {
            let r = HandshakeResponse { capabilities: caps::GATEWAY, username: "u".into(), auth_response: vec![3; 32],
                database: Some("db".into()), auth_plugin: Some(NATIVE_PASSWORD.into()), attributes: vec![("a".into(), "b".into())], ..Default::default() };
            let mut p = r.encode();
            if pos < p.len() { p[pos] = b; }
            let _ = HandshakeResponse::parse(&p);
        }
    }
}

#[cfg(test)]
mod regressions {
    #[test]
    fn change_user_bodies() {
        let caps = caps::PROTOCOL_41 | caps::SECURE_CONNECTION | caps::PLUGIN_AUTH;
        let mut b = b"app\0".to_vec();
        b.push(3);
        b.extend_from_slice(&[1, 2, 3]);
        b.extend_from_slice(b"shop\0");
        b.extend_from_slice(&45u16.to_le_bytes());
        b.extend_from_slice(b"mysql_native_password\0");
        let c = ChangeUser::parse(&b, caps).unwrap();
        assert_eq!(c.username, "app");
        assert_eq!(c.auth_response, [1, 2, 3]);
        assert_eq!(c.database.as_deref(), Some("shop"));
        assert_eq!(c.charset, Some(45));
        assert_eq!(c.auth_plugin.as_deref(), Some("mysql_native_password"));
        // Without a database, charset or plugin.
        let c = ChangeUser::parse(b"u\0\0\0", caps).unwrap();
        assert_eq!((c.database, c.charset, c.auth_plugin), (None, None, None));
        // Truncated: an error, never a panic.
        for n in 0..b.len() - 1 {
            let _ = ChangeUser::parse(&b[..n], caps);
        }
        assert!(ChangeUser::parse(b"no-terminator", caps).is_err());
    }

    use super::*;

    /// Found by `cargo fuzz run handshake`: no SECURE_CONNECTION, so the auth data is NUL-terminated,
    /// and it must be re-encoded that way.
    #[test]
    fn nul_terminated_auth_data_round_trips() {
        let input: &[u8] = &[
            0x0a, 0x32, 0x01, 0x00, 0x32, 0x08, 0x08, 0x08, 0x08, 0x08, 0x08, 0x08, 0x08, 0x08,
            0x08, 0x32, 0x00, 0xff, 0x00, 0xfa, 0x00, 0x00, 0x22, 0x00, 0x00, 0x3f, 0x00, 0x0a,
            0xff, 0xff, 0xff, 0x00, 0x00, 0xfe, 0xff, 0x00, 0x00, 0x01,
        ];
        if let Ok(r) = HandshakeResponse::parse(input) {
            let again = HandshakeResponse::parse(&r.encode()).unwrap();
            assert_eq!(again.auth_response, r.auth_response);
            assert_eq!(again.username, r.username);
        }
    }
}
