#[derive(serde::Serialize, serde::Deserialize)]
pub struct Token(u64);

#[relay_rpc::relay_service]
pub trait Bank {
    /// Fine: an idempotent call is sent again with copies of its arguments.
    #[idempotent]
    async fn balance(account: String) -> u64;
    /// Fine: a one-way call is never sent again.
    #[oneway]
    #[idempotent]
    async fn note(token: Token);
    /// Not fine: an idempotent method's arguments must be `Clone`.
    #[idempotent]
    async fn spend(account: String, token: Token) -> u64;
}

fn main() {}
