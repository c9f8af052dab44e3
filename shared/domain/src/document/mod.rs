//! The contents of a report file and its renderings: one section per Klip with its value
//! (current, previous, change, status, series, groups) and the insights the analysis found,
//! written as a self-contained HTML page, vector PDF pages ([`pdf`]), a CSV table or JSON.
//!
//! [`build`] is pure: the worker passes each Klip with the value computed for the run's
//! window, the company's zone and "now". Every number in a file comes from those values or
//! from [`crate::analysis`]; nothing is invented.

use crate::analysis::text::{is_currency_code, DEFAULT_CURRENCY};
use crate::analysis::{self, Bucket, GroupChange, Insight, KlipSeries, NumberStyle, Point, Window};
use crate::klip::{KlipValue, Range, Status, TimeBucket};
use crate::records::Klip;
use crate::reports::RunWindow;
use crate::sets::ReportFormat;
pub mod pdf;
pub mod xlsx;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

/// One Klip of a report.
#[derive(Debug, Clone, Serialize)]
pub struct Section {
    pub klip_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub format: Option<String>,
    pub target: Option<f64>,
    pub higher_is_better: bool,
    /// The range the value covers (`last_30_days`, ...), if any.
    pub window: Option<String>,
    /// The range's days in the company's zone (`2026-10-29 – 2026-12-02 (35 days, the last
    /// one in progress)`, `March 2026`).
    pub period: Option<String>,
    /// The ISO 4217 code of a `currency` Klip's amounts: its `display.currency`, else the
    /// company's ([`company_currency`]). `None` for other formats.
    pub currency: Option<String>,
    pub value: KlipValue,
    pub insights: Vec<Insight>,
}

/// A whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Document {
    pub report_id: String,
    pub title: String,
    pub description: Option<String>,
    #[serde(with = "crate::time::utc")]
    pub generated_at: DateTime<Utc>,
    pub timezone: String,
    pub window: RunWindow,
    /// The best insights across all Klips.
    pub highlights: Vec<Insight>,
    pub sections: Vec<Section>,
}

/// The local midnight that starts `date` in `tz` (the earliest instant, as the Klip engine's
/// buckets do).
fn local_start(date: &str, tz: Tz) -> Option<DateTime<Utc>> {
    let day = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    tz.from_local_datetime(&day.and_hms_opt(0, 0, 0)?)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// The analysis input of one Klip and its value.
pub fn series_of(
    klip: &Klip,
    value: &KlipValue,
    previous_groups: &[crate::klip::Group],
    window: Option<&str>,
    tz: Tz,
    currency: &str,
    now: DateTime<Utc>,
) -> KlipSeries {
    let bucket = match klip.query.time_bucket {
        Some(TimeBucket::Week) => Bucket::Week,
        Some(TimeBucket::Month) => Bucket::Month,
        _ => Bucket::Day,
    };
    let points: Vec<Point> = value
        .series
        .iter()
        .filter_map(|p| {
            Some(Point {
                start: local_start(&p.x, tz)?,
                value: p.y,
            })
        })
        .collect();
    let span = window
        .and_then(|name| Window::preset(name, now, tz))
        .unwrap_or_else(|| {
            let start = points.first().map(|p| p.start).unwrap_or(now);
            Window::all_data(start, now)
        });
    let mut series = KlipSeries::new(&klip.meta.id, &klip.meta.name, bucket, span);
    series.format = klip.display.format.clone();
    series.unit = NumberStyle::of(klip.display.format.as_deref(), currency).unit;
    series.points = points;
    series.groups = value
        .groups
        .iter()
        .map(|g| GroupChange {
            key: g.key.clone(),
            current: g.value,
            previous: previous_groups
                .iter()
                .find(|p| p.key == g.key)
                .map(|p| p.value),
        })
        .collect();
    series.current = value.current;
    series.previous = value.previous;
    series.target = klip.display.target;
    series.higher_is_better = klip.display.higher_is_better;
    series.cumulative = matches!(
        klip.query.aggregate,
        crate::klip::Aggregate::Sum | crate::klip::Aggregate::Count
    );
    series.time_zone = Some(tz);
    series
}

/// A Klip with its value computed for a report, and (for a grouped Klip with a range) its
/// groups in the previous period, so the analysis can say which group drove the change.
#[derive(Debug, Clone)]
pub struct Computed {
    pub klip: Klip,
    pub value: KlipValue,
    pub previous_groups: Vec<crate::klip::Group>,
    /// The value over the same period a year earlier (with a range and data there).
    pub previous_year: Option<f64>,
}

/// Evaluates a Klip for a report over its data source's rows, with the report's window
/// (if any) instead of its own range.
pub fn compute(
    klip: &Klip,
    rows: &[serde_json::Map<String, serde_json::Value>],
    window: Option<Range>,
    tz: Tz,
    now: DateTime<Utc>,
) -> Computed {
    compute_streamed(klip, window, tz, now, |each| rows.iter().for_each(each))
}

/// [`compute`] over the rows `feed` hands, in order, to the function it is given (rows
/// streamed from storage: only running aggregates are held, see
/// [`crate::klip::Evaluation`]).
pub fn compute_streamed(
    klip: &Klip,
    window: Option<Range>,
    tz: Tz,
    now: DateTime<Utc>,
    feed: impl FnOnce(&mut dyn FnMut(&serde_json::Map<String, serde_json::Value>)),
) -> Computed {
    let mut klip = klip.clone();
    if window.is_some() {
        klip.query.range = window;
    }
    let mut evaluation = crate::klip::Evaluation::start(&klip.query, &klip.display, tz, now, true);
    feed(&mut |row| evaluation.feed(row));
    let found = evaluation.finish();
    Computed {
        klip,
        value: found.value,
        previous_groups: found.previous_groups,
        previous_year: found.previous_year,
    }
}

/// What a report is about, for [`build`].
pub struct Cover<'a> {
    pub report_id: &'a str,
    pub title: &'a str,
    pub description: Option<&'a str>,
    /// The report's window preset, or `None` for each Klip's own.
    pub window: Option<&'a str>,
}

