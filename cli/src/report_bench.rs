//! `make bench`, the report part: the worker's CPU work for a dashboard of 6 Klips over one
//! data source of 100,000 rows — reading the stored rows, computing each Klip, the analysis,
//! and writing the html and pdf files — timed in-process (no I/O), as ratios against one
//! plain pass over the same rows measured in the same run, and as a share of the report
//! worker's timeout.

use chrono::{Duration as Days, TimeZone, Utc};
use domain::document::{self, Cover};
use domain::records::Klip;
use domain::ReportFormat;
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

/// The rows of the data source.
const ROWS: usize = 100_000;
/// Timed rounds; the median is printed.
const ROUNDS: usize = 5;
/// `Timeout` of `ReportWorkerFunction` in template.yaml, in seconds.
const WORKER_TIMEOUT_SECONDS: f64 = 150.0;

/// `ROWS` orders over the 400 days before `now` (see [`rows_of`]).
fn rows(now: chrono::DateTime<Utc>) -> Vec<Map<String, Value>> {
    rows_of(now, ROWS)
}

/// `count` orders over the 400 days before `now`: day, region (5), product (20), amount,
/// units, from a fixed-seed generator.
fn rows_of(now: chrono::DateTime<Utc>, count: usize) -> Vec<Map<String, Value>> {
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let regions = ["north", "south", "east", "west", "central"];
    (0..count)
        .map(|i| {
            let back = (i * 400 / count) as i64;
            let day = (now - Days::days(back)).date_naive();
            let r = next();
            let amount = 20.0 + (r % 20_000) as f64 / 100.0;
            let row = json!({
                "day": day.to_string(),
                "region": regions[(r >> 20) as usize % regions.len()],
                "product": format!("p{:02}", (r >> 30) % 20),
                "amount": amount,
                "units": 1 + (r >> 40) % 5,
            });
            match row {
                Value::Object(map) => map,
                _ => Map::new(),
            }
        })
        .collect()
}

fn klip(n: usize, name: &str, kind: &str, query: Value, display: Value) -> Result<Klip, String> {
    serde_json::from_value(json!({
        "meta": {"id": format!("{n:032x}"), "company_id": "bench", "name": name,
                 "slug": format!("k{n}"), "version": 1, "created_by": "bench",
                 "date_created": "2026-01-01T00:00:00Z", "last_updated": "2026-01-01T00:00:00Z"},
        "type": kind, "datasource_id": "orders", "query": query, "display": display
    }))
    .map_err(|e| format!("bench klip {name}: {e}"))
}

