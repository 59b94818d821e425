//! The API driven in-process (tower's `oneshot`) over a real core in a
//! temporary directory.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use brooklet_core::{
    Acl, Authorizer, Core, CoreConfig, Header, NewRecord, Operation, PatternType, Permission, ResourceType,
};
use brooklet_metrics::Metrics;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::{Console, ConsoleOptions, ListenerInfo};

struct Fixture {
    core: Core,
    console: Console,
    _tasks: TaskTracker,
    _dir: tempfile::TempDir,
}

async fn fixture(auth_required: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let tasks = TaskTracker::new();
    let core = Core::open(&CoreConfig::new(dir.path()), None, &tasks).unwrap();
    if auth_required {
        core.users().add("admin", "admin-secret").await.unwrap();
        core.users().add("alice", "alice-secret").await.unwrap();
    }
    let authorizer = Authorizer::new(core.acls().clone(), auth_required, &["admin".to_owned()]);
    let console = Console::new(ConsoleOptions {
        core: core.clone(),
        metrics: Metrics::new(),
        authorizer,
        auth_required,
        listeners: vec![ListenerInfo { name: "grpc", addr: "127.0.0.1:7070".parse().unwrap(), tls: false }],
    });
    Fixture { core, console, _tasks: tasks, _dir: dir }
}

/// A browser: its cookie and CSRF token once it has a session.
#[derive(Default)]
struct Client {
    cookie: Option<String>,
    csrf: Option<String>,
}

struct Answer {
    status: StatusCode,
    body: String,
    set_cookie: Option<String>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

impl Client {
    async fn call(&mut self, f: &Fixture, method: &str, uri: &str, form: &str, csrf: bool) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        if csrf && let Some(t) = &self.csrf {
            req = req.header("x-csrf-token", t);
        }
        let req =
            req.header("content-type", "application/x-www-form-urlencoded").body(Body::from(form.to_owned()));
        let response = f.console.router().oneshot(req.unwrap()).await.unwrap();
        let status = response.status();
        let set_cookie = response.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_owned());
        let body =
            String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        if let Some(c) = &set_cookie {
            self.cookie = c.split(';').next().map(str::to_owned);
        }
        let answer = Answer { status, body, set_cookie };
        if status.is_success() && uri.ends_with("/session") || uri.ends_with("/login") && status.is_success()
        {
            self.csrf = answer.json()["csrf"].as_str().map(str::to_owned);
        }
        answer
    }

    async fn get(&mut self, f: &Fixture, uri: &str) -> Answer {
        self.call(f, "GET", uri, "", false).await
    }

    async fn post(&mut self, f: &Fixture, uri: &str, form: &str) -> Answer {
        self.call(f, "POST", uri, form, true).await
    }

    async fn session(f: &Fixture) -> Client {
        let mut c = Client::default();
        let a = c.get(f, "/console/api/session").await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        c
    }
}

fn record(key: Option<&str>, value: &[u8]) -> NewRecord {
    NewRecord {
        partition: Some(0),
        key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        value: Some(Bytes::copy_from_slice(value)),
        ..NewRecord::default()
    }
}

#[tokio::test]
async fn the_page_and_overview_are_served() {
    let f = fixture(false).await;
    let mut c = Client::default();
    let page = c.get(&f, "/console/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<script src=\"console.js\"></script>"), "{}", page.body);
    let redirect = c.get(&f, "/console").await;
    assert_eq!(redirect.status, StatusCode::FOUND);
    assert_eq!(c.get(&f, "/console/vendor/uplot/LICENSE").await.status, StatusCode::OK);
    let o = c.get(&f, "/console/api/overview").await;
    assert_eq!(o.status, StatusCode::OK, "{}", o.body);
    let o = o.json();
    assert_eq!(o["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(o["listeners"][0]["name"], "grpc");
    assert_eq!(o["listeners"][0]["tls"], false);
    assert!(o["disk_free_bytes"].as_u64().is_some(), "{o}");
    assert_eq!(o["data_dir"], f.core.data_dir().display().to_string());
    let h = c.get(&f, "/console/api/history").await.json();
    assert_eq!(h["interval_ms"], 1000);
    assert!(h["records_in"].is_array());
    let missing = c.get(&f, "/console/api/nothing").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error(), "no such console API");
}

