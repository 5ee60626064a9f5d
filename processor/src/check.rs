//! `processor --check-config`: everything that can be checked without
//! starting, beyond what parsing the file checks already.
//!
//! Each problem is one line that names the key and what is wrong; a
//! warning is something that works but is probably not meant.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;

// The daemons share one shape of findings and the same access and probe
// rules; the shipper's check module holds them.
pub use bitville_daemon::check::Findings;
use bitville_daemon::check::{PROBE_TIMEOUT, can};

use crate::config::Config;
use crate::gelf::config::TransportKind;

/// Checks the store path, the TLS files, the tokens and the GELF outputs.
pub fn check(config: &Config) -> Findings {
    let mut f = Findings::default();
    check_store(&config.store.path, &mut f);
    if let (Some(cert), Some(key)) = (&config.server.tls_cert, &config.server.tls_key) {
        if let Err(e) = crate::tls::server_config(cert, key) {
            f.problem(format!("server.tls_cert/tls_key: {e}"));
        }
    } else if !config.server.listen.ip().is_loopback() {
        f.warn(format!(
            "server.listen {}: plain HTTP on a non-loopback address sends tokens in the clear; set tls_cert and tls_key",
            config.server.listen
        ));
    }
    let metrics = config.server.metrics_addr();
    if !metrics.ip().is_loopback() {
        f.warn(format!(
            "server.metrics_listen {metrics}: /metrics names every project with its counts; serve it on loopback or a private network only"
        ));
    }
    if config.tokens.is_empty() {
        f.warn(
            "tokens: none configured; a development token for project \"demo\" is made at start",
        );
    }
    for (i, output) in config.gelf.outputs.iter().enumerate() {
        if let Some(problem) = probe_output(output.transport, &output.address) {
            f.problem(format!("gelf.outputs[{i}] ({}): {problem}", output.name));
        }
    }
    f
}

/// The store file must be readable and writable, or its folder creatable.
fn check_store(path: &Path, f: &mut Findings) {
    let key = "store.path";
    if path.exists() {
        if path.is_dir() {
            f.problem(format!("{key} {} is a folder, not a file", path.display()));
        } else if !can(path, libc::R_OK | libc::W_OK) {
            f.problem(format!(
                "{key} {} is not readable and writable by this user",
                path.display()
            ));
        }
        return;
    }
    // The first existing ancestor decides whether the folders can be made.
    let mut folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    while !folder.exists() {
        folder = folder
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
    }
    if !folder.is_dir() {
        f.problem(format!(
            "{key} {}: {} is not a folder",
            path.display(),
            folder.display()
        ));
    } else if !can(folder, libc::W_OK | libc::X_OK) {
        f.problem(format!(
            "{key} {}: folder {} is not writable by this user",
            path.display(),
            folder.display()
        ));
    }
}

/// Whether a GELF output answers: TCP and HTTP must accept a connection;
/// UDP cannot be probed, its address must resolve.
fn probe_output(transport: TransportKind, address: &str) -> Option<String> {
    let host_port = match transport {
        TransportKind::Http => {
            let rest = address.split_once("://").map_or(address, |(_, r)| r);
            let authority = rest.split('/').next().unwrap_or(rest);
            let default_port = if address.starts_with("https://") {
                443
            } else {
                80
            };
            if authority
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            {
                authority.to_owned()
            } else {
                format!("{authority}:{default_port}")
            }
        }
        TransportKind::Tcp | TransportKind::Udp => address.to_owned(),
    };
    let addrs: Vec<_> = match host_port.to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => return Some(format!("address {host_port:?} does not resolve: {e}")),
    };
    if transport == TransportKind::Udp {
        return None;
    }
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, PROBE_TIMEOUT) {
            Ok(_) => return None,
            Err(e) => last = Some(e),
        }
    }
    Some(match last {
        Some(e) => format!("Graylog at {host_port} is not reachable: {e}"),
        None => format!("address {host_port:?} resolves to nothing"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_under_a_missing_folder_is_fine_when_the_folder_can_be_made() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = Findings::default();
        check_store(&dir.path().join("a/b/bitville.duckdb"), &mut f);
        assert_eq!(f, Findings::default());
        check_store(dir.path(), &mut f);
        assert!(
            f.problems[0].contains("is a folder, not a file"),
            "{:?}",
            f.problems
        );
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        let mut f = Findings::default();
        check_store(&file.join("store.duckdb"), &mut f);
        assert!(
            f.problems[0].contains("is not a folder"),
            "{:?}",
            f.problems
        );
    }

    #[test]
    fn gelf_outputs_are_probed_by_transport() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap().to_string();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        assert_eq!(probe_output(TransportKind::Tcp, &open), None);
        assert_eq!(
            probe_output(TransportKind::Http, &format!("http://{open}/gelf")),
            None
        );
        let down = probe_output(TransportKind::Tcp, &closed).expect("a closed port is a problem");
        assert!(down.contains("is not reachable"), "{down}");
        assert_eq!(
            probe_output(TransportKind::Udp, &closed),
            None,
            "UDP cannot be probed"
        );
        let bad =
            probe_output(TransportKind::Udp, "no-such-host.invalid:12201").expect("unresolvable");
        assert!(bad.contains("does not resolve"), "{bad}");
    }
}