fn klips() -> Result<Vec<Klip>, String> {
    Ok(vec![
        klip(
            1,
            "Revenue",
            "line",
            json!({"value": "amount", "time_column": "day",
            "time_bucket": "day", "range": "last_30_days"}),
            json!({"format": "currency"}),
        )?,
        klip(
            2,
            "Units",
            "line",
            json!({"value": "units", "time_column": "day",
            "time_bucket": "week", "range": "last_12_weeks"}),
            json!({}),
        )?,
        klip(
            3,
            "Revenue by region",
            "bar",
            json!({"value": "amount", "time_column": "day",
            "group_by": "region", "range": "this_quarter"}),
            json!({"format": "currency"}),
        )?,
        klip(
            4,
            "Top products",
            "bar",
            json!({"value": "amount", "time_column": "day",
            "group_by": "product", "limit": 5, "range": "last_30_days"}),
            json!({}),
        )?,
        klip(
            5,
            "Average order",
            "line",
            json!({"value": "amount", "aggregate": "avg",
            "time_column": "day", "time_bucket": "day", "range": "last_90_days"}),
            json!({"target": 130.0}),
        )?,
        klip(
            6,
            "Orders",
            "line",
            json!({"aggregate": "count", "time_column": "day",
            "time_bucket": "month", "range": "year_to_date"}),
            json!({}),
        )?,
    ])
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Sizes of the Klip engine's scaling run.
const ENGINE_ROWS: [usize; 3] = [10_000, 100_000, 1_000_000];
/// The Klip functions' budget: `Timeout` in template.yaml's globals, in seconds.
const KLIP_BUDGET_SECONDS: f64 = 10.0;

/// The Klip engine alone, as the worker runs it on a data source's stored rows: one pass
/// parsing the rows one at a time and folding each into the 6 Klips' running aggregates, at
/// 10,000, 100,000 and 1,000,000 rows; the time per row shows whether it grows linearly.
/// Lambda gives 1 GB of memory 1024/1769 of a vCPU, so the time there is this machine's
/// (one full core) times 1769/1024.
fn engine_scaling(now: chrono::DateTime<Utc>, klips: &[Klip]) -> Result<(), String> {
    let tz = chrono_tz::America::New_York;
    println!();
    println!("Klip engine: 6 Klips in one pass over the stored rows (parse each row, fold it into each Klip; median of 3)");
    let mut first_per_row = None;
    for count in ENGINE_ROWS {
        let stored = serde_json::to_vec(&rows_of(now, count)).map_err(|e| e.to_string())?;
        let mut samples = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let mut evaluations: Vec<domain::klip::Evaluation> = klips
                .iter()
                .map(|k| domain::klip::Evaluation::start(&k.query, &k.display, tz, now, false))
                .collect();
            let fed = domain::data::each_stored_row(&stored, |row| {
                evaluations.iter_mut().for_each(|e| e.feed(row))
            })?;
            let values: Vec<_> = evaluations.into_iter().map(|e| e.finish().value).collect();
            samples.push(t.elapsed());
            if fed != count as u64 {
                return Err(format!("the engine saw {fed} of {count} rows"));
            }
            if let Some(bad) = values.iter().find_map(|v| v.error.clone()) {
                return Err(format!("bench klip failed: {bad}"));
            }
            std::hint::black_box(values);
        }
        let p50 = median(samples);
        let per_row_ns = p50.as_secs_f64() * 1e9 / count as f64;
        let first = *first_per_row.get_or_insert(per_row_ns);
        let at_1gb = p50.as_secs_f64() * 1769.0 / 1024.0;
        println!(
            "          {count:>9} rows {:10.1} ms  {per_row_ns:7.0} ns per row ({:.2}x the 10,000-row rate)   at 1 GB about {at_1gb:.2} s of the {KLIP_BUDGET_SECONDS} s budget{}",
            p50.as_secs_f64() * 1000.0,
            per_row_ns / first,
            if count == 1_000_000 {
                if at_1gb <= KLIP_BUDGET_SECONDS { " (target: met)" } else { " (target: NOT met)" }
            } else {
                ""
            },
        );
    }
    Ok(())
}

/// Each step's time in every round of [`run`].
#[derive(Default)]
struct Steps {
    /// The baseline: one pass over the rows reading one number from each.
    pass: Vec<Duration>,
    read: Vec<Duration>,
    compute: Vec<Duration>,
    analyse: Vec<Duration>,
    html: Vec<Duration>,
    pdf: Vec<Duration>,
    /// Read to pdf, the baseline's pass left out.
    total: Vec<Duration>,
}

/// What the report of [`run`] is made from: the stored rows, the Klips, the cover, the
/// instant and the time zone.
struct Input<'a> {
    stored: Vec<u8>,
    klips: &'a [Klip],
    cover: Cover<'a>,
    tz: chrono_tz::Tz,
    now: chrono::DateTime<Utc>,
}

