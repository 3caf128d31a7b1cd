#[relay_rpc::relay_service]
pub trait Geometry {
    async fn length((x, y): (f64, f64)) -> f64;
}

fn main() {}