/// The company's currency, for `currency` Klips without `display.currency`: its `currency`
/// property (a client's `properties`, set with `PUT /clients/{id}/properties`) when that is
/// an ISO 4217 code (`"eur"` is read as `EUR`), else [`DEFAULT_CURRENCY`] (USD).
pub fn company_currency(
    properties: &std::collections::BTreeMap<String, serde_json::Value>,
) -> String {
    properties
        .get("currency")
        .and_then(serde_json::Value::as_str)
        .map(|code| code.trim().to_ascii_uppercase())
        .filter(|code| is_currency_code(code))
        .unwrap_or_else(|| DEFAULT_CURRENCY.to_owned())
}

/// Builds the document from each Klip and the value computed for the run, with amounts of
/// `currency` Klips that name no currency in USD; see [`build_with_currency`].
pub fn build(cover: &Cover<'_>, klips: &[Computed], tz: Tz, now: DateTime<Utc>) -> Document {
    build_with_currency(cover, klips, tz, DEFAULT_CURRENCY, now)
}

/// Builds the document from each Klip and the value computed for the run; `currency` (the
/// company's, [`company_currency`]) is the currency of `currency` Klips that name none.
pub fn build_with_currency(
    cover: &Cover<'_>,
    klips: &[Computed],
    tz: Tz,
    currency: &str,
    now: DateTime<Utc>,
) -> Document {
    let mut sections = Vec::with_capacity(klips.len());
    let mut all_series = Vec::with_capacity(klips.len());
    for Computed {
        klip,
        value,
        previous_groups,
        previous_year,
    } in klips
    {
        let window = cover
            .window
            .map(str::to_owned)
            .or_else(|| klip.query.range.map(Range::name));
        let klip_currency = klip
            .display
            .currency
            .as_deref()
            .filter(|code| is_currency_code(code))
            .unwrap_or(currency);
        let mut series = series_of(
            klip,
            value,
            previous_groups,
            window.as_deref(),
            tz,
            klip_currency,
            now,
        );
        series.previous_year = *previous_year;
        let period = series
            .window
            .calendar
            .is_some()
            .then(|| series.window.label.clone());
        sections.push(Section {
            klip_id: klip.meta.id.clone(),
            name: klip.meta.name.clone(),
            kind: klip.kind.as_str().to_owned(),
            format: klip.display.format.clone(),
            target: klip.display.target,
            higher_is_better: klip.display.higher_is_better,
            window,
            period,
            currency: (klip.display.format.as_deref() == Some("currency"))
                .then(|| klip_currency.to_owned()),
            value: value.clone(),
            insights: Vec::new(),
        });
        all_series.push(series);
    }
    let analysed = analysis::analyze(&all_series, now);
    for section in &mut sections {
        if let Some(found) = analysed.per_klip.get(&section.klip_id) {
            section.insights = found.clone();
        }
    }
    let span = cover.window.and_then(|name| Window::preset(name, now, tz));
    Document {
        report_id: cover.report_id.to_owned(),
        title: cover.title.to_owned(),
        description: cover.description.map(str::to_owned),
        generated_at: now,
        timezone: tz.name().to_owned(),
        window: RunWindow {
            label: cover.window.unwrap_or("klip").to_owned(),
            start: span.as_ref().map(|w| w.start),
            end: span.map(|w| w.end),
        },
        highlights: analysed.insights,
        sections,
    }
}

/// The preset name of a Klip range (as in its JSON).
/// The file of `format`; `None` only when JSON encoding fails.
pub fn render(document: &Document, format: ReportFormat) -> Option<Vec<u8>> {
    match format {
        ReportFormat::Json => serde_json::to_vec_pretty(document).ok(),
        ReportFormat::Csv => Some(csv(document)),
        ReportFormat::Html => Some(html(document).into_bytes()),
        ReportFormat::Pdf => Some(pdf::render(document)),
        ReportFormat::Xlsx => xlsx::render(document).ok(),
    }
}

fn number(x: Option<f64>) -> String {
    x.map(|v| v.to_string()).unwrap_or_default()
}

