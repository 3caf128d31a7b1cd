//! A host's decoding of each frame a caller sends on a channel, whoever the caller (tokens are
//! the relay's business, never what a channel carries): bytes as a tarpc message carrying a
//! request of a contract whose methods take strings, vectors, options, maps, byte strings and
//! nested structs, through relay-rpc's own codec (`contract::decode_request`). No panic, and no
//! more memory held while decoding than a bounded multiple of the frame: lengths a frame claims
//! are never reserved before their bytes are there; and no request taken whose deadline tarpc's
//! server could not keep (it panicked on one more than about two years away).
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use relay_rpc::contract::decode_request;

mod shapes;

use shapes::{Idle, ServeShapes};

/// What decoding may hold beyond a multiple of the frame: serde reserves up to 1 MiB for a
/// sequence before reading its elements, and this contract nests them three deep.
const SLACK: usize = 4 << 20;

/// Bytes held per byte of frame: the largest element here for its smallest encoding (an empty
/// `Vec`, a `None`: one byte for 24), doubled for a vector's growth, with room.
const PER_BYTE: usize = 128;

/// The system allocator, counting the bytes held and the most held since the last reset.
struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let held = HELD.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(held, Ordering::Relaxed);
}

// SAFETY: every call is passed on to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, size) };
        if !q.is_null() {
            HELD.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(size);
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fuzz_target!(|data: &[u8]| {
    let before = HELD.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let decoded = decode_request::<ServeShapes<Idle>>(data);
    let held = PEAK.load(Ordering::Relaxed) - before;
    assert!(held <= SLACK + PER_BYTE * data.len(), "{held} bytes held decoding a frame of {}", data.len());
    let Ok(message) = decoded else { return };
    if let tarpc::ClientMessage::Request(request) = &message {
        assert!(request.context.deadline <= Instant::now() + Duration::from_secs(366 * 24 * 3600));
    }
    let _ = format!("{message:?}");
});
