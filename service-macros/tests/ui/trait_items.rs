#[relay_rpc::relay_service]
pub trait Store {
    type Key;
    const LIMIT: usize;
    async fn get(key: u64) -> u64;
}

fn main() {}
