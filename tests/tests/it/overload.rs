//! Overload protection: past its limits the broker refuses work at once
//! instead of queueing it, and serves again when the load is gone.

use brooklet_broker::Config;
use brooklet_proto::v1 as pb;
use brooklet_tests::{DEADLINE, TestBroker, eventually, record};
use tonic::Code;

use crate::metrics::{get, parse_exposition};
use tonic::transport::Channel;

fn long_poll() -> pb::FetchRequest {
    pb::FetchRequest { topic: "t".into(), partition: 0, offset: 0, max_bytes: 0, max_wait_ms: 60_000 }
}

#[tokio::test]
async fn a_connection_past_its_request_limit_is_answered_resource_exhausted() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.core.limits.max_requests_per_connection = 2;
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let broker = TestBroker::start_with(config).await;
    let metrics = broker.metrics_addr().expect("metrics are served");
    broker.create_topic("t", 1).await;

    // Two long polls occupy the connection's two places.
    let polls: Vec<_> = (0..2)
        .map(|_| {
            let mut consumer = broker.consumer();
            tokio::spawn(async move { consumer.fetch(long_poll()).await })
        })
        .collect();
    let admin = broker.admin();
    let status = eventually("a third request to be refused", || {
        let mut admin = admin.clone();
        async move { admin.list_topics(pb::ListTopicsRequest {}).await.err() }
    })
    .await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("--max-requests-per-connection"), "{status:?}");
    let (_, _, body) = get(metrics, "/metrics").await;
    let shed = parse_exposition(&body)["brooklet_requests_shed_total"];
    assert!(shed >= 1.0, "the refusal is counted:\n{body}");

    // Data, sent over another connection, ends the polls.
    let other = Channel::from_shared(broker.endpoint()).unwrap().connect().await.unwrap();
    pb::producer_service_client::ProducerServiceClient::new(other)
        .produce(pb::ProduceRequest {
            topic: "t".into(),
            records: vec![record("x", Some(0))],
            ..Default::default()
        })
        .await
        .unwrap();
    for poll in polls {
        tokio::time::timeout(DEADLINE, poll).await.expect("the polls end").unwrap().unwrap();
    }
    broker.admin().list_topics(pb::ListTopicsRequest {}).await.expect("served again");
    broker.shutdown().await;
}

#[tokio::test]
async fn connections_past_the_limit_are_closed_until_one_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.core.limits.max_connections = 2;
    let broker = TestBroker::start_with(config).await;
    // The harness's channel holds one place, this one the other.
    let first = Channel::from_shared(broker.endpoint()).unwrap().connect().await.unwrap();
    let mut first_admin = pb::admin_service_client::AdminServiceClient::new(first);
    first_admin.list_topics(pb::ListTopicsRequest {}).await.unwrap();

    let list_on_a_new_connection = || {
        let endpoint = broker.endpoint();
        async move {
            let channel = Channel::from_shared(endpoint).unwrap().connect_lazy();
            pb::admin_service_client::AdminServiceClient::new(channel)
                .list_topics(pb::ListTopicsRequest {})
                .await
        }
    };
    let err = list_on_a_new_connection().await.expect_err("no place for a third connection");
    assert!(
        matches!(err.code(), Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal),
        "{err:?}"
    );

    // When a connection goes, a new one is served.
    drop(first_admin);
    eventually("a new connection to be served", || async { list_on_a_new_connection().await.ok() }).await;
    broker.shutdown().await;
}