#[tokio::test]
async fn topics_are_listed_a_page_at_a_time() {
    let f = fixture(false).await;
    for i in 0..25 {
        f.core.log().create_topic(&format!("orders-{i:02}"), 2, BTreeMap::new()).await.unwrap();
    }
    f.core.log().create_topic("payments", 1, BTreeMap::new()).await.unwrap();
    let mut c = Client::default();
    let all = c.get(&f, "/console/api/topics").await.json();
    assert_eq!(all["total"], 26);
    let page = c.get(&f, "/console/api/topics?filter=orders&offset=20&limit=10").await.json();
    assert_eq!(page["total"], 25);
    let names: Vec<&str> =
        page["items"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["orders-20", "orders-21", "orders-22", "orders-23", "orders-24"]);
    assert_eq!(page["items"][0]["partitions"], 2);
    let too_many = c.get(&f, "/console/api/topics?limit=5000").await;
    assert_eq!(too_many.status, StatusCode::BAD_REQUEST);
    assert_eq!(too_many.error(), "invalid limit: 5000 is not in 1..=1000");
    let not_a_number = c.get(&f, "/console/api/topics?offset=x").await;
    assert_eq!(not_a_number.error(), "invalid offset: `x` is not a number");
    let missing = c.get(&f, "/console/api/topics/nope").await;
    assert_eq!(
        (missing.status, missing.error()),
        (StatusCode::NOT_FOUND, "topic `nope` does not exist".to_owned())
    );
}

