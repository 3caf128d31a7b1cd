// 32-bit FNV-1a gives these two names the same wire id.
#[relay_rpc::relay_service]
pub trait Unlucky {
    async fn m763399();
    async fn m1109514();
}

fn main() {}