/// A text cell as a spreadsheet may open it safely (OWASP's CSV injection rule): a cell that
/// begins with `=`, `+`, `-`, `@`, a tab or a carriage return would be read as a formula
/// (`=HYPERLINK(…)`, `=cmd|' /C calc'!A0`), so it gets a leading `'`, which spreadsheets
/// show as text. A number (`-12.5`, `+3`) is left as it is: it is a value, not a formula.
pub fn csv_text(cell: &str) -> std::borrow::Cow<'_, str> {
    let formula = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if formula && cell.trim().parse::<f64>().is_err() {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// One row per value, series point and group: `klip_id, klip, kind, x, value`. Every text
/// cell (the Klip's name, a series label, a group's key) goes through [`csv_text`].
fn csv(document: &Document) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let _ = writer.write_record(["klip_id", "klip", "measure", "x", "value"]);
    for s in &document.sections {
        let v = &s.value;
        let name = csv_text(&s.name);
        let name = name.as_ref();
        for (measure, value) in [
            ("current", v.current),
            ("previous", v.previous),
            ("change", v.change),
            ("change_pct", v.change_pct),
            ("target", s.target),
        ] {
            if value.is_some() {
                let _ = writer.write_record([
                    s.klip_id.as_str(),
                    name,
                    measure,
                    "",
                    number(value).as_str(),
                ]);
            }
        }
        for p in &v.series {
            let x = csv_text(&p.x);
            let _ = writer.write_record([
                s.klip_id.as_str(),
                name,
                "series",
                x.as_ref(),
                p.y.to_string().as_str(),
            ]);
        }
        for g in &v.groups {
            let key = csv_text(&g.key);
            let _ = writer.write_record([
                s.klip_id.as_str(),
                name,
                "group",
                key.as_ref(),
                g.value.to_string().as_str(),
            ]);
        }
    }
    writer.into_inner().unwrap_or_default()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

pub(crate) fn style(section: &Section) -> NumberStyle {
    NumberStyle::of(
        section.format.as_deref(),
        section.currency.as_deref().unwrap_or(DEFAULT_CURRENCY),
    )
}

/// When a document was made, in its zone: `2026-12-01 07:00 EST (America/New_York)`; a
/// zone name never labels a UTC time.
pub(crate) fn generated_line(document: &Document) -> String {
    let zone: Tz = document.timezone.parse().unwrap_or(chrono_tz::UTC);
    format!(
        "{} ({})",
        document
            .generated_at
            .with_timezone(&zone)
            .format("%Y-%m-%d %H:%M %Z"),
        zone.name()
    )
}

/// A line chart of the series, as inline SVG.
fn line_chart(section: &Section) -> String {
    let points = &section.value.series;
    if points.len() < 2 {
        return String::new();
    }
    let (w, h, pad) = (640.0, 180.0, 28.0);
    let (min, max) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.y), b.max(p.y))
        });
    let (min, max) = if max > min {
        (min, max)
    } else {
        (min - 1.0, max + 1.0)
    };
    let x = |i: usize| pad + (w - 2.0 * pad) * i as f64 / (points.len() - 1) as f64;
    let y = |v: f64| h - pad - (h - 2.0 * pad) * (v - min) / (max - min);
    let path: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(p.y)))
        .collect();
    let anomalies: Vec<String> = section
        .insights
        .iter()
        .filter(|i| i.kind == analysis::InsightType::Anomaly)
        .filter_map(|i| i.values.get("date").and_then(|d| d.as_str()))
        .filter_map(|date| points.iter().position(|p| p.x == date))
        .map(|i| {
            format!(
                r##"<circle cx="{:.1}" cy="{:.1}" r="5" fill="#d9480f"><title>{}: {}</title></circle>"##,
                x(i),
                y(points[i].y),
                escape(&points[i].x),
                style(section).value(points[i].y)
            )
        })
        .collect();
    let st = style(section);
    format!(
        r##"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{name} over time">
<line x1="{pad}" y1="{base}" x2="{right}" y2="{base}" stroke="#ced4da"/>
<text x="{pad}" y="14" class="axis">{maxl}</text><text x="{pad}" y="{low}" class="axis">{minl}</text>
<text x="{pad}" y="{h}" class="axis">{first}</text><text x="{right}" y="{h}" class="axis" text-anchor="end">{last}</text>
<polyline fill="none" stroke="#1c7ed6" stroke-width="2" points="{path}"/>
{anomalies}
</svg>"##,
        name = escape(&section.name),
        base = h - pad,
        right = w - pad,
        low = h - pad - 4.0,
        maxl = escape(&st.value(max)),
        minl = escape(&st.value(min)),
        first = escape(&points[0].x),
        last = escape(&points[points.len() - 1].x),
        path = path.join(" "),
        anomalies = anomalies.join("\n"),
    )
}

/// A horizontal bar chart of the groups, as inline SVG.
fn bar_chart(section: &Section) -> String {
    let groups = &section.value.groups;
    if groups.is_empty() {
        return String::new();
    }
    let shown = &groups[..groups.len().min(12)];
    let max = shown
        .iter()
        .map(|g| g.value.abs())
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let (w, row) = (640.0, 24.0);
    let st = style(section);
    let bars: Vec<String> = shown
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let top = i as f64 * row;
            let len = 380.0 * g.value.abs() / max;
            format!(
                r##"<text x="0" y="{ty:.1}" class="label">{key}</text><rect x="160" y="{ry:.1}" width="{len:.1}" height="16" fill="#1c7ed6"/><text x="{vx:.1}" y="{ty:.1}" class="label">{value}</text>"##,
                ty = top + 13.0,
                ry = top + 2.0,
                key = escape(&g.key),
                vx = 166.0 + len,
                value = escape(&st.value(g.value)),
            )
        })
        .collect();
    format!(
        r##"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{name} by group">{bars}</svg>"##,
        h = row * shown.len() as f64,
        name = escape(&section.name),
        bars = bars.join("")
    )
}

