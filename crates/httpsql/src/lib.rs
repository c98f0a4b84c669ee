//! The HTTP SQL protocol spoken by PlanetScale's serverless driver (`@planetscale/database`):
//! Connect-style unary JSON calls to `/psdb.v1alpha1.Database/{Execute,CreateSession}`. Everything
//! here is pure — the shapes of requests and responses in protobuf's JSON mapping (64-bit integers as
//! strings, zero values left out), MySQL column definitions to Vitess type names, rows as lengths
//! plus base64 bytes, MySQL error numbers to Vitess codes, and sessions signed so a client cannot
//! forge another's. The server that uses it lives in the gateway.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Request paths.
pub const EXECUTE: &str = "/psdb.v1alpha1.Database/Execute";
pub const CREATE_SESSION: &str = "/psdb.v1alpha1.Database/CreateSession";

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_empty(s: &str) -> bool {
    s.is_empty()
}

/// `Execute`'s body. Unknown members are ignored; a missing `session` is a new session.
#[derive(Debug, Deserialize)]
pub struct ExecuteRequest {
    pub query: String,
    #[serde(default)]
    pub session: Option<Value>,
}

/// Why a request body is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("invalid request body: {0}")]
    Body(String),
    #[error("invalid session")]
    Session,
}

impl ExecuteRequest {
    pub fn parse(body: &[u8]) -> Result<ExecuteRequest, RequestError> {
        serde_json::from_slice(body).map_err(|e| RequestError::Body(e.to_string()))
    }
}

// ------------------------------------------------------------------ types

/// MySQL column flag bits the type mapping needs.
pub mod flags {
    pub const UNSIGNED: u16 = 32;
    pub const BINARY: u16 = 128;
    pub const ENUM: u16 = 256;
    pub const SET: u16 = 2048;
}

/// The binary collation: values of such columns reach the driver as bytes.
pub const BINARY_CHARSET: u16 = 63;

/// The Vitess type name of a column, from its wire type, flags, whether it holds JSON (MariaDB
/// stores JSON as LONGTEXT; the caller knows from the schema) and whether it is an integer literal
/// (INT64 on PlanetScale, where MariaDB says INT; the caller tells from the column). `None` for the
/// NULL type, which the protocol leaves out.
pub fn vitess_type(wire: u8, flags: u16, json: bool, computed: bool) -> Option<&'static str> {
    let unsigned = flags & self::flags::UNSIGNED != 0;
    let binary = flags & self::flags::BINARY != 0;
    let int = |signed: &'static str, uns: &'static str| {
        Some(match (computed, unsigned) {
            (true, false) => "INT64",
            (true, true) => "UINT64",
            (false, false) => signed,
            (false, true) => uns,
        })
    };
    if json {
        return Some("JSON");
    }
    match wire {
        0 | 246 => Some("DECIMAL"),
        1 => int("INT8", "UINT8"),
        2 => int("INT16", "UINT16"),
        9 => int("INT24", "UINT24"),
        3 => int("INT32", "UINT32"),
        8 => Some(if unsigned { "UINT64" } else { "INT64" }),
        4 => Some("FLOAT32"),
        5 => Some("FLOAT64"),
        6 => None,
        7 | 17 => Some("TIMESTAMP"),
        10 | 14 => Some("DATE"),
        11 | 19 => Some("TIME"),
        12 | 18 => Some("DATETIME"),
        13 => Some("YEAR"),
        15 | 253 => Some(if binary { "VARBINARY" } else { "VARCHAR" }),
        254 => Some(if binary {
            "BINARY"
        } else if flags & self::flags::ENUM != 0 {
            "ENUM"
        } else if flags & self::flags::SET != 0 {
            "SET"
        } else {
            "CHAR"
        }),
        249..=252 => Some(if binary { "BLOB" } else { "TEXT" }),
        16 => Some("BIT"),
        245 => Some("JSON"),
        247 => Some("ENUM"),
        248 => Some("SET"),
        255 => Some("GEOMETRY"),
        242 => Some("VECTOR"),
        _ => Some("BLOB"),
    }
}

/// A result column (`vitess.query.Field`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Field {
    pub name: String,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    #[serde(skip_serializing_if = "is_empty")]
    pub table: String,
    #[serde(skip_serializing_if = "is_empty")]
    pub org_table: String,
    #[serde(skip_serializing_if = "is_empty")]
    pub database: String,
    #[serde(skip_serializing_if = "is_empty")]
    pub org_name: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub column_length: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub charset: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub decimals: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub flags: u64,
}

