//! The Prometheus text exposition format (version 0.0.4), written directly: families with
//! `# HELP` and `# TYPE`, label values escaped.

use std::fmt::Write;

/// Content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Metric kind.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Can go up and down.
    Gauge,
    /// Only goes up; the name should end in `_total`.
    Counter,
}

/// A metric family read from `T`: name, kind, help and how to read one sample.
pub type Family<T> = (&'static str, Kind, &'static str, fn(&T) -> f64);

/// A gauge's value for a flag: 1 when set.
pub fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Builds one exposition.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes a family: its help, type and one sample per `(labels, value)`.
    pub fn family<'a>(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        samples: impl IntoIterator<Item = (&'a [(&'a str, &'a str)], f64)>,
    ) {
        let kind = match kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            self.out.push_str(name);
            if !labels.is_empty() {
                self.out.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    let _ = write!(self.out, "{k}=\"{}\"", escape(v));
                }
                self.out.push('}');
            }
            self.out.push(' ');
            push_value(&mut self.out, value);
            self.out.push('\n');
        }
    }

    /// Writes a histogram family: per sample, its cumulative buckets, sum and count.
    pub fn histogram<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (&'a [(&'a str, &'a str)], &'a crate::Histogram)>,
    ) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} histogram");
        for (labels, h) in samples {
            let (buckets, count, sum) = h.snapshot();
            let base: String = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\",", escape(v)))
                .collect();
            for (bound, n) in crate::histogram::BUCKETS.iter().zip(buckets) {
                let _ = writeln!(self.out, "{name}_bucket{{{base}le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(self.out, "{name}_bucket{{{base}le=\"+Inf\"}} {count}");
            let plain = base.trim_end_matches(',');
            let braces = if plain.is_empty() {
                String::new()
            } else {
                format!("{{{plain}}}")
            };
            let _ = write!(self.out, "{name}_sum{braces} ");
            push_value(&mut self.out, sum);
            self.out.push('\n');
            let _ = writeln!(self.out, "{name}_count{braces} {count}");
        }
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// A sample value as the exposition format spells it: `+Inf`, `-Inf` and `NaN` (Rust would
/// write `inf` and `NaN`, which Prometheus refuses), else the shortest exact decimal.
fn push_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_families_and_escapes_labels() {
        let mut e = Exposition::new();
        let labels: &[(&str, &str)] = &[("upstream", "a\"b"), ("endpoint", "10.0.0.1:80")];
        e.family("weir_x_total", Kind::Counter, "Things.", [(labels, 3.0)]);
        assert_eq!(
            e.finish(),
            "# HELP weir_x_total Things.\n# TYPE weir_x_total counter\nweir_x_total{upstream=\"a\\\"b\",endpoint=\"10.0.0.1:80\"} 3\n"
        );
    }

    #[test]
    fn infinities_and_nan_are_spelled_as_the_format_requires() {
        let mut e = Exposition::new();
        let none: &[(&str, &str)] = &[];
        e.family(
            "x",
            Kind::Gauge,
            "X.",
            [
                (none, f64::INFINITY),
                (none, f64::NEG_INFINITY),
                (none, f64::NAN),
                (none, 0.5),
            ],
        );
        let text = e.finish();
        let values: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(' ').nth(1))
            .collect();
        assert_eq!(values, ["+Inf", "-Inf", "NaN", "0.5"]);
    }
}
