//! A writer of the Prometheus text exposition format (version 0.0.4): one `# HELP` and
//! `# TYPE` per family, then its samples, label values escaped. The metrics themselves are
//! chosen in `metrics`.

use std::fmt::Write;

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    const fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Label names and values of one sample.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

/// The exposition text being written.
#[derive(Debug, Default)]
pub struct Text(String);

impl Text {
    /// Starts a family: its help line and type. `name` must carry `_total` for counters.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: Labels<'_>, value: f64) {
        self.0.push_str(name);
        write_labels(&mut self.0, labels, None);
        self.0.push(' ');
        push_value(&mut self.0, value);
        self.0.push('\n');
    }

    /// A family with one sample per `(labels, value)`.
    pub fn metric<'a>(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        samples: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, f64)>,
    ) {
        self.family(name, kind, help);
        for (labels, v) in samples {
            self.sample(name, &labels, v);
        }
    }

    /// The samples of one histogram series: cumulative `buckets` as `(upper bound, count)`,
    /// in increasing order (the `+Inf` bucket is `count`), their `sum` and `count`.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: Labels<'_>,
        buckets: &[(f64, u64)],
        sum: f64,
        count: u64,
    ) {
        let bucket = format!("{name}_bucket");
        for (le, n) in buckets
            .iter()
            .copied()
            .chain(std::iter::once((f64::INFINITY, count)))
        {
            self.0.push_str(&bucket);
            let mut le_text = String::new();
            push_value(&mut le_text, le);
            write_labels(&mut self.0, labels, Some(&le_text));
            let _ = writeln!(self.0, " {n}");
        }
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, count as f64);
    }

    pub fn finish(self) -> String {
        self.0
    }
}

fn write_labels(out: &mut String, labels: Labels<'_>, le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in labels.iter().copied().chain(le.map(|l| ("le", l))) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

fn push_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_escaping_and_histograms() {
        let mut t = Text::default();
        t.metric(
            "citygate_x_total",
            Kind::Counter,
            "Things.\nMore",
            [(vec![("source", "a\"b\\c\nd")], 3.0)],
        );
        t.family("citygate_h_seconds", Kind::Histogram, "H.");
        t.histogram(
            "citygate_h_seconds",
            &[("device", "d")],
            &[(0.001, 2), (0.01, 3)],
            0.25,
            4,
        );
        t.metric("citygate_g", Kind::Gauge, "G.", [(vec![], 0.5)]);
        assert_eq!(
            t.finish(),
            "# HELP citygate_x_total Things.\\nMore\n# TYPE citygate_x_total counter\n\
             citygate_x_total{source=\"a\\\"b\\\\c\\nd\"} 3\n\
             # HELP citygate_h_seconds H.\n# TYPE citygate_h_seconds histogram\n\
             citygate_h_seconds_bucket{device=\"d\",le=\"0.001\"} 2\n\
             citygate_h_seconds_bucket{device=\"d\",le=\"0.01\"} 3\n\
             citygate_h_seconds_bucket{device=\"d\",le=\"+Inf\"} 4\n\
             citygate_h_seconds_sum{device=\"d\"} 0.25\n\
             citygate_h_seconds_count{device=\"d\"} 4\n\
             # HELP citygate_g G.\n# TYPE citygate_g gauge\ncitygate_g 0.5\n"
        );
    }
}
