//! Joining a TCP connection to a stream channel, both ways, half-close included.

use std::io;

use tokio::net::TcpStream;

use relay_rpc::stream::{MAX_CHUNK, RelayStream};

/// Copies between `tcp` and `stream` both ways until both directions ended: the end of one
/// side's data shuts the other side's sending direction down, and copying goes on the other
/// way (`tokio::io::copy_bidirectional`). Returns the bytes copied from TCP to the stream and
/// back.
///
/// When either side fails, both are cut: the stream is dropped without its end-of-stream mark
/// (its peer's reads fail) and the TCP connection is reset rather than closed, so that neither
/// end mistakes a broken connection for a complete one.
pub(super) async fn pipe(mut tcp: TcpStream, mut stream: RelayStream) -> io::Result<(u64, u64)> {
    let _ = tcp.set_nodelay(true);
    let copied = tokio::io::copy_bidirectional_with_sizes(&mut tcp, &mut stream, MAX_CHUNK, MAX_CHUNK).await;
    if copied.is_err() {
        reset(&tcp);
    }
    copied
}

/// Makes dropping `tcp` reset the connection instead of closing it.
pub(super) fn reset(tcp: &TcpStream) {
    let _ = tcp.set_zero_linger();
}
