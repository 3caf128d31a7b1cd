#[relay_rpc::relay_service]
pub trait Greeter {
    async fn greet(name: impl Into<String>) -> String;
}

fn main() {}
