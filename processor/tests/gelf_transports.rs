//! GELF transports against the project's own receiver and an independent
//! one: every message passes the GELF rules, UDP chunks and compresses as
//! configured, oversized messages are shortened, TLS works, and a TCP send
//! to a receiver that went away fails (so the forwarder retries it).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use processor::gelf::Message;
use processor::gelf::build::{pg_log_message, request_message, slow_sql_messages};
use processor::gelf::config::{Compression, OutputConfig, TransportKind};
use processor::gelf::message::SHORTENED_FIELD;
use processor::gelf::receiver::{Addrs, Receiver};
use processor::gelf::transport::Transport;
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = manifest_dir().join("../fixtures/records").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Request messages (and their slow SQL) for `n` variants of the fixture.
fn messages(n: usize) -> Vec<Message> {
    let base = fixture("request-full.json");
    let mut out = Vec::new();
    for i in 0..n {
        let mut r = base.clone();
        r["id"] = format!("00000000-0000-4000-8000-{i:012}").into();
        r["http"]["url"] = format!("/checkout/{i}").into();
        out.push(request_message(&r, 10, Some(1.5)));
        out.extend(slow_sql_messages(&r, 1000.0));
    }
    out
}

fn key(m: &Value) -> String {
    format!(
        "{}/{}/{}",
        m["_record_id"].as_str().unwrap_or("?"),
        m["_event"].as_str().unwrap_or("?"),
        m["_sql_idx"]
    )
}

fn keys_of(messages: &[Message]) -> BTreeSet<String> {
    messages
        .iter()
        .map(|m| key(&serde_json::from_slice(&m.to_json()).unwrap()))
        .collect()
}

fn output(name: &str, transport: TransportKind, address: String) -> OutputConfig {
    OutputConfig {
        name: name.into(),
        transport,
        address,
        timeout_s: 5,
        ..OutputConfig::default()
    }
}

fn udp(
    name: &str,
    addr: std::net::SocketAddr,
    compression: Compression,
    chunk_size: usize,
) -> OutputConfig {
    OutputConfig {
        compression,
        chunk_size,
        ..output(name, TransportKind::Udp, addr.to_string())
    }
}

async fn send_all(out: &OutputConfig, messages: &[Message]) -> processor::gelf::transport::Sent {
    let mut t = Transport::new(out).await.unwrap();
    let mut done = vec![false; messages.len()];
    let sent = t
        .send(messages, &mut done)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(done.iter().all(|d| *d));
    sent
}