impl Steps {
    /// One round of the worker's work over `input`, each step timed; answers the number of
    /// insights and the html's and pdf's sizes (KiB).
    fn round(&mut self, input: &Input) -> Result<(usize, usize, usize), String> {
        let (tz, now) = (input.tz, input.now);
        let start = Instant::now();
        let rows: Vec<Map<String, Value>> =
            serde_json::from_slice(&input.stored).map_err(|e| e.to_string())?;
        self.read.push(start.elapsed());

        // The baseline: one pass over the rows reading one number from each.
        let t = Instant::now();
        let sum: f64 = rows
            .iter()
            .filter_map(|r| r.get("amount").and_then(Value::as_f64))
            .sum();
        self.pass.push(t.elapsed());
        std::hint::black_box(sum);

        let t = Instant::now();
        let computed: Vec<document::Computed> = input
            .klips
            .iter()
            .map(|k| document::compute(k, &rows, None, tz, now))
            .collect();
        self.compute.push(t.elapsed());
        if let Some(bad) = computed.iter().find_map(|c| c.value.error.clone()) {
            return Err(format!("bench klip failed: {bad}"));
        }

        let t = Instant::now();
        let doc = document::build(&input.cover, &computed, tz, now);
        self.analyse.push(t.elapsed());

        let t = Instant::now();
        let page = document::render(&doc, ReportFormat::Html).ok_or("html")?;
        self.html.push(t.elapsed());
        let t = Instant::now();
        let paper = document::render(&doc, ReportFormat::Pdf).ok_or("pdf")?;
        self.pdf.push(t.elapsed());
        self.total
            .push(start.elapsed() - self.pass[self.pass.len() - 1]);
        Ok((doc.highlights.len(), page.len() / 1024, paper.len() / 1024))
    }

    /// Prints each step's median against the baseline's, and the total as a share of the
    /// worker's timeout; `sizes` are the last round's (insights, html KiB, pdf KiB).
    fn print(self, sizes: (usize, usize, usize)) {
        let base = median(self.pass);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!();
        println!(
            "report worker CPU: 6 Klips over {ROWS} rows (median of {ROUNDS}; {} insights, html {} KiB, pdf {} KiB)",
            sizes.0, sizes.1, sizes.2
        );
        println!(
            "baseline  one pass over the rows (sum one column) {:9.2} ms      1.00x",
            ms(base)
        );
        for (name, samples) in [
            ("read the stored rows (JSON)", self.read),
            ("compute the 6 Klips", self.compute),
            ("analysis (insights)", self.analyse),
            ("render html", self.html),
            ("render pdf", self.pdf),
        ] {
            let p50 = median(samples);
            println!(
                "          {name:39} {:9.2} ms {:8.1}x",
                ms(p50),
                p50.as_secs_f64() / base.as_secs_f64()
            );
        }
        let all = median(self.total);
        println!(
            "total     read + compute + analysis + html + pdf  {:9.2} ms {:8.1}x   = {:.2}% of the worker's {WORKER_TIMEOUT_SECONDS} s timeout",
            ms(all),
            all.as_secs_f64() / base.as_secs_f64(),
            all.as_secs_f64() / WORKER_TIMEOUT_SECONDS * 100.0
        );
    }
}

/// Prints the figures; `Err` when a step fails (a bench that cannot run says so).
pub fn run() -> Result<(), String> {
    let now = Utc
        .with_ymd_and_hms(2026, 12, 2, 17, 0, 0)
        .single()
        .ok_or("bench instant")?;
    let tz = chrono_tz::America::New_York;
    let stored = serde_json::to_vec(&rows(now)).map_err(|e| e.to_string())?;
    let klips = klips()?;
    let input = Input {
        stored,
        klips: &klips,
        cover: Cover {
            report_id: "bench",
            title: "Bench",
            description: None,
            window: None,
        },
        tz,
        now,
    };
    let mut steps = Steps::default();
    let mut sizes = (0, 0, 0);
    for _ in 0..ROUNDS {
        sizes = steps.round(&input)?;
    }
    steps.print(sizes);
    engine_scaling(now, &klips)?;
    long_series(now)
}

/// Days of the long series (about 22 years, one row a day).
const LONG_DAYS: i64 = 8_000;
/// Klips in the long-series report.
const LONG_KLIPS: usize = 50;

/// Rows as the engine reads them.
type Rows = Vec<Map<String, Value>>;

