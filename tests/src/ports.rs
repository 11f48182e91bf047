//! Free loopback ports.

use std::net::{Ipv4Addr, TcpListener};

/// A TCP port on 127.0.0.1 that was free a moment ago: bind port 0, read the port the kernel
/// chose, close the socket. Another process may take it before the caller binds it; callers
/// that spawn servers on it (Synapse, `openssl s_server`) detect that and retry.
pub fn free_loopback_port() -> u16 {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("local address of a bound listener")
        .port()
}
