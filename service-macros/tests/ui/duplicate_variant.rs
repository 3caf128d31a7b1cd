#[relay_rpc::relay_service]
pub trait Store {
    async fn get_x() -> u64;
    #[allow(non_snake_case)]
    async fn getX() -> u64;
}

fn main() {}
