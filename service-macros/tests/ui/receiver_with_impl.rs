// A `self` receiver. The stub trait keeps the `impl` below from adding more errors.
#[relay_rpc::relay_service]
pub trait Counter {
    async fn get(self) -> u64;
}

struct Fixed;

impl Counter for Fixed {
    async fn get(&self) -> u64 {
        7
    }
}

fn main() {}
