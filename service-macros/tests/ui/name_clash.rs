#[relay_rpc::relay_service]
pub trait Factory {
    async fn new(name: String) -> u64;
}

fn main() {}