pub(crate) fn status_word(status: Status) -> (&'static str, &'static str) {
    match status {
        Status::Good => ("good", "on target"),
        Status::Warning => ("warning", "near target"),
        Status::Bad => ("bad", "off target"),
        Status::None => ("none", ""),
    }
}

/// `last 35 days · 2026-10-29 – 2026-12-02`: the preset and its days.
pub(crate) fn window_line(window: &str, period: Option<&str>) -> String {
    let preset = window.replace('_', " ");
    match period {
        Some(days) if days != preset => format!("{preset} · {days}"),
        _ => preset,
    }
}

/// One self-contained page: inline CSS and SVG, no external request.
pub fn html(document: &Document) -> String {
    let mut body = highlights_html(document);
    for s in &document.sections {
        body.push_str(&section_html(s));
    }
    page_html(document, &body)
}

/// The document's highlights as a list (nothing when it has none).
fn highlights_html(document: &Document) -> String {
    let mut html = String::new();
    if document.highlights.is_empty() {
        return html;
    }
    html.push_str("<section class=\"highlights\"><h2>Highlights</h2><ul>");
    for insight in &document.highlights {
        html.push_str(&format!(
            "<li class=\"{}\">{}</li>",
            escape(&format!("{:?}", insight.sentiment).to_lowercase()),
            escape(&insight.text)
        ));
    }
    html.push_str("</ul></section>");
    html
}

/// One Klip's section: its figures, window, charts and insights, or why it was not computed.
fn section_html(s: &Section) -> String {
    let mut html = format!("<section class=\"klip\"><h2>{}</h2>", escape(&s.name));
    if let Some(error) = &s.value.error {
        html.push_str(&format!(
            "<p class=\"error\">Not computed: {}</p></section>",
            escape(error)
        ));
        return html;
    }
    html.push_str(&kpi_html(s));
    if let Some(window) = &s.window {
        html.push_str(&format!(
            "<p class=\"window\">{}</p>",
            escape(&window_line(window, s.period.as_deref()))
        ));
    }
    html.push_str(&line_chart(s));
    html.push_str(&bar_chart(s));
    html.push_str(&insights_html(s));
    html.push_str("</section>");
    html
}

/// A section's figures: the value, its change against the previous period and its status.
fn kpi_html(s: &Section) -> String {
    let st = style(s);
    let v = &s.value;
    let (status_class, status_text) = status_word(v.status);
    let mut html = String::from("<div class=\"kpi\">");
    html.push_str(&format!(
        "<span class=\"value\">{}</span>",
        escape(&v.current.map(|c| st.value(c)).unwrap_or_else(|| "—".into()))
    ));
    if let (Some(change), Some(previous)) = (v.change, v.previous) {
        let pct = v
            .change_pct
            .map(|p| format!(" ({})", analysis::text::format_pct(p)))
            .unwrap_or_default();
        html.push_str(&format!(
            "<span class=\"change\">{}{} vs {}</span>",
            escape(&st.change(change)),
            escape(&pct),
            escape(&st.value(previous))
        ));
    }
    if !status_text.is_empty() {
        html.push_str(&format!(
            "<span class=\"status {status_class}\">{status_text}{}</span>",
            s.target
                .map(|t| format!(" (target {})", escape(&st.value(t))))
                .unwrap_or_default()
        ));
    }
    html.push_str("</div>");
    html
}

/// A section's insights as a list, each with its method (nothing when it has none).
fn insights_html(s: &Section) -> String {
    let mut html = String::new();
    if s.insights.is_empty() {
        return html;
    }
    html.push_str("<h3>What the data shows</h3><ul class=\"insights\">");
    for insight in &s.insights {
        html.push_str(&format!(
            "<li>{}<br><small>{}</small></li>",
            escape(&insight.text),
            escape(&insight.method)
        ));
    }
    html.push_str("</ul>");
    html
}

