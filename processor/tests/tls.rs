//! HTTPS with rustls when a certificate and key are configured: a client
//! that trusts the issuing CA ingests over TLS; plain HTTP on that port fails.

mod common;

use std::io::{BufReader, Write};
use std::process::Command;
use std::sync::Arc;

use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

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

/// A test CA and a server certificate for 127.0.0.1 signed by it.
fn make_certs(dir: &std::path::Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=bitville-test-ca",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "key.pem",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
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
}

#[test]
fn https_ingest_works_with_a_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let mut config = test_config(dir.path());
    config.server.tls_cert = Some(dir.path().join("cert.pem"));
    config.server.tls_key = Some(dir.path().join("key.pem"));
    let run = Running::start(config);
    assert!(run.processor().https());

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(dir.path().join("ca.pem")).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = rustls::ClientConnection::new(
        Arc::new(client_config),
        ServerName::try_from("127.0.0.1").unwrap(),
    )
    .unwrap();
    let tcp = std::net::TcpStream::connect(run.addr()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let body = ndjson(&[host_metrics(&new_id(), now_micros(), "shop")]);
    let head = format!(
        "POST /v1/ingest HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).unwrap();
    tls.write_all(&body).unwrap();
    let resp = read_response(&mut BufReader::new(&mut tls)).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["accepted"], 1);

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = run.client().request("GET", "/healthz", &[], b"");
    assert!(plain.is_err() || plain.is_ok_and(|r| r.status != 200));
    assert_eq!(run.count("SELECT count(*) FROM records"), 1);
    run.stop();
}

#[test]
fn a_missing_certificate_is_named_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.server.tls_cert = Some(dir.path().join("nope.pem"));
    config.server.tls_key = Some(dir.path().join("nope.key"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(processor::Processor::start(config))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "tls_cert {}",
            dir.path().join("nope.pem").display()
        )),
        "{err}"
    );
}
