#[relay_rpc::relay_service]
pub trait Store {
    async unsafe fn get(key: u64) -> u64;
    const fn limit() -> u64;
    async extern "C" fn put(key: u64);
}

fn main() {}
