//! The contract both targets serve: methods taking strings, vectors, options, maps, byte strings
//! and nested structs, and a one-way method.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Point {
    x: i32,
    y: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Kind {
    Open,
    Closed { filled: bool },
    Named(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shape {
    name: String,
    kind: Kind,
    points: Vec<Point>,
    tags: Option<Vec<String>>,
    color: Option<(u8, u8, u8)>,
}

/// A contract with arguments of assorted types.
#[relay_rpc::relay_service]
pub trait Shapes {
    async fn add(a: i64, b: i64) -> i64;
    async fn greet(name: String, greeting: Option<String>) -> String;
    async fn draw(shape: Shape, layers: Vec<Vec<Point>>, scale: f64) -> u64;
    async fn upload(name: String, bytes: Vec<u8>) -> usize;
    async fn tally(counts: BTreeMap<String, u32>, seen: Vec<Option<u64>>) -> u32;
    #[oneway]
    async fn log(lines: Vec<Option<String>>);
}

/// A service that is never called: decoding is what is fuzzed.
#[derive(Debug, Clone)]
pub struct Idle;

impl Shapes for Idle {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }

    async fn greet(&self, name: String, _greeting: Option<String>) -> String {
        name
    }

    async fn draw(&self, _shape: Shape, layers: Vec<Vec<Point>>, _scale: f64) -> u64 {
        layers.len() as u64
    }

    async fn upload(&self, _name: String, bytes: Vec<u8>) -> usize {
        bytes.len()
    }

    async fn tally(&self, counts: BTreeMap<String, u32>, _seen: Vec<Option<u64>>) -> u32 {
        counts.values().sum()
    }

    async fn log(&self, _lines: Vec<Option<String>>) {}
}

