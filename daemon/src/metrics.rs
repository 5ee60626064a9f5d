//! The Prometheus text exposition (format 0.0.4), under one namespace.
//!
//! Every metric of every daemon is named `bitville_<subsystem>_<name>`: the
//! shipper engine's are `bitville_shipper_*` (in pg-watch too, since it runs
//! the same engine), pg-watch's own are `bitville_pgwatch_*`, and the
//! processor's are `bitville_*` with the subsystem in the name
//! (`bitville_records_total`, `bitville_gelf_lag_records`). [`Exposition`]
//! writes the families; [`crate::counters!`] declares a struct of plain
//! atomic counters and gauges that renders itself through it.

use std::fmt::{Display, Write};

/// The prefix of every metric name.
pub const NAMESPACE: &str = "bitville";

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A text exposition being written. Names are given without the namespace
/// and subsystem, which [`Exposition::new`] fixes for the whole text.
#[derive(Debug)]
pub struct Exposition {
    prefix: String,
    out: String,
}

impl Exposition {
    /// Names will read `bitville_<subsystem>_<name>`, or `bitville_<name>`
    /// when `subsystem` is empty.
    pub fn new(subsystem: &str) -> Exposition {
        let prefix = if subsystem.is_empty() {
            format!("{NAMESPACE}_")
        } else {
            format!("{NAMESPACE}_{subsystem}_")
        };
        Exposition {
            prefix,
            out: String::new(),
        }
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) -> &mut Self {
        let p = &self.prefix;
        let _ = writeln!(self.out, "# HELP {p}{name} {}", help.trim());
        let _ = writeln!(self.out, "# TYPE {p}{name} {}", kind.as_str());
        self
    }

    /// One sample of the family `name` (which may carry a suffix such as
    /// `_bucket`), with its labels; label values are escaped.
    pub fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: impl Display,
    ) -> &mut Self {
        let _ = write!(self.out, "{}{name}", self.prefix);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, help: &str, kind: Kind, value: impl Display) -> &mut Self {
        self.family(name, help, kind).sample(name, &[], value)
    }

    /// Appends text that another part rendered on its own.
    pub fn append(&mut self, text: &str) -> &mut Self {
        self.out.push_str(text);
        self
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Escapes a label value as the text format requires.
pub fn escape(value: &str) -> String {
    if !value.contains(['\\', '"', '\n']) {
        return value.to_owned();
    }
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Declares a struct of counters and gauges as plain `AtomicU64` fields (the
/// hot path updates them without a lock; `/metrics` reads them whenever it is
/// asked) and its `render(&self, subsystem)`, which writes each field as
/// `bitville_<subsystem>_<field>` with its doc comment as the help text.
///
/// ```
/// bitville_daemon::counters! {
///     /// Counters of a part.
///     pub struct Metrics {
///         /// Lines read.
///         lines_total: counter,
///         /// Files open.
///         files: gauge,
///     }
/// }
/// let m = Metrics::default();
/// m.lines_total.fetch_add(2, std::sync::atomic::Ordering::Relaxed);
/// assert!(m.render("part").contains("bitville_part_lines_total 2\n"));
/// ```
#[macro_export]
macro_rules! counters {
    (
        $(#[$meta:meta])*
        pub struct $ty:ident {
            $( $(#[doc = $doc:literal])* $name:ident : $kind:ident ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        pub struct $ty {
            $( $(#[doc = $doc])* pub $name: ::std::sync::atomic::AtomicU64, )*
        }

        impl $ty {
            /// The text exposition of every field, named
            /// `bitville_<subsystem>_<field>`.
            pub fn render(&self, subsystem: &str) -> String {
                let mut out = $crate::metrics::Exposition::new(subsystem);
                $(
                    out.single(
                        stringify!($name),
                        concat!($($doc),*),
                        $crate::counters!(@kind $kind),
                        self.$name.load(::std::sync::atomic::Ordering::Relaxed),
                    );
                )*
                out.finish()
            }
        }
    };
    (@kind counter) => { $crate::metrics::Kind::Counter };
    (@kind gauge) => { $crate::metrics::Kind::Gauge };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_samples_are_named_under_the_namespace() {
        let mut e = Exposition::new("shipper");
        e.single("lines_total", " Lines read. ", Kind::Counter, 3);
        e.family("records_total", "Records.", Kind::Counter).sample(
            "records_total",
            &[("project", "a\"b"), ("kind", "request")],
            7,
        );
        let text = e.finish();
        assert_eq!(
            text,
            "# HELP bitville_shipper_lines_total Lines read.\n\
             # TYPE bitville_shipper_lines_total counter\n\
             bitville_shipper_lines_total 3\n\
             # HELP bitville_shipper_records_total Records.\n\
             # TYPE bitville_shipper_records_total counter\n\
             bitville_shipper_records_total{project=\"a\\\"b\",kind=\"request\"} 7\n"
        );
        let mut bare = Exposition::new("");
        bare.single("store_bytes", "Bytes.", Kind::Gauge, 1);
        assert!(bare.finish().ends_with("bitville_store_bytes 1\n"));
    }
}
