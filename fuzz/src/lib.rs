//! The fuzz targets' checks, one function per input kind, so that a crash
//! the fuzzer finds can be replayed by hand (`cargo +nightly fuzz run
//! <target> <file>`) and kept as a regression test in the crate it hit.
//!
//! Each check asserts more than "does not panic": what the daemon relies on
//! downstream of the parser.

use bitville_schemas::records::LogFormat;
use pg_watch::log::LogEntry;
use pg_watch::logs::{parser_for, to_record};
use pg_watch::tailer::TailedEntry;
use shipper::envelope::EnvelopeCheck;

/// Where the buffer starts in its imagined file: offsets are file positions.
const BASE: u64 = 4096;

/// The PostgreSQL log parser of `format` over `data`. For stderr the first
/// line of `data` is the `log_line_prefix` (any text, as a user may set
/// any), the rest the log.
///
/// Checked: the parser consumes no more than it was given and only whole
/// entries, in order; every entry becomes a pg_log record that its schema
/// accepts (the processor refuses any other); and reading in two steps, as
/// the tailer does after a checkpoint, gives the same entries as one read,
/// so a restart neither loses nor repeats one.
pub fn pg_log(format: LogFormat, data: &[u8]) {
    let (prefix, buf) = match format {
        LogFormat::Stderr => {
            let Some(nl) = data.iter().position(|&b| b == b'\n') else {
                return;
            };
            let Ok(prefix) = std::str::from_utf8(&data[..nl]) else {
                return;
            };
            (prefix, &data[nl + 1..])
        }
        LogFormat::Csvlog | LogFormat::Jsonlog => ("", data),
    };
    let Ok(parser) = parser_for(format, prefix) else {
        return;
    };
    let parse = |buf, base, complete| {
        let mut entries: Vec<LogEntry<'_>> = Vec::new();
        let consumed = parser.parse(buf, base, complete, &mut |e| entries.push(e));
        (consumed, entries)
    };

    let (all_consumed, all) = parse(buf, BASE, true);
    let (consumed, first) = parse(buf, BASE, false);
    for (complete, consumed, entries) in [(true, all_consumed, &all), (false, consumed, &first)] {
        assert!(
            consumed <= buf.len(),
            "complete={complete}: consumed {consumed} of {} bytes",
            buf.len()
        );
        let end = BASE + consumed as u64;
        let mut last = None;
        for e in entries {
            assert!(
                (BASE..end).contains(&e.offset),
                "complete={complete}: entry at {} outside the consumed {BASE}..{end}",
                e.offset
            );
            assert!(
                last.is_none_or(|l| l < e.offset),
                "complete={complete}: entry at {} after one at {last:?}",
                e.offset
            );
            last = Some(e.offset);
        }
    }

    // The tailer checkpoints at `consumed` and parses on from there.
    let (_, rest) = parse(&buf[consumed..], BASE + consumed as u64, true);
    let resumed: Vec<&LogEntry<'_>> = first.iter().chain(&rest).collect();
    let once: Vec<&LogEntry<'_>> = all.iter().collect();
    assert_eq!(resumed, once, "a resumed read differs from one read");

    for entry in all {
        let record = to_record(
            TailedEntry {
                entry,
                format,
                file: "postgresql.log",
                fingerprint: 7,
            },
            "shop",
            "db-1",
        );
        let value = serde_json::to_value(&record).expect("a record serializes");
        if let Err(e) = bitville_schemas::validate(&value) {
            panic!("the processor would refuse this record: {e}\n{value:#}");
        }
    }
}

/// The shipper's envelope reader over one spool line. Checked: a line it
/// accepts is one JSON object whose envelope `schemas/envelope.schema.json`
/// accepts, so the shipper never ships what it should have quarantined.
pub fn envelope(line: &[u8]) {
    if EnvelopeCheck::check(line).is_err() {
        return;
    }
    let value: serde_json::Value = match serde_json::from_slice(line) {
        Ok(value) => value,
        // A number beyond what a double holds (`1e999`) is JSON's syntax,
        // which the shipper's quick envelope check does not evaluate; the
        // processor refuses such a line by its number ("number out of
        // range", with the line and column), so it is refused, not lost.
        Err(e) if e.to_string().starts_with("number out of range") => return,
        Err(e) => panic!("an accepted line is JSON: {e}"),
    };
    assert!(value.is_object(), "an accepted line is an object: {value}");
    let errors: Vec<String> = envelope_schema()
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "accepted, but the envelope schema refuses it: {errors:?}\n{value}"
    );
}

fn envelope_schema() -> &'static jsonschema::Validator {
    static SCHEMA: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../schemas/envelope.schema.json"))
                .expect("the envelope schema is JSON");
        jsonschema::draft202012::new(&schema).expect("the envelope schema compiles")
    })
}
