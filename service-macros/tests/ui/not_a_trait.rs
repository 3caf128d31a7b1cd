#[relay_rpc::relay_service]
pub struct Store;

fn main() {}
