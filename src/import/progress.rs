//! What the import shows while it runs and when it ends. On a terminal, a
//! live progress bar on stderr (users answered of the file's users, users
//! per second, ETA, users sent, counts by outcome); elsewhere (CI logs,
//! Kubernetes jobs) a plain line every few seconds. At the end, a table of
//! the batch's counts per target and outcome on stdout.

use std::{
    collections::BTreeMap,
    io::IsTerminal,
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::api::pb;

/// How often the plain line is printed.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// Counts of one attempt: users sent and answered, results by outcome.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub sent: u64,
    /// Users with a result at every target.
    pub answered: u64,
    pub outcomes: BTreeMap<&'static str, u64>,
}

impl Counts {
    fn outcomes_text(&self) -> String {
        self.outcomes
            .iter()
            .map(|(outcome, count)| format!("{outcome} {count}"))
            .collect::<Vec<_>>()
            .join(" · ")
    }
}

/// The short name of an outcome, as the progress line and the summary show it.
pub fn outcome_name(outcome: pb::Outcome) -> &'static str {
    match outcome {
        pb::Outcome::Registered => "registered",
        pb::Outcome::AlreadyExists => "already exists",
        pb::Outcome::Rejected => "rejected",
        pb::Outcome::Failed => "failed",
        pb::Outcome::Validated => "validated",
        pb::Outcome::NotSent => "not sent",
        pb::Outcome::AnswerLost => "answer lost",
        pb::Outcome::Pending => "pending",
        pb::Outcome::Unspecified => "unspecified",
    }
}

pub struct Progress {
    display: Display,
    started: Instant,
}

enum Display {
    Bar(ProgressBar),
    Plain { total: u64, last: Instant },
}

impl Progress {
    /// A bar when stderr is a terminal, else plain lines; `total` users in the file.
    pub fn start(total: u64) -> Progress {
        let display = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} answered, {rate}, ETA {eta}\n  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key("rate", |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                    let _ = write!(out, "{:.0} users/s", state.per_sec());
                }),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            Display::Bar(bar)
        } else {
            Display::Plain {
                total,
                last: Instant::now(),
            }
        };
        Progress {
            display,
            started: Instant::now(),
        }
    }

    /// A line above the bar (or a plain line).
    pub fn say(&self, text: &str) {
        match &self.display {
            Display::Bar(bar) => bar.println(text),
            Display::Plain { .. } => eprintln!("{text}"),
        }
    }

    /// A new attempt after a reconnect: its results start from zero.
    pub fn restart(&mut self) {
        if let Display::Bar(bar) = &self.display {
            bar.reset();
        }
    }

    pub fn update(&mut self, counts: &Counts) {
        let message = format!("sent {} · {}", counts.sent, counts.outcomes_text());
        match &mut self.display {
            Display::Bar(bar) => {
                bar.set_position(counts.answered);
                bar.set_message(message);
            }
            Display::Plain { total, last } => {
                if last.elapsed() >= PLAIN_EVERY {
                    *last = Instant::now();
                    let seconds = self.started.elapsed().as_secs_f64().max(0.001);
                    eprintln!(
                        "answered {}/{} ({:.0} users/s) · {message}",
                        counts.answered,
                        total,
                        counts.answered as f64 / seconds
                    );
                }
            }
        }
    }

    pub fn finish(&self) {
        if let Display::Bar(bar) = &self.display {
            bar.finish_and_clear();
        }
    }
}

/// The summary table: one line per target, a column per outcome.
pub fn summary_table(summary: &pb::BatchSummary, elapsed: Duration) -> String {
    let mut out = format!(
        "batch {}{}, {:.1} s\n",
        summary.batch_id,
        if summary.dry_run { " (dry run)" } else { "" },
        elapsed.as_secs_f64()
    );
    let columns = [
        "total",
        "registered",
        "already exists",
        "validated",
        "rejected",
        "failed",
    ];
    let width = summary
        .targets
        .iter()
        .map(|t| t.target.len())
        .max()
        .unwrap_or(6)
        .max(6);
    out.push_str(&format!("{:<width$}", "target"));
    for column in columns {
        out.push_str(&format!("  {column:>14}"));
    }
    out.push('\n');
    for target in &summary.targets {
        out.push_str(&format!("{:<width$}", target.target));
        for value in [
            target.total,
            target.registered,
            target.already_exists,
            target.validated,
            target.rejected,
            target.failed,
        ] {
            out.push_str(&format!("  {value:>14}"));
        }
        out.push('\n');
    }
    out
}
