//! Contract evolution through a real relay, over QUIC and over `wss://`: three versions of one
//! contract, with one name. A host may add methods anywhere (v2 adds one first and one in the
//! middle) and old callers keep working; a new caller on an old host can call what both know and
//! gets `CallError::UnknownMethod` for the rest; a method whose signature changed (v3) is refused
//! when the channel opens, naming the contract and the method; another contract name is refused.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use relay_rpc::{CallContext, CallError, Connection, OpenError};
use relay_tests::{TestRelay, eventually};
use serde::{Deserialize, Serialize};

const NAME: &str = "evolution.Inventory";

fn ctx() -> CallContext {
    CallContext::with_timeout(Duration::from_secs(20))
}

/// The service's own error, from v2 on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortage {
    /// How many there were.
    pub available: u64,
}

mod v1 {
    #[relay_rpc::relay_service(name = "evolution.Inventory")]
    pub trait Inventory {
        async fn count(item: String) -> u64;
        async fn add(item: String, n: u64) -> u64;
        #[oneway]
        async fn note(line: String);
    }
}

mod v2 {
    use super::Shortage;

    #[relay_rpc::relay_service(name = "evolution.Inventory")]
    pub trait Inventory {
        /// New, and first: every later method moves one place down.
        async fn version() -> u32;
        async fn count(item: String) -> u64;
        /// New, in the middle.
        async fn remove(item: String, n: u64) -> Result<u64, Shortage>;
        async fn add(item: String, n: u64) -> u64;
        #[oneway]
        async fn note(line: String);
    }
}

mod v3 {
    #[relay_rpc::relay_service(name = "evolution.Inventory")]
    pub trait Inventory {
        /// Changed: `n` is signed now.
        async fn add(item: String, n: i64) -> u64;
        async fn count(item: String) -> u64;
    }
}

mod other {
    #[relay_rpc::relay_service(name = "evolution.Warehouse")]
    pub trait Inventory {
        async fn count(item: String) -> u64;
    }
}

/// One store behind every version of the contract.
#[derive(Debug, Default)]
struct Store {
    items: Mutex<HashMap<String, u64>>,
    notes: Mutex<Vec<String>>,
}

impl Store {
    fn count(&self, item: &str) -> u64 {
        self.items.lock().unwrap().get(item).copied().unwrap_or(0)
    }

    fn add(&self, item: String, n: u64) -> u64 {
        let mut items = self.items.lock().unwrap();
        let count = items.entry(item).or_default();
        *count += n;
        *count
    }

    fn notes(&self) -> Vec<String> {
        self.notes.lock().unwrap().clone()
    }
}

#[derive(Debug, Clone, Default)]
struct Shared(std::sync::Arc<Store>);

impl v1::Inventory for Shared {
    async fn count(&self, item: String) -> u64 {
        self.0.count(&item)
    }

    async fn add(&self, item: String, n: u64) -> u64 {
        self.0.add(item, n)
    }

    async fn note(&self, line: String) {
        self.0.notes.lock().unwrap().push(line);
    }
}

impl v2::Inventory for Shared {
    async fn version(&self) -> u32 {
        2
    }

    async fn count(&self, item: String) -> u64 {
        self.0.count(&item)
    }

    async fn remove(&self, item: String, n: u64) -> Result<u64, Shortage> {
        let mut items = self.0.items.lock().unwrap();
        let count = items.entry(item).or_default();
        *count = count.checked_sub(n).ok_or(Shortage { available: *count })?;
        Ok(*count)
    }

    async fn add(&self, item: String, n: u64) -> u64 {
        self.0.add(item, n)
    }

    async fn note(&self, line: String) {
        self.0.notes.lock().unwrap().push(format!("v2: {line}"));
    }
}

impl v3::Inventory for Shared {
    async fn add(&self, item: String, n: i64) -> u64 {
        self.0.add(item, n.unsigned_abs())
    }

    async fn count(&self, item: String) -> u64 {
        self.0.count(&item)
    }
}

impl other::Inventory for Shared {
    async fn count(&self, item: String) -> u64 {
        self.0.count(&item)
    }
}

