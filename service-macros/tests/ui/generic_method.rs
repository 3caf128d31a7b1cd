#[relay_rpc::relay_service]
pub trait Store {
    async fn get<T>(key: String) -> T;
}

fn main() {}
