//! The connection phase: whatever a client or server sends, parsing never panics, and what parses
//! re-encodes to something that parses to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use strata_wire::handshake::{client_capabilities, is_ssl_request, parse_auth_switch, Greeting, HandshakeResponse};

fuzz_target!(|data: &[u8]| {
    let _ = is_ssl_request(data);
    let _ = client_capabilities(data);
    let _ = parse_auth_switch(data);
    if let Ok(r) = HandshakeResponse::parse(data) {
        let again = HandshakeResponse::parse(&r.encode()).expect("re-encoded response parses");
        assert_eq!(again.username, r.username);
        assert_eq!(again.auth_response, r.auth_response);
    }
    if let Ok(g) = Greeting::parse(data) {
        let _ = Greeting::parse(&g.encode());
    }
});
