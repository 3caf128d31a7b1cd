// A method without `async`. The stub trait keeps the `impl` below from adding more errors.
#[relay_rpc::relay_service]
pub trait Calculator {
    async fn add(a: i64, b: i64) -> i64;
    fn sub(a: i64, b: i64) -> i64;
}

struct Calc;

impl Calculator for Calc {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    async fn sub(&self, a: i64, b: i64) -> i64 {
        a - b
    }
}

fn main() {}
