#[relay_rpc::relay_service]
pub trait Greeter {
    async fn greet(name: String) -> String {
        format!("hello {name}")
    }
}

fn main() {}
