//! The incremental frame reader: fed any bytes in any chunking (the first byte of the input
//! chooses the chunk sizes), it gives what the whole-buffer decoder gives, never reads past the
//! frame, never asks for nothing before it is done, and never holds much more than what arrived.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::{self as proto, FrameAssembler};

const MAX: usize = 2048;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else { return };
    let expected = proto::split_frame(input, MAX);
    let mut assembler = FrameAssembler::new(MAX);
    let (mut at, mut step) = (0, 0usize);
    let outcome = loop {
        let wanted = assembler.wanted();
        assert!(wanted >= 1, "wants nothing before the frame is complete");
        // Chunk sizes cycle through 1..=seed+1, bounded by what is wanted and what is left.
        let size = 1 + (step % (usize::from(seed) + 1));
        step += 1;
        let take = size.min(wanted).min(input.len() - at);
        if take == 0 {
            break Ok(None);
        }
        let pushed = assembler.push(&input[at..at + take]);
        at += take;
        assert!(assembler.held() <= 2 * at + 64, "holds {} after {at} bytes", assembler.held());
        match pushed {
            Ok(None) => {}
            done => break done,
        }
    };
    match (expected, outcome) {
        (Ok(Some((body, used))), Ok(Some(got))) => assert!(got == body && at == used),
        (Ok(None), Ok(None)) => assert_eq!(at, input.len()),
        (Err(e), Err(got)) => assert_eq!(e, got),
        (expected, got) => panic!("split_frame gave {expected:?}, the assembler {got:?}"),
    }
});
