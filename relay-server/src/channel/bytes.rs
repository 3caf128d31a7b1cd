//! QUIC to QUIC: splicing two streams byte for byte, without copying or parsing payloads.

use super::Relayed;

use quinn::{RecvStream, SendStream, VarInt};
use relay_proto::StreamCode;

use super::{Pipe, Side};

/// The largest chunk moved at once; quinn hands over received buffers without copying.
const MAX_CHUNK: usize = 64 * 1024;

/// Moves bytes both ways until both directions finish, or one end fails. When one end fails the
/// other is cut at once with a code saying who went away, so no one waits for a deadline. Adds
/// the bytes moved to `relayed`.
pub(crate) async fn splice_bytes(caller: Pipe, host: Pipe, relayed: &Relayed) -> Option<Side> {
    let Pipe { send: mut caller_send, recv: mut caller_recv } = caller;
    let Pipe { send: mut host_send, recv: mut host_recv } = host;
    let failed = {
        let mut down = std::pin::pin!(pump(&mut host_recv, Side::Host, &mut caller_send, Side::Caller, relayed));
        let mut up = std::pin::pin!(pump(&mut caller_recv, Side::Caller, &mut host_send, Side::Host, relayed));
        let (mut down_done, mut up_done) = (false, false);
        loop {
            tokio::select! {
                r = &mut down, if !down_done => { down_done = true; if let Err(side) = r { break Some(side) } }
                r = &mut up, if !up_done => { up_done = true; if let Err(side) = r { break Some(side) } }
                else => break None,
            }
        }
    };
    match failed {
        Some(Side::Host) => cut(&mut caller_send, &mut caller_recv, StreamCode::ListenerGone),
        Some(Side::Caller) => cut(&mut host_send, &mut host_recv, StreamCode::CallerGone),
        None => {}
    }
    failed
}

/// Cuts what is left of a stream with `code`.
pub(crate) fn cut(send: &mut SendStream, recv: &mut RecvStream, code: StreamCode) {
    let code = VarInt::from_u64(code.to_u64()).unwrap_or_default();
    let _ = send.reset(code);
    let _ = recv.stop(code);
}

/// Copies `from` into `to` until `from` finishes; on failure names the side that failed.
async fn pump(
    from: &mut RecvStream,
    from_side: Side,
    to: &mut SendStream,
    to_side: Side,
    relayed: &Relayed,
) -> Result<(), Side> {
    loop {
        match from.read_chunk(MAX_CHUNK, true).await {
            Ok(Some(chunk)) => {
                relayed.add(to_side, chunk.bytes.len());
                to.write_chunk(chunk.bytes).await.map_err(|_| to_side)?
            }
            Ok(None) => {
                let _ = to.finish();
                return Ok(());
            }
            Err(_) => return Err(from_side),
        }
    }
}