/// A pg_log auto_explain event whose plan alone needs far more than 128 chunks.
fn huge_plan_event() -> Message {
    let mut r = fixture("pg_log-slow-statement.json");
    r["class"] = "auto_explain".into();
    // Pseudo-random text: compression cannot make it fit.
    let plan: String = (0..400_000u32)
        .map(|i| char::from(b'a' + ((i.wrapping_mul(2_654_435_761) >> 13) % 26) as u8))
        .collect();
    r["plan"] = plan.into();
    pg_log_message(&r).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_delivers_messages_that_pass_the_rules() {
    let rx = Receiver::start(Addrs::loopback(), None, true)
        .await
        .unwrap();
    let a = rx.addrs();
    let msgs = messages(40);
    let want = keys_of(&msgs);
    let outputs = [
        udp("udp-gzip", a.udp, Compression::Gzip, 1420),
        udp("udp-zlib", a.udp, Compression::Zlib, 128),
        udp("udp-none", a.udp, Compression::None, 8154),
        output("tcp", TransportKind::Tcp, a.tcp.to_string()),
        output(
            "http",
            TransportKind::Http,
            format!("http://{}/gelf", a.http),
        ),
    ];
    for o in &outputs {
        // UDP on loopback can still drop under load: pace it a little.
        for part in msgs.chunks(20) {
            send_all(o, part).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let total = (msgs.len() * outputs.len()) as u64;
    assert!(
        rx.wait_for(total, Duration::from_secs(20)).await,
        "got {} of {total}",
        rx.count()
    );
    let got = rx.stop().await;
    for (transport, compression) in [
        ("udp", "gzip"),
        ("udp", "zlib"),
        ("udp", "none"),
        ("tcp", "none"),
        ("http", "none"),
    ] {
        let these: Vec<&_> = got
            .iter()
            .filter(|r| r.transport == transport && r.compression == compression)
            .collect();
        let keys: BTreeSet<String> = these.iter().map(|r| key(&r.message)).collect();
        assert_eq!(keys, want, "{transport}/{compression}");
        assert_eq!(
            these.len(),
            want.len(),
            "{transport}/{compression}: each message once"
        );
    }
    let zlib_chunks = got
        .iter()
        .filter(|r| r.compression == "zlib")
        .map(|r| r.chunks)
        .max()
        .unwrap();
    assert!(zlib_chunks > 1, "128-byte chunks split the messages");
    assert!(
        got.iter()
            .filter(|r| r.compression == "gzip")
            .all(|r| r.chunks == 1),
        "1420 bytes hold a compressed request"
    );
    let request = got
        .iter()
        .find(|r| r.message["_event"] == "request")
        .unwrap();
    for field in [
        "_project",
        "_correlation_id",
        "_url",
        "_route",
        "_status",
        "_duration_ms",
        "_cpu_ms",
        "_memory_peak",
        "_sql_count",
        "_sql_ms",
        "_top_function",
        "_host_load1",
    ] {
        assert!(
            request.message.get(field).is_some(),
            "request message has {field}: {}",
            request.message
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_needing_over_128_chunks_is_shortened_and_marked() {
    let rx = Receiver::start(Addrs::loopback(), None, true)
        .await
        .unwrap();
    let big = huge_plan_event();
    let original: Value = serde_json::from_slice(&big.to_json()).unwrap();
    let sent = send_all(
        &udp("udp", rx.addrs().udp, Compression::None, 1420),
        std::slice::from_ref(&big),
    )
    .await;
    assert_eq!(sent.shortened, 1);
    assert!(rx.wait_for(1, Duration::from_secs(10)).await);
    let got = rx.stop().await;
    let m = &got[0].message;
    assert!(
        got[0].chunks <= 128 && got[0].chunks > 100,
        "{} chunks",
        got[0].chunks
    );
    assert_eq!(m[SHORTENED_FIELD], 1);
    assert_eq!(
        m["short_message"], original["short_message"],
        "short_message is kept"
    );
    assert_eq!(m["_class"], "auto_explain");
    let full = m["full_message"].as_str().unwrap();
    assert!(
        full.len() < original["full_message"].as_str().unwrap().len() && full.len() > 50_000,
        "full_message cut first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_receiver_decodes_chunked_compressed_udp() {
    let script = manifest_dir()
        .join("tests/gelf_independent_udp_receiver.py")
        .display()
        .to_string();
    let msgs = messages(20);
    let expected = 2 * msgs.len() + 1;
    let mut child = Command::new("python3")
        .args([script.as_str(), &expected.to_string(), "30"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the independent receiver");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let port: u16 = first.strip_prefix("PORT ").unwrap().parse().unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    for part in msgs.chunks(10) {
        send_all(&udp("gzip", addr, Compression::Gzip, 200), part).await;
        send_all(&udp("zlib", addr, Compression::Zlib, 1420), part).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    send_all(
        &udp("none", addr, Compression::None, 1420),
        &[huge_plan_event()],
    )
    .await;
    let mut seen = Vec::new();
    for line in lines {
        let line = line.unwrap();
        assert!(!line.starts_with("ERROR"), "independent receiver: {line}");
        seen.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(seen.len(), expected);
    let by = |c: &str| {
        seen.iter()
            .filter(|s| s["compression"] == c)
            .map(|s| key(&s["message"]))
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(by("gzip"), keys_of(&msgs));
    assert_eq!(by("zlib"), keys_of(&msgs));
    assert!(
        seen.iter()
            .any(|s| s["compression"] == "gzip" && s["chunks"].as_u64().unwrap() > 1),
        "gzip output was chunked"
    );
    let shortened = seen.iter().find(|s| s["compression"] == "none").unwrap();
    assert_eq!(shortened["message"][SHORTENED_FIELD], 1);
    assert!(shortened["chunks"].as_u64().unwrap() <= 128);
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_over_tls_trusting_a_given_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        d,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=gelf-test-ca",
            ],
        ]
        .concat(),
    );
    openssl(
        d,
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "key.pem",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    let tls =
        processor::ingest::tls::server_config(&d.join("cert.pem"), &d.join("key.pem")).unwrap();
    let rx = Receiver::start(Addrs::loopback(), Some(tls), true)
        .await
        .unwrap();
    let msgs = messages(10);
    let mut out = output("tls", TransportKind::Tcp, rx.addrs().tcp.to_string());
    out.tls = true;
    out.tls_ca = Some(d.join("ca.pem"));
    send_all(&out, &msgs).await;
    assert!(
        rx.wait_for(msgs.len() as u64, Duration::from_secs(10))
            .await
    );
    assert!(rx.violations().is_empty(), "{:?}", rx.violations());
    let got = rx.stop().await;
    assert_eq!(
        got.iter().map(|r| key(&r.message)).collect::<BTreeSet<_>>(),
        keys_of(&msgs)
    );

    // A CA that did not sign the certificate: the handshake fails, nothing is delivered.
    openssl(
        d,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "other.key",
                "-out",
                "other.pem",
                "-days",
                "2",
                "-subj",
                "/CN=other",
            ],
        ]
        .concat(),
    );
    let tls =
        processor::ingest::tls::server_config(&d.join("cert.pem"), &d.join("key.pem")).unwrap();
    let rx = Receiver::start(Addrs::loopback(), Some(tls), true)
        .await
        .unwrap();
    out.address = rx.addrs().tcp.to_string();
    out.tls_ca = Some(d.join("other.pem"));
    let mut t = Transport::new(&out).await.unwrap();
    let mut done = vec![false; 1];
    let err = t.send(&msgs[..1], &mut done).await.unwrap_err().to_string();
    assert!(err.contains("tls handshake"), "{err}");
    assert!(!done[0]);
    rx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_http_report_failure_while_the_receiver_is_down() {
    let rx = Receiver::start(Addrs::loopback(), None, true)
        .await
        .unwrap();
    let addrs = rx.addrs();
    let msgs = messages(5);
    let mut tcp = Transport::new(&output("tcp", TransportKind::Tcp, addrs.tcp.to_string()))
        .await
        .unwrap();
    let mut http = Transport::new(&output(
        "http",
        TransportKind::Http,
        format!("http://{}/gelf", addrs.http),
    ))
    .await
    .unwrap();
    for t in [&mut tcp, &mut http] {
        let mut done = vec![false; msgs.len()];
        t.send(&msgs, &mut done).await.unwrap();
    }
    assert!(
        rx.wait_for(2 * msgs.len() as u64, Duration::from_secs(10))
            .await
    );
    let first = rx.stop().await;
    for t in [&mut tcp, &mut http] {
        let mut done = vec![false; msgs.len()];
        let err = t.send(&msgs, &mut done).await;
        assert!(
            err.is_err(),
            "{t:?} must not report delivery to a stopped receiver"
        );
        assert!(!done.iter().all(|d| *d));
    }
    // Back on the same ports: the same transports reconnect.
    let rx = Receiver::start(addrs, None, true).await.unwrap();
    for t in [&mut tcp, &mut http] {
        let mut done = vec![false; msgs.len()];
        t.send(&msgs, &mut done).await.unwrap();
    }
    assert!(
        rx.wait_for(2 * msgs.len() as u64, Duration::from_secs(10))
            .await
    );
    assert!(rx.violations().is_empty(), "{:?}", rx.violations());
    let second = rx.stop().await;
    assert_eq!(first.len() + second.len(), 4 * msgs.len());
}

/// The package's folder as `cargo test` names it when the test runs: a test
/// binary reused from another clone with the same target folder would keep
/// that clone's folder in `env!`.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    )
}
