//! The UDP socket under a QUIC endpoint, with buffers large enough for bulk transfers.
//!
//! With the kernel's default buffers (about 208 KiB on Linux) a burst of a 1 MiB message
//! overflows the receive queue: packets are dropped, and QUIC's congestion controller takes the
//! losses for congestion and collapses its window. Asking for a few MiB (the kernel caps the
//! request at `net.core.rmem_max` / `wmem_max`) keeps bulk transfers loss-free on fast links.

use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// The send and receive buffer sizes asked for: 4 MiB.
pub const UDP_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// A UDP socket bound to `addr` with send and receive buffers of `buffer_bytes` (as far as the
/// kernel allows; a refusal leaves the default), ready for a QUIC endpoint.
pub fn bind_udp(addr: SocketAddr, buffer_bytes: usize) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Dual-stack where the system allows it, as quinn's own endpoints do.
        let _ = socket.set_only_v6(false);
    }
    for (what, set) in [
        ("receive", Socket::set_recv_buffer_size as fn(&Socket, usize) -> std::io::Result<()>),
        ("send", Socket::set_send_buffer_size),
    ] {
        if let Err(e) = set(&socket, buffer_bytes) {
            tracing::debug!(error = %e, "cannot set the UDP {what} buffer size");
        }
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A QUIC endpoint on `socket`, a server if `server` is given.
pub fn endpoint(socket: UdpSocket, server: Option<quinn::ServerConfig>) -> std::io::Result<quinn::Endpoint> {
    let runtime = quinn::default_runtime().ok_or_else(|| std::io::Error::other("no async runtime for QUIC"))?;
    quinn::Endpoint::new(quinn::EndpointConfig::default(), server, socket, runtime)
}

/// A QUIC endpoint bound to `addr` with large UDP buffers, a server if `server` is given.
pub fn bind_endpoint(addr: SocketAddr, server: Option<quinn::ServerConfig>) -> std::io::Result<quinn::Endpoint> {
    endpoint(bind_udp(addr, UDP_BUFFER_BYTES)?, server)
}