/// A row: each value's byte length (`-1` for NULL; sent as strings, protobuf's JSON form of sint64)
/// and the values' bytes, concatenated, in base64.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    #[serde(serialize_with = "as_strings")]
    pub lengths: Vec<i64>,
    pub values: String,
}

fn as_strings<S: serde::Serializer>(v: &[i64], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(v.len()))?;
    let mut buf = itoa::Buffer::new();
    for n in v {
        seq.serialize_element(buf.format(*n))?;
    }
    seq.end()
}

impl Row {
    pub fn encode(values: &[Option<&[u8]>]) -> Row {
        let mut bytes = Vec::with_capacity(values.iter().flatten().map(|v| v.len()).sum());
        let lengths = values
            .iter()
            .map(|v| match v {
                Some(v) => {
                    bytes.extend_from_slice(v);
                    v.len() as i64
                }
                None => -1,
            })
            .collect();
        Row {
            lengths,
            values: B64.encode(bytes),
        }
    }
}

/// `vitess.query.QueryResult`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryResult {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<Field>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_affected: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insert_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rows: Vec<Row>,
}

impl QueryResult {
    /// The result of a statement without a result set.
    pub fn ok(affected: u64, insert_id: u64) -> QueryResult {
        QueryResult {
            rows_affected: (affected > 0).then(|| affected.to_string()),
            insert_id: (insert_id > 0).then(|| insert_id.to_string()),
            ..Default::default()
        }
    }
}

// ------------------------------------------------------------------ errors

/// `vitess.vtrpc.RPCError`, in-band.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RpcError {
    pub code: &'static str,
    pub message: String,
}

impl RpcError {
    /// A MySQL error, written as PlanetScale writes it: `<message> (errno N) (sqlstate S)` (ORM
    /// adapters take the number and state from that text).
    pub fn mysql(errno: u16, sqlstate: &str, message: &str) -> RpcError {
        RpcError {
            code: code_of(errno),
            message: format!("{message} (errno {errno}) (sqlstate {sqlstate})"),
        }
    }
}

/// Vitess's code for a MySQL error number.
pub fn code_of(errno: u16) -> &'static str {
    match errno {
        1062 | 1050 => "ALREADY_EXISTS",
        1146 | 1054 | 1109 => "NOT_FOUND",
        1064 | 1149 | 1048 | 1049 | 1406 | 1264 | 1366 | 1292 => "INVALID_ARGUMENT",
        1451 | 1452 | 1216 | 1217 | 1046 => "FAILED_PRECONDITION",
        1205 | 2013 | 1969 | 3024 => "DEADLINE_EXCEEDED",
        1213 => "ABORTED",
        1044 | 1045 | 1227 | 1142 | 1143 => "PERMISSION_DENIED",
        1040 | 1153 => "RESOURCE_EXHAUSTED",
        1235 => "UNIMPLEMENTED",
        2006 | 1053 => "UNAVAILABLE",
        _ => "UNKNOWN",
    }
}

/// The body of a reply that is not 200: Connect's top-level `code`/`message` (what Connect clients
/// read) and the same pair under `error` (what `@planetscale/database` reads).
pub fn http_error_body(connect_code: &str, message: &str) -> Value {
    serde_json::json!({
        "code": connect_code,
        "message": message,
        "error": { "code": connect_code, "message": message },
    })
}

/// The HTTP status of a Connect error code.
pub fn http_status(connect_code: &str) -> u16 {
    match connect_code {
        "unauthenticated" => 401,
        "permission_denied" => 403,
        "invalid_argument" | "failed_precondition" | "out_of_range" => 400,
        "not_found" => 404,
        "already_exists" | "aborted" => 409,
        "resource_exhausted" => 429,
        "unimplemented" => 501,
        "unavailable" => 503,
        "deadline_exceeded" => 504,
        _ => 500,
    }
}

// ------------------------------------------------------------------ sessions

type HmacSha256 = Hmac<sha2::Sha256>;