#[tokio::test]
async fn records_are_rendered_as_text_json_or_hex_and_never_as_markup() {
    let f = fixture(false).await;
    f.core.log().create_topic("t", 1, BTreeMap::new()).await.unwrap();
    let mut with_header = record(Some("k2"), br#"{"a":[1,2],"b":"x"}"#);
    with_header.headers = vec![Header { name: "trace".into(), value: Bytes::from_static(b"\x00\x01") }];
    let records = vec![
        record(Some("k1"), "héllo".as_bytes()),
        with_header,
        record(None, &[0xff, 0x00, 0x10]),
        record(Some("k1"), b"<script>alert(1)</script>"),
    ];
    f.core.log().produce("t", records, None, None).await.unwrap();
    let mut c = Client::default();
    let a = c.get(&f, "/console/api/topics/t/records?partition=0&offset=0").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(!a.body.contains("<script>"), "markup characters are escaped in the JSON text: {}", a.body);
    let r = a.json();
    let recs = r["records"].as_array().unwrap();
    assert_eq!(recs.len(), 4);
    assert_eq!(recs[0]["value"]["kind"], "utf8");
    assert_eq!(recs[0]["value"]["text"], "héllo");
    assert_eq!(recs[0]["key"]["text"], "k1");
    assert_eq!(recs[1]["value"]["kind"], "json");
    assert_eq!(recs[1]["headers"][0]["name"], "trace");
    assert_eq!(recs[1]["headers"][0]["value"]["kind"], "hex");
    assert_eq!(recs[1]["headers"][0]["value"]["text"], "0001");
    assert_eq!(recs[2]["key"], Value::Null);
    assert_eq!(recs[2]["value"]["kind"], "hex");
    assert_eq!(recs[2]["value"]["text"], "ff0010");
    assert_eq!(recs[3]["value"]["text"], "<script>alert(1)</script>", "returned as data");
    assert_eq!(r["high_watermark"], 4);
    assert_eq!(r["next_offset"], 4);

    let latest = c.get(&f, "/console/api/topics/t/records?latest=2").await.json();
    let offsets: Vec<u64> =
        latest["records"].as_array().unwrap().iter().map(|r| r["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, [2, 3]);
    let by_key = c.get(&f, "/console/api/topics/t/records?offset=0&key=k1").await.json();
    let offsets: Vec<u64> =
        by_key["records"].as_array().unwrap().iter().map(|r| r["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, [0, 3]);
    let by_time = c.get(&f, "/console/api/topics/t/records?time_ms=0&limit=1").await.json();
    assert_eq!(by_time["records"][0]["offset"], 0);
    assert_eq!(by_time["next_offset"], 1, "the next page starts after the one record shown");
    let bad = c.get(&f, "/console/api/topics/t/records?partition=1").await;
    assert_eq!(bad.error(), "invalid partition: 1 is not in 0..=0");
    let both = c.get(&f, "/console/api/topics/t/records?offset=0&latest=3").await;
    assert_eq!(both.error(), "invalid offset: give one of offset, time_ms and latest");
}

#[tokio::test]
async fn a_key_alone_finds_its_records_in_the_partition_it_maps_to() {
    let f = fixture(false).await;
    f.core.log().create_topic("wide", 8, BTreeMap::new()).await.unwrap();
    let keyed = NewRecord { partition: None, ..record(Some("user-7"), b"v") };
    let (appended, _) = f.core.log().produce("wide", vec![keyed], None, None).await.unwrap();
    let expected = brooklet_partitioner::partition_for_key(b"user-7", 8);
    assert_eq!(appended[0].partition, expected);
    let mut c = Client::default();
    let found = c.get(&f, "/console/api/topics/wide/records?key=user-7").await.json();
    assert_eq!(found["partition"], expected);
    assert_eq!(found["records"][0]["value"]["text"], "v");
    let unkeyed = c.get(&f, "/console/api/topics/wide/records").await.json();
    assert_eq!(unkeyed["partition"], 0, "without a key or a partition, partition 0");
}

#[test]
fn the_page_never_writes_html_from_data() {
    let js = crate::assets::CONSOLE_JS;
    for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("] {
        assert!(!js.contains(sink), "console.js uses {sink}");
    }
    assert!(js.contains("textContent") && js.contains("createTextNode"));
}

#[tokio::test]
async fn changes_need_the_sessions_csrf_token() {
    let f = fixture(false).await;
    let mut stranger = Client::default();
    let refused = stranger.post(&f, "/console/api/topics", "name=t&partitions=2").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let mut c = Client::session(&f).await;
    assert!(c.set_cookie_attributes_are_strict(&f).await);
    let no_token = c.call(&f, "POST", "/console/api/topics", "name=t&partitions=2", false).await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    assert!(no_token.error().starts_with("invalid x-csrf-token"), "{}", no_token.error());
    assert!(f.core.log().list_topics().is_empty(), "nothing was created");
    let created = c.post(&f, "/console/api/topics", "name=t&partitions=2&config=retention.ms%3D60000").await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let again = c.post(&f, "/console/api/topics", "name=t").await;
    assert_eq!((again.status, again.error()), (StatusCode::CONFLICT, "topic `t` already exists".to_owned()));
    let too_many = c.post(&f, "/console/api/topics", "name=u&partitions=100000").await;
    assert!(
        too_many.error().starts_with("invalid partitions: 100000 is not in 1..="),
        "{}",
        too_many.error()
    );

    let sent = c
        .post(&f, "/console/api/topics/t/records", "partition=1&key=k&value=v&header_name=h&header_value=x")
        .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    assert_eq!((sent.json()["partition"].as_u64(), sent.json()["offset"].as_u64()), (Some(1), Some(0)));
    let read = c.get(&f, "/console/api/topics/t/records?partition=1").await.json();
    assert_eq!(read["records"][0]["headers"][0]["value"]["text"], "x");

    let altered = c.post(&f, "/console/api/topics/t/config", "set=retention.ms%3D120000").await;
    assert_eq!(altered.status, StatusCode::OK, "{}", altered.body);
    assert_eq!(f.core.log().describe_topic("t").unwrap().0.config["retention.ms"], "120000");
    let wrong = c.post(&f, "/console/api/topics/t/delete", "confirm=T").await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert_eq!(wrong.error(), "invalid confirm: must repeat the topic's name to delete it");
    let deleted = c.post(&f, "/console/api/topics/t/delete", "confirm=t").await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert!(f.core.log().list_topics().is_empty());
}

impl Client {
    async fn set_cookie_attributes_are_strict(&mut self, f: &Fixture) -> bool {
        let mut fresh = Client::default();
        let a = fresh.get(f, "/console/api/session").await;
        let cookie = a.set_cookie.unwrap_or_default();
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/console")
    }
}

#[tokio::test]
async fn a_group_shows_its_lag_and_resets_while_empty() {
    let f = fixture(false).await;
    f.core.log().create_topic("t", 1, BTreeMap::new()).await.unwrap();
    f.core
        .log()
        .produce("t", vec![record(None, b"a"), record(None, b"b"), record(None, b"c")], None, None)
        .await
        .unwrap();
    let mut c = Client::session(&f).await;
    let reset = c.post(&f, "/console/api/groups/g/reset", "topic=t&to=offset&value=1").await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.body);
    let g = c.get(&f, "/console/api/groups/g").await.json();
    assert_eq!(g["state"], "empty");
    assert_eq!(g["partitions"]["items"][0]["committed"], 1);
    assert_eq!(g["partitions"]["items"][0]["lag"], 2);
    assert_eq!(g["lag"], 2);
    assert_eq!(g["lag_history"]["lag"], serde_json::json!([]), "not sampled yet");
    f.console.inner.history.push_lags(crate::history::group_lags(&f.core, 1_000));
    let g = c.get(&f, "/console/api/groups/g").await.json();
    assert_eq!(g["lag_history"], serde_json::json!({"at_ms": [1_000], "lag": [2]}), "the sampler's lag");
    let list = c.get(&f, "/console/api/groups").await.json();
    assert_eq!(list["items"][0]["id"], "g");
    assert_eq!(list["items"][0]["lag"], 2);
    let topic = c.get(&f, "/console/api/topics/t").await.json();
    assert_eq!(topic["groups"][0]["id"], "g");
    assert_eq!(topic["groups"][0]["lag"], 2);
    let bad = c.post(&f, "/console/api/groups/g/reset", "topic=t&to=sideways").await;
    assert_eq!(bad.error(), "invalid to: `sideways` is not one of earliest, latest, offset, timestamp");
    let out_of_range = c.post(&f, "/console/api/groups/g/reset", "topic=t&to=offset&value=9").await;
    assert_eq!(out_of_range.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_topics_page_finds_its_groups_among_thousands() {
    let f = fixture(false).await;
    f.core.log().create_topic("t", 2, BTreeMap::new()).await.unwrap();
    f.core.log().create_topic("other", 1, BTreeMap::new()).await.unwrap();
    // 1,200 groups on another topic, committed together, sort before the
    // two that read `t`.
    let mut commits = tokio::task::JoinSet::new();
    for i in 0..1200 {
        let core = f.core.clone();
        commits.spawn(async move {
            let offset = brooklet_core::CommittedOffset {
                topic: "other".into(),
                partition: 0,
                offset: 0,
                metadata: None,
            };
            core.groups().commit(&format!("g{i:04}"), None, &[offset]).await
        });
    }
    while let Some(committed) = commits.join_next().await {
        committed.unwrap().unwrap();
    }
    let produce = |n: usize| {
        let records = (0..n).map(|_| record(None, b"v")).collect();
        f.core.log().produce("t", records, None, None)
    };
    produce(1).await.unwrap();
    f.core.groups().reset_offsets("zz-committed", "t", brooklet_core::ResetTo::Latest).await.unwrap();
    produce(2).await.unwrap();
    f.core
        .groups()
        .heartbeat(brooklet_core::Heartbeat {
            group: "zz-live".into(),
            topics: vec!["t".into()],
            client_id: "c1".into(),
            ..Default::default()
        })
        .unwrap();

    let mut c = Client::session(&f).await;
    let topic = c.get(&f, "/console/api/topics/t").await.json();
    let groups: Vec<_> = topic["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["id"].as_str().unwrap(), g["members"].as_u64().unwrap(), g["lag"].as_u64().unwrap()))
        .collect();
    assert_eq!(groups, [("zz-committed", 0, 2), ("zz-live", 1, 3)], "only the groups that read `t`");
    assert_eq!(topic["groups"][0]["state"], "empty");
    let other = c.get(&f, "/console/api/topics/other").await.json();
    assert_eq!(other["groups"].as_array().unwrap().len(), 1200);
}

#[tokio::test]
async fn a_topics_and_a_groups_partitions_come_a_page_at_a_time() {
    let f = fixture(false).await;
    f.core.log().create_topic("wide", 250, BTreeMap::new()).await.unwrap();
    f.core.log().create_topic("narrow", 3, BTreeMap::new()).await.unwrap();
    let mut c = Client::session(&f).await;
    let t = c.get(&f, "/console/api/topics/wide?offset=200&limit=100").await.json();
    assert_eq!(
        (t["partitions"]["total"].as_u64(), t["partitions"]["offset"].as_u64()),
        (Some(250), Some(200))
    );
    let items = t["partitions"]["items"].as_array().unwrap();
    assert_eq!((items.len(), items[0]["partition"].as_u64()), (50, Some(200)));
    let first = c.get(&f, "/console/api/topics/wide").await.json();
    assert_eq!(first["partitions"]["items"].as_array().unwrap().len(), 100, "the default page");

    let joined = f
        .core
        .groups()
        .heartbeat(brooklet_core::Heartbeat {
            group: "g".into(),
            member_id: String::new(),
            member_epoch: 0,
            topics: vec!["wide".into(), "narrow".into()],
            owned: Default::default(),
            client_id: "c1".into(),
            host: "127.0.0.1".into(),
            session_timeout: None,
        })
        .unwrap();
    assert!(!joined.member_id.is_empty());
    let g = c.get(&f, "/console/api/groups/g?filter=wide&offset=240").await.json();
    assert_eq!(g["partitions"]["total"], 250, "the filter keeps the topics whose name contains it");
    assert_eq!(g["partitions"]["items"].as_array().unwrap().len(), 10);
    assert_eq!(g["partitions"]["items"][0]["partition"], 240);
    let member = &g["members"][0];
    assert_eq!(member["owns"], 253);
    assert_eq!(member["assignment"].as_array().unwrap().len(), super::api::MAX_ASSIGNMENT_SHOWN);
    let all = c.get(&f, "/console/api/groups/g").await.json();
    assert_eq!(all["partitions"]["total"], 253);
}

#[tokio::test]
async fn with_auth_required_the_console_asks_for_a_login() {
    let f = fixture(true).await;
    let mut c = Client::session(&f).await;
    let s = c.get(&f, "/console/api/session").await.json();
    assert_eq!((s["auth_required"].as_bool(), s["user"].is_null()), (Some(true), true));
    let anonymous = c.get(&f, "/console/api/overview").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.error(), "log in: the broker requires authentication");
    let wrong = c.post(&f, "/console/api/login", "user=admin&password=nope").await;
    assert_eq!(
        (wrong.status, wrong.error()),
        (StatusCode::UNAUTHORIZED, "invalid user or password".to_owned())
    );
    let unknown = c.post(&f, "/console/api/login", "user=mallory&password=admin-secret").await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    let ok = c.post(&f, "/console/api/login", "user=admin&password=admin-secret").await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.json()["user"], "admin");
    assert_eq!(c.get(&f, "/console/api/overview").await.status, StatusCode::OK);
    let out = c.post(&f, "/console/api/logout", "").await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.body);
    assert_eq!(c.get(&f, "/console/api/overview").await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_user_sees_and_does_only_what_the_acls_allow() {
    let f = fixture(true).await;
    for t in ["app.orders", "app.payments", "secret"] {
        f.core.log().create_topic(t, 1, BTreeMap::new()).await.unwrap();
    }
    let acl =
        |rt, pattern, name: &str, op| Acl::new("alice", rt, pattern, name, op, Permission::Allow).unwrap();
    f.core
        .acls()
        .add(&acl(ResourceType::Topic, PatternType::Prefixed, "app.", Operation::Describe))
        .await
        .unwrap();
    f.core
        .acls()
        .add(&acl(ResourceType::Topic, PatternType::Literal, "app.orders", Operation::Write))
        .await
        .unwrap();
    let mut c = Client::session(&f).await;
    let ok = c.post(&f, "/console/api/login", "user=alice&password=alice-secret").await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let list = c.get(&f, "/console/api/topics").await.json();
    let names: Vec<&str> =
        list["items"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["app.orders", "app.payments"]);
    let orders = c.get(&f, "/console/api/topics/app.orders").await.json();
    assert_eq!(
        orders["may"],
        serde_json::json!({"read": false, "write": true, "alter": false, "delete": false}),
        "the page offers only what the user may do"
    );
    let secret = c.get(&f, "/console/api/topics/secret").await;
    assert_eq!(secret.status, StatusCode::FORBIDDEN);
    assert_eq!(secret.error(), "User:alice is not allowed to describe topic `secret`");
    let read = c.get(&f, "/console/api/topics/app.orders/records").await;
    assert_eq!(
        (read.status, read.error()),
        (StatusCode::FORBIDDEN, "User:alice is not allowed to read topic `app.orders`".to_owned())
    );
    let sent = c.post(&f, "/console/api/topics/app.orders/records", "value=v").await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    let denied = c.post(&f, "/console/api/topics/app.payments/records", "value=v").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let delete = c.post(&f, "/console/api/topics/app.orders/delete", "confirm=app.orders").await;
    assert_eq!(delete.status, StatusCode::FORBIDDEN);
    assert_eq!(
        c.get(&f, "/console/api/overview").await.status,
        StatusCode::FORBIDDEN,
        "describe cluster is not granted"
    );
}
