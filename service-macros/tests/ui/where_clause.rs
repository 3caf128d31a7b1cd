#[relay_rpc::relay_service]
pub trait Store {
    async fn get(key: String) -> u64
    where
        u64: Copy;
}

fn main() {}
