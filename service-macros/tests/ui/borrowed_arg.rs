#[relay_rpc::relay_service]
pub trait Greeter {
    async fn greet(name: &str) -> String;
}

fn main() {}
