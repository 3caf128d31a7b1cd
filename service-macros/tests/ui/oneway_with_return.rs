#[relay_rpc::relay_service]
pub trait Logger {
    /// Fine: one-way methods return nothing.
    #[oneway]
    async fn log(line: String);
    /// Fine: `()` is nothing.
    #[oneway]
    async fn flush() -> ();
    /// Not fine: the caller does not wait for an answer.
    #[oneway]
    async fn count(line: String) -> u64;
}

fn main() {}
