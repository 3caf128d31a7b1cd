#[relay_rpc::relay_service]
pub trait Greeter {
    async fn greeting() -> &'static str;
}

fn main() {}
