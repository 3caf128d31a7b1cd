#[relay_rpc::relay_service(nmae = "example.Store")]
pub trait Store {
    async fn get(key: u64) -> u64;
}

fn main() {}