/// The page around the sections: title, inline CSS, description and when it was generated.
fn page_html(document: &Document, body: &str) -> String {
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body{{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#212529;max-width:760px;margin:2rem auto;padding:0 1rem}}
h1{{font-size:1.6rem;margin:0 0 .25rem}} h2{{font-size:1.15rem;margin:0 0 .5rem}} h3{{font-size:.95rem;margin:1rem 0 .25rem}}
.meta{{color:#6c757d;margin:0 0 1.5rem}} section{{border:1px solid #dee2e6;border-radius:8px;padding:1rem 1.25rem;margin:0 0 1rem;break-inside:avoid}}
.kpi{{display:flex;gap:1rem;align-items:baseline;flex-wrap:wrap}} .value{{font-size:2rem;font-weight:600}}
.change{{color:#495057}} .status{{padding:.1rem .5rem;border-radius:1rem;font-size:.85rem}}
.good{{background:#d3f9d8;color:#2b8a3e}} .warning{{background:#fff3bf;color:#e67700}} .bad{{background:#ffe3e3;color:#c92a2a}}
.window{{color:#6c757d;margin:.25rem 0}} .chart{{width:100%;height:auto;margin:.5rem 0}} .axis,.label{{font-size:11px;fill:#495057}}
.insights li,.highlights li{{margin:.25rem 0}} small{{color:#6c757d}} .error{{color:#c92a2a}}
.highlights .negative{{color:#c92a2a}} .highlights .positive{{color:#2b8a3e}}
@media print{{body{{margin:0}} section{{border-color:#adb5bd}}}}
</style></head><body>
<h1>{title}</h1>
<p class="meta">{description}Generated <time datetime="{generated_utc}">{generated}</time>.</p>
{body}
</body></html>
"##,
        title = escape(&document.title),
        description = document
            .description
            .as_deref()
            .map(|d| format!("{}. ", escape(d)))
            .unwrap_or_default(),
        generated_utc = crate::time::rfc3339(document.generated_at),
        generated = escape(&generated_line(document)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    fn klip(query: serde_json::Value, display: serde_json::Value) -> Klip {
        serde_json::from_value(json!({
            "meta": {"id": "0123456789abcdef0123456789abcdef", "company_id": "c", "name": "Signups <daily>",
                     "slug": "signups", "version": 1, "created_by": "u", "date_created": "2026-01-01T00:00:00Z", "last_updated": "2026-01-01T00:00:00Z"},
            "type": "line", "datasource_id": null, "query": query, "display": display
        }))
        .unwrap()
    }

    fn rows_with_spike() -> Vec<serde_json::Map<String, serde_json::Value>> {
        (1..=30)
            .map(|d| {
                let n = if d == 20 {
                    400.0
                } else {
                    100.0 + (d % 3) as f64
                };
                json!({"day": format!("2026-11-{d:02}"), "n": n})
                    .as_object()
                    .unwrap()
                    .clone()
            })
            .collect()
    }

    #[test]
    fn a_planted_spike_is_named_in_every_format() {
        let k = klip(
            json!({"value": "n", "aggregate": "sum", "time_column": "day", "time_bucket": "day"}),
            json!({"target": 3000}),
        );
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        let tz = chrono_tz::America::New_York;
        let cover = Cover {
            report_id: "r",
            title: "Weekly <KPIs>",
            description: None,
            window: None,
        };
        let doc = build(
            &cover,
            &[compute(&k, &rows_with_spike(), None, tz, now)],
            tz,
            now,
        );
        let anomaly = doc.sections[0]
            .insights
            .iter()
            .find(|i| i.kind == analysis::InsightType::Anomaly)
            .expect("the spike is found");
        assert_eq!(anomaly.values["date"], "2026-11-20");
        let html = String::from_utf8(render(&doc, ReportFormat::Html).unwrap()).unwrap();
        assert!(html.contains("Weekly &lt;KPIs&gt;") && !html.contains("<KPIs>"));
        assert!(html.contains("<svg") && !html.contains("http://") && !html.contains("https://"));
        assert!(html.contains(&escape(&anomaly.text)));
        let csv = String::from_utf8(render(&doc, ReportFormat::Csv).unwrap()).unwrap();
        assert!(csv.starts_with("klip_id,klip,measure,x,value\n"));
        assert!(csv.contains("series,2026-11-20,400"), "{csv}");
        let parsed: serde_json::Value =
            serde_json::from_slice(&render(&doc, ReportFormat::Json).unwrap()).unwrap();
        // 30 days of 100 + (day mod 3), with day 20 at 400 instead of 102.
        assert_eq!(parsed["sections"][0]["value"]["current"], json!(3328.0));
        let pdf = render(&doc, ReportFormat::Pdf).unwrap();
        assert!(pdf.starts_with(b"%PDF-") && pdf.ends_with(b"%%EOF\n") || pdf.ends_with(b"%%EOF"));
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.contains("/Type /Page") && text.contains("/BaseFont /Helvetica"));
    }

    /// Every cell of a sheet as calamine reads it.
    fn sheet(
        book: &mut calamine::Xlsx<std::io::Cursor<Vec<u8>>>,
        name: &str,
    ) -> calamine::Range<calamine::Data> {
        use calamine::Reader;
        book.worksheet_range(name).expect("the sheet")
    }

    #[test]
    fn an_xlsx_report_reads_back_with_its_numbers_formats_charts_and_text_as_text() {
        use calamine::{Data, Reader};
        let money = klip(
            json!({"value": "n", "aggregate": "sum", "time_column": "day", "time_bucket": "day"}),
            json!({"format": "currency", "currency": "EUR", "target": 3000}),
        );
        let mut by_region = klip(
            json!({"value": "n", "aggregate": "sum", "group_by": "region"}),
            json!({}),
        );
        by_region.meta.name = "=HYPERLINK(\"http://evil\",\"x\")".into();
        by_region.meta.id = "fedcba9876543210fedcba9876543210".into();
        let regions: Vec<serde_json::Map<String, serde_json::Value>> =
            [("=1+1", 5.0), ("north", 7.5)]
                .iter()
                .map(|(r, n)| json!({"region": r, "n": n}).as_object().unwrap().clone())
                .collect();
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        let tz = chrono_tz::America::New_York;
        let cover = Cover {
            report_id: "r",
            title: "t",
            description: None,
            window: None,
        };
        let doc = build(
            &cover,
            &[
                compute(&money, &rows_with_spike(), None, tz, now),
                compute(&by_region, &regions, None, tz, now),
            ],
            tz,
            now,
        );
        let bytes = render(&doc, ReportFormat::Xlsx).expect("an xlsx");
        let mut book: calamine::Xlsx<_> =
            calamine::open_workbook_from_rs(std::io::Cursor::new(bytes.clone())).expect("it opens");
        assert_eq!(
            book.sheet_names(),
            [
                "Signups <daily>",
                "=HYPERLINK(\"http   evil\",\"x\")",
                "Insights"
            ]
        );
        // The first Klip: its value, previous, change, status, then the series as a table.
        let first = sheet(&mut book, "Signups <daily>");
        assert_eq!(
            first.get_value((0, 1)),
            Some(&Data::String("Signups <daily>".into()))
        );
        assert_eq!(first.get_value((2, 1)), Some(&Data::Float(3328.0)));
        assert_eq!(first.get_value((7, 1)), Some(&Data::Float(3000.0)));
        assert_eq!(first.get_value((9, 0)), Some(&Data::String("Date".into())));
        let values: Vec<f64> = (10..40)
            .map(|r| match first.get_value((r, 1)) {
                Some(Data::Float(v)) => *v,
                other => panic!("row {r}: {other:?}"),
            })
            .collect();
        assert_eq!(values.iter().sum::<f64>(), 3328.0);
        assert_eq!(values[19], 400.0);
        // Days are native dates (serial numbers with a date format), 2026-11-20 among them.
        match first.get_value((29, 0)) {
            Some(Data::DateTime(d)) => assert_eq!(d.as_f64(), 46346.0),
            other => panic!("{other:?}"),
        }
        // The groups Klip: formula-looking text stays text, no cell holds a formula.
        let second = sheet(&mut book, "=HYPERLINK(\"http   evil\",\"x\")");
        assert_eq!(
            second.get_value((0, 1)),
            Some(&Data::String("=HYPERLINK(\"http://evil\",\"x\")".into()))
        );
        let keys: Vec<&Data> = (10..12).filter_map(|r| second.get_value((r, 0))).collect();
        assert!(keys.contains(&&Data::String("=1+1".into())), "{keys:?}");
        for name in book.sheet_names() {
            let formulas = book.worksheet_formula(&name).expect("formulas");
            assert!(
                formulas.used_cells().all(|(_, _, f)| f.is_empty()),
                "{name}"
            );
        }
        // Insights: one row each, with type, sentence, method and numbers.
        let insights = sheet(&mut book, "Insights");
        let anomaly_row = (1..insights.height() as u32)
            .find(|r| insights.get_value((*r, 1)) == Some(&Data::String("anomaly".into())))
            .expect("the spike's insight");
        match insights.get_value((anomaly_row, 5)) {
            Some(Data::String(numbers)) => assert!(numbers.contains("2026-11-20"), "{numbers}"),
            other => panic!("{other:?}"),
        }
        // A native chart per Klip (a line for the series, columns for the groups), and the
        // euro amounts' format.
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip");
        let mut part = |name: &str| {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut zip.by_name(name).expect(name), &mut text).unwrap();
            text
        };
        assert!(part("xl/charts/chart1.xml").contains("<c:lineChart>"));
        assert!(part("xl/charts/chart2.xml").contains("<c:barChart>"));
        assert!(
            part("xl/styles.xml").contains("&quot;€&quot;#,##0.00"),
            "{}",
            part("xl/styles.xml")
        );
    }

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_are_text() {
        for formula in [
            "=cmd|' /C calc'!A0",
            "=HYPERLINK(\"http://x\",\"y\")",
            "+A1",
            "-A1+1",
            "@SUM(A1)",
            "\tx",
            "\rx",
        ] {
            assert_eq!(csv_text(formula), format!("'{formula}"), "{formula:?}");
        }
        for kept in ["Revenue", "-12.5", "+3", "2026-11-20", "a=b", ""] {
            assert_eq!(csv_text(kept), kept);
        }
        let k = klip(
            json!({"value": "n", "aggregate": "sum", "time_column": "day", "time_bucket": "day"}),
            json!({}),
        );
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        let tz = chrono_tz::America::New_York;
        let cover = Cover {
            report_id: "r",
            title: "t",
            description: None,
            window: None,
        };
        let mut doc = build(
            &cover,
            &[compute(&k, &rows_with_spike(), None, tz, now)],
            tz,
            now,
        );
        doc.sections[0].name = "=HYPERLINK(\"http://evil\")".into();
        doc.sections[0].value.groups = vec![crate::klip::Group {
            key: "@SUM(1+1)".into(),
            value: -4.0,
        }];
        let csv = String::from_utf8(render(&doc, ReportFormat::Csv).unwrap()).unwrap();
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        for record in reader.records() {
            let record = record.unwrap();
            for cell in [&record[1], &record[3]] {
                assert!(!cell.starts_with(['=', '+', '-', '@']), "{csv}");
            }
        }
        assert!(csv.contains("group,'@SUM(1+1),-4"), "{csv}");
    }

    /// Daily amounts for `last_30_days` as of 2026-12-06 10:00 in New York (29 complete
    /// days and today's), with a spike on 2026-11-20.
    fn thirty_days() -> (
        Vec<serde_json::Map<String, serde_json::Value>>,
        DateTime<Utc>,
    ) {
        let first = NaiveDate::from_ymd_opt(2026, 11, 7).unwrap();
        let rows = (0..30u64)
            .map(|i| {
                let day = first + chrono::Days::new(i);
                let n = if i == 13 {
                    4000.0
                } else {
                    1000.0 + (i % 3) as f64
                };
                json!({"day": day.format("%Y-%m-%d").to_string(), "n": n})
                    .as_object()
                    .unwrap()
                    .clone()
            })
            .collect();
        (rows, Utc.with_ymd_and_hms(2026, 12, 6, 15, 0, 0).unwrap())
    }

    #[test]
    fn currency_klips_show_their_currency_or_the_companys() {
        let (rows, now) = thirty_days();
        let tz = chrono_tz::America::New_York;
        let query = json!({"value": "n", "aggregate": "sum", "time_column": "day",
                           "time_bucket": "day", "range": "last_30_days"});
        let mut euros = klip(
            query.clone(),
            json!({"format": "currency", "currency": "EUR", "target": 50000}),
        );
        euros.meta.id = "e".repeat(32);
        euros.meta.name = "Revenue".into();
        let mut company = klip(query.clone(), json!({"format": "currency"}));
        company.meta.id = "c".repeat(32);
        company.meta.name = "Costs".into();
        let mut rupees = klip(
            query.clone(),
            json!({"format": "currency", "currency": "INR"}),
        );
        rupees.meta.id = "a".repeat(32);
        let mut plain = klip(query, json!({"format": "number", "currency": "EUR"}));
        plain.meta.id = "b".repeat(32);
        let cover = Cover {
            report_id: "r",
            title: "Money",
            description: None,
            window: None,
        };
        let computed: Vec<Computed> = [&euros, &company, &rupees, &plain]
            .into_iter()
            .map(|k| compute(k, &rows, None, tz, now))
            .collect();
        let doc = build_with_currency(&cover, &computed, tz, "GBP", now);
        let codes: Vec<Option<&str>> = doc.sections.iter().map(|s| s.currency.as_deref()).collect();
        assert_eq!(codes, [Some("EUR"), Some("GBP"), Some("INR"), None]);
        // The sentences: the spike of each Klip in its own currency.
        let spike = |i: usize| {
            doc.sections[i]
                .insights
                .iter()
                .find(|x| x.kind == analysis::InsightType::Anomaly)
                .map(|x| x.text.clone())
                .unwrap_or_default()
        };
        assert!(
            spike(0).starts_with("Revenue: €4,000 on 2026-11-20"),
            "{}",
            spike(0)
        );
        assert!(
            spike(1).starts_with("Costs: £4,000 on 2026-11-20"),
            "{}",
            spike(1)
        );
        assert!(spike(2).contains("₹4,000"), "{}", spike(2));
        assert!(spike(3).contains(": 4,000 on"), "{}", spike(3));
        // The page: value, change, target and chart labels.
        let html = String::from_utf8(render(&doc, ReportFormat::Html).unwrap()).unwrap();
        let total = format!(
            "€{}",
            analysis::text::format_number(doc.sections[0].value.current.unwrap())
        );
        assert!(
            html.contains(&format!("<span class=\"value\">{total}</span>")),
            "{html}"
        );
        assert!(
            html.contains("(target €50,000)") && html.contains("£4,000"),
            "{html}"
        );
        assert!(!html.contains("$"), "no dollar anywhere: {html}");
        // The PDF: € is WinAnsi 0x80, the rupee its code.
        // (pdf-writer writes a string with a byte over 0x7F in hex.) To look at it:
        // PULSEBOARD_REPORT_DIR=/tmp/r cargo test -p pulseboard-domain --lib currency, then
        // pdftoppm -png /tmp/r/currencies.pdf /tmp/r/currencies.
        let bytes = render(&doc, ReportFormat::Pdf).unwrap();
        if let Ok(dir) = std::env::var("PULSEBOARD_REPORT_DIR") {
            let dir = std::path::Path::new(&dir);
            std::fs::write(dir.join("currencies.pdf"), &bytes).unwrap();
            std::fs::write(dir.join("currencies.html"), &html).unwrap();
        }
        let pdf = String::from_utf8_lossy(&bytes).to_uppercase();
        let hex = |text: &str| -> String {
            pdf::encode(text)
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect()
        };
        assert_eq!(hex("€50,000"), "8035302C303030");
        assert!(pdf.contains(&hex("(target €50,000)")), "€50,000 in the PDF");
        assert!(pdf.contains(&hex("£4,000")), "£4,000 in the PDF");
        assert!(pdf.contains("INR 4,000"), "₹ is written INR in the PDF");
        // The company's default: its `currency` property, else USD.
        let props =
            |v: serde_json::Value| -> std::collections::BTreeMap<String, serde_json::Value> {
                serde_json::from_value(v).unwrap()
            };
        assert_eq!(company_currency(&props(json!({"currency": "SEK"}))), "SEK");
        assert_eq!(
            company_currency(&props(json!({"currency": " eur "}))),
            "EUR"
        );
        assert_eq!(company_currency(&props(json!({"currency": "euro"}))), "USD");
        assert_eq!(company_currency(&props(json!({"currency": 978}))), "USD");
        assert_eq!(company_currency(&props(json!({}))), "USD");
        let usd = build(&cover, &computed[1..2], tz, now);
        assert_eq!(usd.sections[0].currency.as_deref(), Some("USD"));
    }

    #[test]
    fn windows_say_their_partial_day_and_times_are_in_the_zone_they_name() {
        let (rows, now) = thirty_days();
        let tz = chrono_tz::America::New_York;
        let k = klip(
            json!({"value": "n", "aggregate": "sum", "time_column": "day", "time_bucket": "day"}),
            json!({}),
        );
        let cover = Cover {
            report_id: "r",
            title: "Window",
            description: None,
            window: Some("last_30_days"),
        };
        let doc = build(
            &cover,
            &[compute(&k, &rows, Range::parse("last_30_days"), tz, now)],
            tz,
            now,
        );
        let label = "2026-11-07 – 2026-12-06 (30 days, the last one in progress)";
        assert_eq!(doc.sections[0].period.as_deref(), Some(label));
        assert_eq!(
            window_line("last_30_days", doc.sections[0].period.as_deref()),
            format!("last 30 days · {label}")
        );
        // 15:00 UTC is 10:00 in New York, and is shown as such.
        assert_eq!(
            generated_line(&doc),
            "2026-12-06 10:00 EST (America/New_York)"
        );
        let html = String::from_utf8(render(&doc, ReportFormat::Html).unwrap()).unwrap();
        assert!(
            html.contains(r#"Generated <time datetime="2026-12-06T15:00:00Z">2026-12-06 10:00 EST (America/New_York)</time>."#),
            "{html}"
        );
        assert!(html.contains(&escape(label)), "{html}");
        let pdf = String::from_utf8_lossy(&render(&doc, ReportFormat::Pdf).unwrap()).into_owned();
        assert!(pdf.contains("Generated 2026-12-06 10:00 EST"), "{pdf}");
        assert!(!pdf.contains("15:00"), "no UTC time in the PDF");
        // In summer the abbreviation follows (EDT), and UTC is named UTC.
        let mut summer = doc.clone();
        summer.generated_at = Utc.with_ymd_and_hms(2026, 7, 1, 15, 0, 0).unwrap();
        assert_eq!(
            generated_line(&summer),
            "2026-07-01 11:00 EDT (America/New_York)"
        );
        summer.timezone = "UTC".into();
        assert_eq!(generated_line(&summer), "2026-07-01 15:00 UTC (UTC)");
        // Every record sentence counts complete days, never the window's 30 as 29.
        for insight in &doc.sections[0].insights {
            assert!(!insight.text.contains("(29 days)"), "{}", insight.text);
        }
    }

    #[test]
    fn a_flat_series_says_nothing() {
        let k = klip(
            json!({"value": "n", "aggregate": "sum", "time_column": "day", "time_bucket": "day"}),
            json!({}),
        );
        let rows: Vec<_> = (1..=30)
            .map(|d| {
                json!({"day": format!("2026-11-{d:02}"), "n": 5})
                    .as_object()
                    .unwrap()
                    .clone()
            })
            .collect();
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        let tz = chrono_tz::UTC;
        let cover = Cover {
            report_id: "r",
            title: "t",
            description: None,
            window: None,
        };
        let doc = build(&cover, &[compute(&k, &rows, None, tz, now)], tz, now);
        assert!(
            doc.sections[0].insights.is_empty(),
            "{:?}",
            doc.sections[0].insights
        );
        assert!(doc.highlights.is_empty());
    }

    #[test]
    fn the_group_that_drove_the_change_is_named() {
        let k = klip(
            json!({"value": "n", "aggregate": "sum", "time_column": "day", "group_by": "region", "range": "last_30_days"}),
            json!({}),
        );
        // The 30 days before: both regions 10 a day; the last 30: APAC unchanged, EMEA 40.
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        let mut rows = Vec::new();
        for back in 0..60 {
            let day = (now - chrono::Duration::days(back)).date_naive();
            for (region, n) in [("APAC", 10), ("EMEA", if back < 30 { 40 } else { 10 })] {
                rows.push(
                    json!({"day": day.to_string(), "region": region, "n": n})
                        .as_object()
                        .unwrap()
                        .clone(),
                );
            }
        }
        let computed = compute(&k, &rows, None, chrono_tz::UTC, now);
        assert_eq!(computed.previous_groups.len(), 2);
        let cover = Cover {
            report_id: "r",
            title: "t",
            description: None,
            window: None,
        };
        let doc = build(&cover, &[computed], chrono_tz::UTC, now);
        let driver = doc.sections[0]
            .insights
            .iter()
            .find(|i| i.kind == analysis::InsightType::Driver)
            .unwrap_or_else(|| panic!("no driver in {:?}", doc.sections[0].insights));
        assert!(driver.text.contains("EMEA"), "{}", driver.text);
    }
}