/// The session value (`psdb.v1alpha1.Session`), with real state kept by the server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionToken {
    pub signature: String,
    #[serde(rename = "vitessSession")]
    pub vitess_session: VitessSession,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VitessSession {
    #[serde(rename = "inTransaction", skip_serializing_if = "is_false")]
    pub in_transaction: bool,
    /// The session holds a connection with state on it (Vitess's reserved connection): `SET`,
    /// temporary tables, locks. Told back, so a session that lost it can be told so.
    #[serde(rename = "inReservedConn", skip_serializing_if = "is_false")]
    pub in_reserved_conn: bool,
    pub autocommit: bool,
    pub options: SessionOptions,
    #[serde(rename = "DDLStrategy")]
    pub ddl_strategy: &'static str,
    #[serde(rename = "SessionUUID")]
    pub session_uuid: String,
    #[serde(rename = "enableSystemSettings")]
    pub enable_system_settings: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionOptions {
    #[serde(rename = "includedFields")]
    pub included_fields: &'static str,
    #[serde(rename = "clientFoundRows")]
    pub client_found_rows: bool,
}

/// What a session token says, once its signature is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionClaim {
    pub id: String,
    pub in_transaction: bool,
    pub in_reserved_conn: bool,
}

/// What a session holds, as its token tells the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionState {
    pub in_transaction: bool,
    pub in_reserved_conn: bool,
    pub autocommit: bool,
}

impl SessionState {
    /// A session holding nothing.
    pub const FRESH: SessionState = SessionState {
        in_transaction: false,
        in_reserved_conn: false,
        autocommit: true,
    };
}

/// Signs and checks session tokens: `signature` is an HMAC-SHA256 of the session id and the
/// password it belongs to, so a client can hand back its own sessions but not make up another's,
/// nor use one another password was given.
pub struct SessionSigner {
    /// Keyed once: every call signs its session, and keying costs two of the hash's blocks.
    keyed: HmacSha256,
}

impl SessionSigner {
    pub fn new(key: &[u8]) -> SessionSigner {
        // HMAC takes keys of any length.
        let keyed = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
        SessionSigner { keyed }
    }

    fn mac(&self, id: &str, owner: &str) -> Vec<u8> {
        let mut m = self.keyed.clone();
        m.update(owner.as_bytes());
        m.update(b"\0");
        m.update(id.as_bytes());
        m.finalize().into_bytes().to_vec()
    }

    /// The session value sent back with every response, in PlanetScale's shape.
    pub fn token(&self, id: &str, owner: &str, state: SessionState) -> SessionToken {
        SessionToken {
            signature: B64.encode(self.mac(id, owner)),
            vitess_session: VitessSession {
                in_transaction: state.in_transaction,
                in_reserved_conn: state.in_reserved_conn,
                autocommit: state.autocommit,
                options: SessionOptions {
                    included_fields: "ALL",
                    client_found_rows: true,
                },
                ddl_strategy: "direct",
                session_uuid: id.to_string(),
                enable_system_settings: true,
            },
        }
    }

    /// Reads a session value a client sent back: `Ok(None)` for a new session (`null`, absent),
    /// an error for anything not signed by this server.
    pub fn claim(
        &self,
        session: Option<&Value>,
        owner: &str,
    ) -> Result<Option<SessionClaim>, RequestError> {
        let Some(s) = session.filter(|s| !s.is_null()) else {
            return Ok(None);
        };
        let vitess = &s["vitessSession"];
        let id = vitess["SessionUUID"]
            .as_str()
            .ok_or(RequestError::Session)?;
        let signature = s["signature"]
            .as_str()
            .and_then(|b| B64.decode(b).ok())
            .ok_or(RequestError::Session)?;
        use subtle::ConstantTimeEq;
        if !bool::from(self.mac(id, owner).ct_eq(&signature)) {
            return Err(RequestError::Session);
        }
        Ok(Some(SessionClaim {
            id: id.to_string(),
            in_transaction: vitess["inTransaction"].as_bool().unwrap_or(false),
            in_reserved_conn: vitess["inReservedConn"].as_bool().unwrap_or(false),
        }))
    }
}

/// `ExecuteResponse`: `result` or `error`, the session, the server-side time in seconds.
#[derive(Debug, Serialize)]
pub struct ExecuteResponse {
    pub session: SessionToken,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<QueryResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
    pub timing: f64,
}

