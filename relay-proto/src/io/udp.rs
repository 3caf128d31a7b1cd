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

/// The largest UDP payload a QUIC endpoint of ours sends or takes, when the path allows it.
///
/// Every packet costs the same work in user space whatever its size (a header to protect, an
/// AEAD call, a place in the sent-packet map, an ACK), so on a path that carries large datagrams
/// (loopback, jumbo-frame LANs) fewer, larger packets move bulk data for much less CPU. Paths are
/// not trusted to carry them: connections start at QUIC's 1,200 bytes and find the path's size
/// by probing ([`mtu_discovery`]), so on the internet they stay at the usual 1,452.
///
/// Why not 9,000 or 65,000: quinn hands the kernel up to ten packets at once as one
/// segmented send (`UDP_SEGMENT`), and the kernel refuses a send whose total exceeds an IP
/// packet's 65,535 bytes. Ten packets of this size with their UDP and IP headers fit (65,028
/// bytes with IPv4's, 65,008 with IPv6's); ten of 9,000 would not, and every full batch would be
/// lost.
pub const MAX_UDP_PAYLOAD: u16 = 6_500;

/// Path MTU discovery up to [`MAX_UDP_PAYLOAD`]: what hosts, callers and the relay give their
/// QUIC connections, so that each finds out whether its path carries large datagrams.
///
/// ```
/// let mut transport = quinn::TransportConfig::default();
/// transport.mtu_discovery_config(Some(relay_proto::io::mtu_discovery()));
/// ```
pub fn mtu_discovery() -> quinn::MtuDiscoveryConfig {
    let mut discovery = quinn::MtuDiscoveryConfig::default();
    discovery.upper_bound(MAX_UDP_PAYLOAD);
    discovery
}

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

/// A QUIC endpoint on `socket`, a server if `server` is given, that takes datagrams of up to
/// [`MAX_UDP_PAYLOAD`] bytes (peers find by probing whether their path carries them).
pub fn endpoint(socket: UdpSocket, server: Option<quinn::ServerConfig>) -> std::io::Result<quinn::Endpoint> {
    let runtime = quinn::default_runtime().ok_or_else(|| std::io::Error::other("no async runtime for QUIC"))?;
    let mut config = quinn::EndpointConfig::default();
    config.max_udp_payload_size(MAX_UDP_PAYLOAD).map_err(std::io::Error::other)?;
    quinn::Endpoint::new(config, server, socket, runtime)
}

/// A QUIC endpoint bound to `addr` with large UDP buffers, a server if `server` is given.
pub fn bind_endpoint(addr: SocketAddr, server: Option<quinn::ServerConfig>) -> std::io::Result<quinn::Endpoint> {
    endpoint(bind_udp(addr, UDP_BUFFER_BYTES)?, server)
}
