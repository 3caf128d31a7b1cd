#[relay_rpc::relay_service]
pub trait Logger {
    #[inline]
    async fn log(line: String);
    #[cfg(feature = "extra")]
    async fn extra();
    #[oneway]
    #[oneway]
    async fn twice();
    #[idempotent(always)]
    async fn get() -> u64;
    /// Fine: docs, lints, `#[oneway]` and `#[idempotent]`.
    #[oneway]
    #[idempotent]
    #[allow(clippy::unused_unit)]
    #[deprecated]
    async fn fine() -> ();
}

fn main() {}
