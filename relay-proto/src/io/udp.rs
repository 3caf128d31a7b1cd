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
/// by probing ([`transport_config`]), so on the internet they stay at the usual 1,452.
///
/// Why not 9,000 or 65,000: quinn hands the kernel up to ten packets at once as one
/// segmented send (`UDP_SEGMENT`), and the kernel refuses a send whose total exceeds an IP
/// packet's 65,535 bytes. Ten packets of this size with their UDP and IP headers fit (65,028
/// bytes with IPv4's, 65,008 with IPv6's); ten of 9,000 would not, and every full batch would be
/// lost.
pub const MAX_UDP_PAYLOAD: u16 = 6_500;

/// The transport settings every QUIC connection of ours starts from (hosts, callers and the
/// relay add their limits and timers): path MTU discovery up to [`MAX_UDP_PAYLOAD`].
///
/// Not in it, measured and left out: the ACK frequency extension (peers asked to acknowledge
/// every ninth packet instead of every second). On loopback it took 10–20% more calls per second
/// and 15–20% less relay CPU per call over QUIC, but on a lossy path (1% loss, 40 ms RTT) calls
/// beside a bulk transfer waited longer (p99 1.75 against 1.31 times the idle p99) and the
/// transfer slowed by a tenth: acknowledgements held back while the congestion window is small
/// slow recovery down. quinn fixes the request for a connection's life, whatever its path.
///
/// ```
/// let mut transport = relay_proto::io::transport_config();
/// transport.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
/// ```
pub fn transport_config() -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport.mtu_discovery_config(Some(mtu_discovery()));
    transport
}

/// Path MTU discovery up to [`MAX_UDP_PAYLOAD`], so that each connection finds out whether its
/// path carries large datagrams.
fn mtu_discovery() -> quinn::MtuDiscoveryConfig {
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
