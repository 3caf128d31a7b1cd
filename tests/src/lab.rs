//! A test contract with assorted types, slow and cancellable methods, a one-way method, and a host
//! name.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// A struct argument.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// X.
    pub x: f64,
    /// Y.
    pub y: f64,
    /// A name.
    pub label: String,
}

/// An enum argument.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Shape {
    /// A circle.
    Circle {
        /// Its center.
        center: Point,
        /// Its radius.
        radius: f64,
    },
    /// A polygon.
    Polygon(Vec<Point>),
    /// Nothing.
    Empty,
}

/// The service's own error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum LabError {
    /// The value was refused.
    #[error("refused {0}")]
    Refused(i64),
}

/// The test contract.
#[relay_rpc::relay_service]
pub trait Lab {
    /// Returns the shape.
    async fn echo_shape(shape: Shape) -> Shape;
    /// Returns the bytes reversed.
    async fn reverse(bytes: Vec<u8>) -> Vec<u8>;
    /// The first even value, if any.
    async fn first_even(values: Vec<i64>) -> Option<i64>;
    /// `Ok(value as u64)` for non-negative values, else the service's own error.
    async fn check(value: i64) -> Result<u64, LabError>;
    /// The host's name.
    async fn whoami() -> String;
    /// Sleeps `ms` and returns it; reports start and cancellation under `tag`.
    async fn sleep(ms: u64, tag: u64) -> u64;
    /// One-way: reports `tag` as noted, answering nothing.
    #[oneway]
    async fn note(tag: u64);
}

/// What a lab host reports to the test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabEvent {
    /// A `sleep` call started.
    Started(u64),
    /// A `sleep` call was dropped before it finished.
    Cancelled(u64),
    /// A `note` call ran.
    Noted(u64),
}

impl LabEvent {
    /// Reads back what `Display` writes (as `test-host` reports its events).
    pub fn parse(line: &str) -> Option<Self> {
        let (kind, tag) = line.trim().split_once(' ')?;
        let tag = tag.parse().ok()?;
        match kind {
            "started" => Some(Self::Started(tag)),
            "cancelled" => Some(Self::Cancelled(tag)),
            "noted" => Some(Self::Noted(tag)),
            _ => None,
        }
    }
}

impl std::fmt::Display for LabEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Started(tag) => write!(f, "started {tag}"),
            Self::Cancelled(tag) => write!(f, "cancelled {tag}"),
            Self::Noted(tag) => write!(f, "noted {tag}"),
        }
    }
}

/// The test implementation.
#[derive(Debug, Clone)]
pub struct LabHost {
    name: String,
    events: mpsc::UnboundedSender<LabEvent>,
}

impl LabHost {
    /// A host named `name`, and the receiver of its events.
    pub fn new(name: &str) -> (Self, mpsc::UnboundedReceiver<LabEvent>) {
        let (events, rx) = mpsc::unbounded_channel();
        (Self { name: name.to_owned(), events }, rx)
    }
}

struct CancelGuard {
    tag: u64,
    events: mpsc::UnboundedSender<LabEvent>,
    finished: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.events.send(LabEvent::Cancelled(self.tag));
        }
    }
}

impl Lab for LabHost {
    async fn echo_shape(&self, shape: Shape) -> Shape {
        shape
    }

    async fn reverse(&self, mut bytes: Vec<u8>) -> Vec<u8> {
        bytes.reverse();
        bytes
    }

    async fn first_even(&self, values: Vec<i64>) -> Option<i64> {
        values.into_iter().find(|v| v % 2 == 0)
    }

    async fn check(&self, value: i64) -> Result<u64, LabError> {
        u64::try_from(value).map_err(|_| LabError::Refused(value))
    }

    async fn whoami(&self) -> String {
        self.name.clone()
    }

    async fn sleep(&self, ms: u64, tag: u64) -> u64 {
        let _ = self.events.send(LabEvent::Started(tag));
        let mut guard = CancelGuard { tag, events: self.events.clone(), finished: false };
        tokio::time::sleep(Duration::from_millis(ms)).await;
        guard.finished = true;
        ms
    }

    async fn note(&self, tag: u64) {
        let _ = self.events.send(LabEvent::Noted(tag));
    }
}
