//! No file-descriptor or task leak: 10,000 channels opened and closed through the relay leave the
//! process (relay, host and caller all in it) with the counts it started with.

use std::time::Duration;

use calculator::{Calc, CalculatorClient, ServeCalculator};
use relay_rpc::CallContext;
use relay_tests::{TestRelay, alive_tasks, open_fds};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_channel_cycles_leak_no_fds_or_tasks() {
    let _alone = crate::ALONE.lock().await;
    // Opens as fast as the machine goes: no rate limit in the way.
    let relay = TestRelay::start_with(|c| c.channel_opens_per_sec = 1_000_000).await;
    let host = relay.host().await;
    tokio::spawn(host.listen("calc").await.unwrap().serve(ServeCalculator::new(Calc)));
    let caller = relay.caller().await;
    let cycle = |i: i64| {
        let caller = caller.clone();
        async move {
            let calc = CalculatorClient::connect(&caller, "calc").await.unwrap();
            assert_eq!(calc.add(CallContext::with_timeout(Duration::from_secs(10)), i, 1).await.unwrap(), i + 1);
        }
    };
    // Warm up, then take the baseline.
    for i in 0..100 {
        cycle(i).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (fds, tasks) = (open_fds(), alive_tasks());

    let mut running = tokio::task::JoinSet::new();
    for i in 0..10_000 {
        running.spawn(cycle(i));
        if running.len() >= 32 {
            running.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(done) = running.join_next().await {
        done.unwrap();
    }

    // Closed channels wind down in the background: give them a moment, then compare.
    let settled = relay_tests::eventually(Duration::from_secs(10), || alive_tasks() <= tasks + 2).await;
    assert!(settled, "tasks: {tasks} before, {} after", alive_tasks());
    let settled = relay_tests::eventually(Duration::from_secs(10), || open_fds() <= fds + 2).await;
    assert!(settled, "fds: {fds} before, {} after", open_fds());
}
