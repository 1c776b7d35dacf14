//! Real applications' read-side LDAP sequences, replayed against the demo directory.

mod common;

use common::replays::*;
use common::*;

macro_rules! replay_test {
    ($name:ident, $replay:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let demo = start_demo_full().await;
            let fx = demo.fixture();
            tokio::time::timeout(std::time::Duration::from_secs(120), $replay(&demo.url, &fx))
                .await
                .expect("replay finishes in time");
            demo.running.shutdown().await;
        }
    };
}

replay_test!(nextcloud, replay_nextcloud);
replay_test!(gitea, replay_gitea);
replay_test!(grafana, replay_grafana);
replay_test!(jenkins, replay_jenkins);
replay_test!(sssd, replay_sssd);
replay_test!(keycloak, replay_keycloak);
replay_test!(foreman_net_ldap, replay_foreman);