pub fn execute_response(
    session: SessionToken,
    result: Result<QueryResult, RpcError>,
    seconds: f64,
) -> ExecuteResponse {
    let (result, error) = match result {
        Ok(r) => (Some(r), None),
        Err(e) => (None, Some(e)),
    };
    ExecuteResponse {
        session,
        result,
        error,
        timing: seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn vitess_types_of_wire_types() {
        use flags::*;
        let cases: &[(u8, u16, bool, bool, Option<&str>)] = &[
            (1, 0, false, false, Some("INT8")),
            (1, UNSIGNED, false, false, Some("UINT8")),
            (2, 0, false, false, Some("INT16")),
            (9, UNSIGNED, false, false, Some("UINT24")),
            (3, 0, false, false, Some("INT32")),
            (3, UNSIGNED, false, false, Some("UINT32")),
            // An integer expression (no source table) is INT64, as on PlanetScale.
            (3, 0, false, true, Some("INT64")),
            (3, UNSIGNED, false, true, Some("UINT64")),
            (8, 0, false, false, Some("INT64")),
            (8, UNSIGNED, false, false, Some("UINT64")),
            (246, 0, false, false, Some("DECIMAL")),
            (4, 0, false, false, Some("FLOAT32")),
            (5, 0, false, false, Some("FLOAT64")),
            (6, BINARY, false, false, None),
            (7, UNSIGNED | BINARY, false, false, Some("TIMESTAMP")),
            (10, 0, false, false, Some("DATE")),
            (11, 0, false, false, Some("TIME")),
            (12, 0, false, false, Some("DATETIME")),
            (13, UNSIGNED | 64, false, false, Some("YEAR")),
            (253, 0, false, false, Some("VARCHAR")),
            (253, BINARY, false, false, Some("VARBINARY")),
            (254, 0, false, false, Some("CHAR")),
            (254, BINARY, false, false, Some("BINARY")),
            (254, ENUM, false, false, Some("ENUM")),
            (254, SET, false, false, Some("SET")),
            (252, 16, false, false, Some("TEXT")),
            (252, 16 | BINARY, false, false, Some("BLOB")),
            // MariaDB's JSON: LONGTEXT utf8mb4_bin, known as JSON from the schema.
            (252, 16 | BINARY, true, false, Some("JSON")),
            (16, UNSIGNED, false, false, Some("BIT")),
            (255, BINARY, false, false, Some("GEOMETRY")),
        ];
        for (wire, f, json, computed, want) in cases {
            assert_eq!(
                vitess_type(*wire, *f, *json, *computed),
                *want,
                "wire {wire} flags {f}"
            );
        }
    }

    #[test]
    fn rows_are_lengths_and_base64() {
        let r = Row::encode(&[
            Some(b"7"),
            Some("Zoë".as_bytes()),
            None,
            Some(b""),
            Some(&[1, 2, 255]),
        ]);
        assert_eq!(r.lengths, [1, 4, -1, 0, 3]);
        assert_eq!(
            serde_json::to_value(&r).unwrap()["lengths"],
            serde_json::json!(["1", "4", "-1", "0", "3"])
        );
        assert_eq!(B64.decode(&r.values).unwrap(), b"7Zo\xc3\xab\x01\x02\xff");
        let empty = Row::encode(&[None, Some(b"")]);
        assert_eq!(
            (empty.lengths.clone(), empty.values.as_str()),
            (vec![-1, 0], "")
        );
    }

    #[test]
    fn results_leave_out_zero_values() {
        let v = serde_json::to_value(QueryResult::ok(0, 0)).unwrap();
        assert_eq!(v, serde_json::json!({}));
        let v = serde_json::to_value(QueryResult::ok(1, 42)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"rowsAffected": "1", "insertId": "42"})
        );
        let f = Field {
            name: "NULL".into(),
            charset: 63,
            flags: 32896,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(f).unwrap(),
            serde_json::json!({"name": "NULL", "charset": 63, "flags": 32896})
        );
    }

    #[test]
    fn errors_as_planetscale_writes_them() {
        let e = RpcError::mysql(1062, "23000", "Duplicate entry 'a' for key 'u'");
        assert_eq!(e.code, "ALREADY_EXISTS");
        assert_eq!(
            e.message,
            "Duplicate entry 'a' for key 'u' (errno 1062) (sqlstate 23000)"
        );
        assert_eq!(code_of(1064), "INVALID_ARGUMENT");
        assert_eq!(code_of(1146), "NOT_FOUND");
        assert_eq!(code_of(1213), "ABORTED");
        assert_eq!(code_of(9999), "UNKNOWN");
        let b = http_error_body("unauthenticated", "invalid auth credentials");
        assert_eq!(b["error"]["message"], "invalid auth credentials");
        assert_eq!(b["code"], "unauthenticated");
        assert_eq!(http_status("unauthenticated"), 401);
        assert_eq!(http_status("invalid_argument"), 400);
        assert_eq!(http_status("unavailable"), 503);
    }

    #[test]
    fn requests() {
        let r = ExecuteRequest::parse(br#"{"query":"select 1","session":null,"extra":1}"#).unwrap();
        assert_eq!(r.query, "select 1");
        assert!(r.session.is_none());
        let r = ExecuteRequest::parse(br#"{"query":"select 1"}"#).unwrap();
        assert!(r.session.is_none());
        assert!(ExecuteRequest::parse(b"{").is_err());
        assert!(ExecuteRequest::parse(br#"{"session":null}"#).is_err());
        assert!(ExecuteRequest::parse(br#"{"query":5}"#).is_err());
    }

    #[test]
    fn sessions_are_signed() {
        let s = SessionSigner::new(b"key");
        assert_eq!(s.claim(None, "pw1").unwrap(), None);
        assert_eq!(s.claim(Some(&Value::Null), "pw1").unwrap(), None);
        let open = SessionState {
            in_transaction: true,
            in_reserved_conn: true,
            autocommit: false,
        };
        let t = serde_json::to_value(s.token("abc", "pw1", open)).unwrap();
        assert_eq!(t["vitessSession"]["SessionUUID"], "abc");
        assert_eq!(t["vitessSession"]["inTransaction"], true);
        assert_eq!(t["vitessSession"]["inReservedConn"], true);
        assert_eq!(t["vitessSession"]["autocommit"], false);
        let idle = serde_json::to_value(s.token("abc", "pw1", SessionState::FRESH)).unwrap();
        assert!(idle["vitessSession"].get("inTransaction").is_none());
        assert!(idle["vitessSession"].get("inReservedConn").is_none());
        assert_eq!(idle["vitessSession"]["autocommit"], true);
        assert_eq!(idle["vitessSession"]["options"]["clientFoundRows"], true);
        assert_eq!(
            s.claim(Some(&t), "pw1").unwrap(),
            Some(SessionClaim {
                id: "abc".into(),
                in_transaction: true,
                in_reserved_conn: true,
            })
        );
        // Another password handing it back, another id under the same signature, another
        // server's key, junk: refused.
        assert_eq!(s.claim(Some(&t), "pw2"), Err(RequestError::Session));
        let mut forged = t.clone();
        forged["vitessSession"]["SessionUUID"] = "abd".into();
        assert_eq!(s.claim(Some(&forged), "pw1"), Err(RequestError::Session));
        assert_eq!(
            SessionSigner::new(b"other").claim(Some(&t), "pw1"),
            Err(RequestError::Session)
        );
        assert_eq!(
            s.claim(Some(&serde_json::json!(42)), "pw1"),
            Err(RequestError::Session)
        );
        let r = execute_response(
            s.token("abc", "pw1", SessionState::FRESH),
            Err(RpcError::mysql(1064, "42000", "bad")),
            0.5,
        );
        let r = serde_json::to_value(r).unwrap();
        assert_eq!(r["error"]["code"], "INVALID_ARGUMENT");
        assert!(r.get("result").is_none());
    }

    proptest! {
        #[test]
        fn rows_decode_back(values in proptest::collection::vec(proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)), 0..12)) {
            let refs: Vec<Option<&[u8]>> = values.iter().map(|v| v.as_deref()).collect();
            let r = Row::encode(&refs);
            let bytes = B64.decode(&r.values).unwrap();
            let mut at = 0usize;
            for (v, l) in values.iter().zip(&r.lengths) {
                let l = *l;
                match v {
                    None => prop_assert_eq!(l, -1),
                    Some(v) => {
                        prop_assert_eq!(&bytes[at..at + l as usize], &v[..]);
                        at += l as usize;
                    }
                }
            }
            prop_assert_eq!(at, bytes.len());
        }
    }
}
