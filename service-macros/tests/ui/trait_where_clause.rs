#[relay_rpc::relay_service]
pub trait Store
where
    Self: Sized,
{
    async fn get(key: u64) -> u64;
}

fn main() {}