/// The two transports: (label, URL).
fn transports(relay: &TestRelay) -> [(&'static str, String); 2] {
    [("quic", relay.url.clone()), ("wss", relay.ws_url.clone())]
}

/// A host on `url` serving `dispatcher` on `address`; keep the returned host alive. (It keeps
/// serving after it is dropped, so each transport's case uses addresses of its own.)
async fn serve<D: relay_rpc::contract::Dispatch>(
    relay: &TestRelay,
    url: &str,
    address: &str,
    dispatcher: D,
) -> relay_rpc::Host {
    let host = relay.host_on(url).await;
    tokio::spawn(host.listen(address).await.unwrap().serve(dispatcher));
    host
}

#[tokio::test]
async fn a_host_that_added_methods_first_and_in_the_middle_serves_old_callers() {
    let relay = TestRelay::start().await;
    for (transport, url) in transports(&relay) {
        let store = Shared::default();
        let address = format!("inventory-{transport}");
        let _host = serve(&relay, &url, &address, v2::ServeInventory::new(store.clone())).await;
        let caller: Connection = relay.caller_on(&url).await;
        let old = v1::InventoryClient::connect(&caller, &address).await.unwrap();

        assert_eq!(old.add(ctx(), "bolt".into(), 5).await.unwrap(), 5, "{transport}");
        assert_eq!(old.add(ctx(), "bolt".into(), 2).await.unwrap(), 7, "{transport}");
        assert_eq!(old.count(ctx(), "bolt".into()).await.unwrap(), 7, "{transport}");
        assert_eq!(old.count(ctx(), "nut".into()).await.unwrap(), 0, "{transport}");
        old.note(ctx(), "from v1".into()).await.unwrap();
        assert!(eventually(Duration::from_secs(5), || store.0.notes() == ["v2: from v1"]).await, "{transport}");

        // A v2 caller of the same host sees the same store, and the new methods.
        let new = v2::InventoryClient::connect(&caller, &address).await.unwrap();
        assert_eq!(new.version(ctx()).await.unwrap(), 2, "{transport}");
        assert_eq!(new.remove(ctx(), "bolt".into(), 3).await.unwrap(), Ok(4), "{transport}");
        assert_eq!(new.remove(ctx(), "bolt".into(), 9).await.unwrap(), Err(Shortage { available: 4 }), "{transport}");
        assert_eq!(old.count(ctx(), "bolt".into()).await.unwrap(), 4, "{transport}");
    }
}

#[tokio::test]
async fn a_new_caller_on_an_old_host_calls_shared_methods_and_gets_unknown_method_for_the_rest() {
    let relay = TestRelay::start().await;
    for (transport, url) in transports(&relay) {
        let store = Shared::default();
        let address = format!("inventory-{transport}");
        let _host = serve(&relay, &url, &address, v1::ServeInventory::new(store.clone())).await;
        let caller = relay.caller_on(&url).await;
        let new = v2::InventoryClient::connect(&caller, &address).await.unwrap();

        assert_eq!(new.add(ctx(), "gear".into(), 3).await.unwrap(), 3, "{transport}");
        assert_eq!(new.count(ctx(), "gear".into()).await.unwrap(), 3, "{transport}");

        let err = new.version(ctx()).await.unwrap_err();
        assert!(
            matches!(&err, CallError::UnknownMethod { contract, method } if contract == NAME && method == "version"),
            "{transport}: {err:?}"
        );
        assert_eq!(err.to_string(), "the listener's `evolution.Inventory` has no method `version`");
        let err = new.remove(ctx(), "gear".into(), 1).await.unwrap_err();
        assert!(
            matches!(&err, CallError::UnknownMethod { contract, method } if contract == NAME && method == "remove"),
            "{transport}: {err:?}"
        );

        // The channel is still good, and nothing was removed.
        assert_eq!(new.count(ctx(), "gear".into()).await.unwrap(), 3, "{transport}");
        new.note(ctx(), "from v2".into()).await.unwrap();
        assert!(eventually(Duration::from_secs(5), || store.0.notes() == ["from v2"]).await, "{transport}");
    }
}

#[tokio::test]
async fn a_changed_signature_is_refused_at_open_naming_contract_and_method() {
    let relay = TestRelay::start().await;
    for (transport, url) in transports(&relay) {
        let (at_v2, at_v3) = (format!("inventory-v2-{transport}"), format!("inventory-v3-{transport}"));
        let _v2_host = serve(&relay, &url, &at_v2, v2::ServeInventory::new(Shared::default())).await;
        let _v3_host = serve(&relay, &url, &at_v3, v3::ServeInventory::new(Shared::default())).await;
        let caller = relay.caller_on(&url).await;

        // A v3 caller on a v2 host, and a v1 caller on a v3 host: `add` differs.
        for err in [
            v3::InventoryClient::connect(&caller, &at_v2).await.unwrap_err(),
            v1::InventoryClient::connect(&caller, &at_v3).await.unwrap_err(),
        ] {
            match err {
                OpenError::ContractMismatch(detail) => {
                    assert!(detail.contains("`evolution.Inventory.add`"), "{transport}: {detail}");
                    assert!(!detail.contains("count"), "{transport}: only `add` differs: {detail}");
                }
                other => panic!("{transport}: expected a contract mismatch, got {other:?}"),
            }
        }
        // A v3 host serves v3 callers.
        let v3 = v3::InventoryClient::connect(&caller, &at_v3).await.unwrap();
        assert_eq!(v3.add(ctx(), "cog".into(), -4).await.unwrap(), 4, "{transport}");
    }
}

#[tokio::test]
async fn another_contract_name_is_refused_at_open() {
    let relay = TestRelay::start().await;
    for (transport, url) in transports(&relay) {
        let address = format!("warehouse-{transport}");
        let _host = serve(&relay, &url, &address, other::ServeInventory::new(Shared::default())).await;
        let caller = relay.caller_on(&url).await;
        match v1::InventoryClient::connect(&caller, &address).await.unwrap_err() {
            OpenError::ContractMismatch(detail) => {
                assert!(
                    detail.contains("`evolution.Warehouse`") && detail.contains("`evolution.Inventory`"),
                    "{detail}"
                )
            }
            other => panic!("{transport}: expected a contract mismatch, got {other:?}"),
        }
    }
}
