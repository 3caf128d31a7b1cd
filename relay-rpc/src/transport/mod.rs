//! Transports: dialing a relay and turning its connection into channels.
//!
//! One file per transport; each hands the layers above the same [`Channel`](crate::Channel).

pub(crate) mod quic;