/// [`LONG_DAYS`] rows of one a day, trending down with some noise, and [`LONG_KLIPS`]
/// daily line Klips over them without a range.
fn long_series_input(now: chrono::DateTime<Utc>) -> Result<(Rows, Vec<Klip>), String> {
    let rows: Rows = (0..LONG_DAYS)
        .map(|i| {
            let day = (now - Days::days(i)).date_naive();
            let amount = 1_000.0 - i as f64 * 0.05 + ((i * 7_919) % 97) as f64;
            match json!({"day": day.to_string(), "amount": amount}) {
                Value::Object(map) => map,
                _ => Map::new(),
            }
        })
        .collect();
    let klips = (0..LONG_KLIPS)
        .map(|n| {
            klip(
                100 + n,
                &format!("Series {n}"),
                "line",
                json!({"value": "amount", "time_column": "day", "time_bucket": "day"}),
                json!({}),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((rows, klips))
}

/// Klips over a long daily series, with no range (every point analysed): what one anonymous
/// view of a published page computes for such a Klip (analysis and html), and a report of
/// 50 of them (compute, analysis, html, pdf) as a share of the worker's timeout. Theil–Sen
/// over every pair of 8,000 points took 2–3 s and 256 MB a Klip; the analysis now samples
/// the pairs of a long series and counts Mann–Kendall's S by merge sort.
fn long_series(now: chrono::DateTime<Utc>) -> Result<(), String> {
    let tz = chrono_tz::America::New_York;
    let (rows, klips) = long_series_input(now)?;
    let cover = Cover {
        report_id: "bench",
        title: "Long series",
        description: None,
        window: None,
    };
    let (mut pass, mut page, mut report) = (vec![], vec![], vec![]);
    for _ in 0..3 {
        let t = Instant::now();
        let sum: f64 = rows
            .iter()
            .filter_map(|r| r.get("amount").and_then(Value::as_f64))
            .sum();
        pass.push(t.elapsed());
        std::hint::black_box(sum);

        let one = [document::compute(&klips[0], &rows, None, tz, now)];
        if one[0].value.series.len() as i64 != LONG_DAYS {
            return Err(format!(
                "the long series has {} points",
                one[0].value.series.len()
            ));
        }
        let t = Instant::now();
        let doc = document::build(&cover, &one, tz, now);
        std::hint::black_box(document::render(&doc, ReportFormat::Html).ok_or("html")?);
        page.push(t.elapsed());

        let t = Instant::now();
        let computed: Vec<document::Computed> = klips
            .iter()
            .map(|k| document::compute(k, &rows, None, tz, now))
            .collect();
        let doc = document::build(&cover, &computed, tz, now);
        std::hint::black_box(document::render(&doc, ReportFormat::Html).ok_or("html")?);
        std::hint::black_box(document::render(&doc, ReportFormat::Pdf).ok_or("pdf")?);
        report.push(t.elapsed());
    }
    print_long_series(median(pass), median(page), median(report));
    Ok(())
}

/// Prints [`long_series`]'s figures (medians) against `base`, the pass over the rows.
fn print_long_series(base: Duration, page: Duration, report: Duration) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!();
    println!(
        "long series: Klips over {LONG_DAYS} days, no range (median of 3; the baseline is one pass over the {LONG_DAYS} rows)"
    );
    println!(
        "          a published page of 1 such Klip (analysis + html) {:9.2} ms {:8.0}x",
        ms(page),
        page.as_secs_f64() / base.as_secs_f64()
    );
    let share = report.as_secs_f64() / WORKER_TIMEOUT_SECONDS * 100.0;
    println!(
        "          a report of {LONG_KLIPS} such Klips (compute + analysis + html + pdf) {:9.2} ms {:8.0}x   = {share:.1}% of the worker's {WORKER_TIMEOUT_SECONDS} s timeout (target: well inside it, under 25%: {})",
        ms(report),
        report.as_secs_f64() / base.as_secs_f64(),
        if share < 25.0 { "met" } else { "NOT met" }
    );
}
