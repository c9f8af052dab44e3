//! A report over planted data (issue: the analysis and PDF): six Klips over 70 days of rows,
//! each with one thing planted — a trend, a spike, a weekly season with one odd Saturday, a
//! group that drives the change, a target out of reach — and one of noise only. The same
//! report in json, html and pdf must name each planted thing with its method and numbers,
//! and say nothing about the noise.
//!
//! The rows are made relative to today (New York) because the worker's clock is the real
//! one; every value depends only on how many days back its row is, so the series the report
//! looks at is the same whatever the date (only which weekday is which moves).

use chrono::{Datelike, Duration, NaiveDate, Utc, Weekday};
use chrono_tz::America::New_York;
use pulseboard_tests::{json, TestApp};
use serde_json::{json, Value};

/// Rows go back this many days (today is 0): the report's window and the one before it.
const DAYS: i64 = 70;
/// The report's window.
const WINDOW: &str = "last_35_days";
const SPIKE_BACK: i64 = 10;
const TARGET: f64 = 3000.0;

/// xorshift64*: the same numbers on every run.
struct Noise(u64);

impl Noise {
    /// Uniform in `[-1, 1)`.
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

struct Planted {
    daily_csv: String,
    sales_csv: String,
    spike_day: NaiveDate,
    odd_saturday: NaiveDate,
}

fn plant() -> Planted {
    let today = Utc::now().with_timezone(&New_York).date_naive();
    // The most recent Saturday at least a week back (complete, and well inside the window).
    let odd_saturday = (7..14)
        .map(|back| today - Duration::days(back))
        .find(|d| d.weekday() == Weekday::Sat)
        .expect("a Saturday in any 7 days");
    let mut daily = String::from("day,revenue,signups,visits,orders,noise\n");
    let mut sales = String::from("day,region,amount\n");
    let (mut a, mut b, mut c, mut d) = (
        Noise(0x9E37_79B9),
        Noise(0x1234_5678),
        Noise(0xDEAD_BEEF),
        Noise(0x0BAD_CAFE),
    );
    for back in (0..DAYS).rev() {
        let day = today - Duration::days(back);
        let i = (DAYS - 1 - back) as f64;
        // A trend: +20 a day, with ±15 of noise.
        let revenue = round1(1000.0 + 20.0 * i + 15.0 * a.next());
        // A spike: about 100 a day, 400 once.
        let signups = if back == SPIKE_BACK {
            400.0
        } else {
            round1(100.0 + 3.0 * b.next())
        };
        // A weekly season: weekdays about 1000, weekends about 400; one Saturday at 1000.
        let weekend = matches!(day.weekday(), Weekday::Sat | Weekday::Sun);
        let visits = if day == odd_saturday {
            1000.0
        } else if weekend {
            round1(400.0 + 10.0 * c.next())
        } else {
            round1(1000.0 + 10.0 * c.next())
        };
        // About 50 orders a day against a target of 3,000 for the window: out of reach.
        let orders = round1(50.0 + 2.0 * d.next());
        // Noise only; yesterday (the last complete day) sits in the middle, so it sets no record.
        let noise = if back == 1 {
            500.0
        } else {
            round1(500.0 + 20.0 * d.next())
        };
        daily.push_str(&format!(
            "{day},{revenue},{signups},{visits},{orders},{noise}\n"
        ));
        // Three regions at 500 a day; in the window, west sells 900.
        for region in ["north", "south", "west"] {
            let amount = if region == "west" && back < 35 {
                900
            } else {
                500
            };
            sales.push_str(&format!("{day},{region},{amount}\n"));
        }
    }
    Planted {
        daily_csv: daily,
        sales_csv: sales,
        spike_day: today - Duration::days(SPIKE_BACK),
        odd_saturday,
    }
}

async fn created(app: &TestApp, path: &str, body: Value) -> String {
    let (status, body) = json(app.post(path, body).await).await;
    assert_eq!(status, 201, "{path}: {body}");
    body["data"]["id"].as_str().unwrap().to_owned()
}

async fn source(app: &TestApp, name: &str, csv: String) -> String {
    let id = created(app, "/datasources", json!({"name": name, "format": "csv"})).await;
    let r = app
        .http
        .put(app.url(&format!("/datasources/{id}/data")))
        .header("kf-api-key", app.key())
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    id
}

/// A daily line Klip summing `column` of the daily source.
async fn line(app: &TestApp, ds: &str, name: &str, column: &str, display: Value) -> String {
    created(
        app,
        "/klips",
        json!({"name": name, "type": "line", "datasource_id": ds, "display": display,
            "query": {"value": column, "aggregate": "sum", "time_column": "day",
                "time_bucket": "day", "range": "last_30_days"}}),
    )
    .await
}

/// Generates the report in `format` over the planted window and answers its file; with
/// `PULSEBOARD_REPORT_DIR` set (`scripts/report-images.sh`), also writes it there as
/// `planted.<format>`.
async fn generated(app: &TestApp, klips: &[String], format: &str) -> Vec<u8> {
    generated_in(app, klips, format, Some(WINDOW)).await
}

/// Generates the report in `format` over `window` (none: each Klip's own range, all data for
/// a Klip without one) and answers its file.
async fn generated_in(
    app: &TestApp,
    klips: &[String],
    format: &str,
    window: Option<&str>,
) -> Vec<u8> {
    let mut body =
        json!({"name": format!("Planted {format}"), "klip_ids": klips, "format": format});
    if let Some(window) = window {
        body["window"] = json!(window);
    }
    let id = created(app, "/reports", body).await;
    let (status, body) = json(
        app.post(&format!("/reports/{id}/generate"), json!({}))
            .await,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let run = body["data"]["id"].as_str().unwrap().to_owned();
    for _ in 0..300 {
        let (_, body) = json(app.get(&format!("/reports/{id}/runs/{run}")).await).await;
        match body["data"]["status"].as_str().unwrap() {
            "queued" | "running" => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
            "succeeded" => {
                if let Some(window) = window {
                    assert_eq!(body["data"]["window"]["label"], window, "{body}");
                }
                let r = app.get(&format!("/reports/{id}/download")).await;
                assert_eq!(r.status(), 200);
                let file = r.bytes().await.unwrap().to_vec();
                if let (Ok(dir), Some(_)) = (std::env::var("PULSEBOARD_REPORT_DIR"), window) {
                    let path = std::path::Path::new(&dir).join(format!("planted.{format}"));
                    std::fs::write(&path, &file).expect("the report file written");
                }
                return file;
            }
            _ => panic!("the {format} run did not succeed: {body}"),
        }
    }
    panic!("the {format} run did not finish within 60 seconds");
}

/// The text a PDF shows: every string its content streams show with `Tj`, literal `(…)` or
/// hex `<…>`, one per line (the PDF's streams are not compressed and its fonts use WinAnsi,
/// read here back to Unicode).
fn pdf_text(bytes: &[u8]) -> String {
    let winansi = |c: u8| match c {
        0x80 => '€',
        0x85 => '…',
        0x91 => '‘',
        0x92 => '’',
        0x93 => '“',
        0x94 => '”',
        0x95 => '•',
        0x96 => '–',
        0x97 => '—',
        c => c as char,
    };
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let (shown, end) = match bytes[i] {
            b'(' => {
                // Balanced parentheses may stand unescaped inside.
                let (mut j, mut depth) = (i + 1, 0);
                let mut s = Vec::new();
                while j < bytes.len() && (bytes[j] != b')' || depth > 0) {
                    match bytes[j] {
                        b'\\' => j += 1,
                        b'(' => depth += 1,
                        b')' => depth -= 1,
                        _ => {}
                    }
                    s.push(bytes[j]);
                    j += 1;
                }
                (s, j)
            }
            b'<' if bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit) => {
                let j = i + bytes[i..].iter().position(|&b| b == b'>').unwrap();
                let hex = std::str::from_utf8(&bytes[i + 1..j]).unwrap();
                let s = (0..hex.len())
                    .step_by(2)
                    .map(|k| u8::from_str_radix(&hex[k..k + 2], 16).unwrap())
                    .collect();
                (s, j)
            }
            _ => {
                i += 1;
                continue;
            }
        };
        if bytes[end + 1..].starts_with(b" Tj") {
            out.extend(shown.into_iter().map(winansi));
            out.push('\n');
        }
        i = end + 1;
    }
    out
}

fn insight<'a>(section: &'a Value, kind: &str) -> &'a Value {
    section["insights"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} insight about {}: {section:#}", section["name"]))
}

fn num(insight: &Value, key: &str) -> f64 {
    insight["values"][key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} in {insight:#}"))
}

#[tokio::test]
async fn a_report_over_planted_data_names_each_planted_thing_in_json_html_and_pdf() {
    let app = TestApp::spawn().await;
    // The three runs are asked for at one instant, so the files are as of the same moment
    // (a target's pace depends on how much of the window has passed).
    app.freeze(chrono::Utc::now());
    let planted = plant();
    let daily = source(&app, "Daily", planted.daily_csv.clone()).await;
    let sales = source(&app, "Sales", planted.sales_csv.clone()).await;
    let klips = vec![
        line(&app, &daily, "Revenue", "revenue", json!({})).await,
        line(&app, &daily, "Signups", "signups", json!({})).await,
        line(&app, &daily, "Visits", "visits", json!({})).await,
        line(&app, &daily, "Orders", "orders", json!({"target": TARGET})).await,
        created(
            &app,
            "/klips",
            json!({"name": "Sales by region", "type": "bar", "datasource_id": sales,
                "query": {"value": "amount", "aggregate": "sum", "time_column": "day",
                    "group_by": "region", "range": "last_30_days"}}),
        )
        .await,
        line(&app, &daily, "Background noise", "noise", json!({})).await,
    ];
    let spike = planted.spike_day.to_string();
    let saturday = planted.odd_saturday.to_string();

    // json: the insights as data, each with its method and numbers.
    let file: Value = serde_json::from_slice(&generated(&app, &klips, "json").await).unwrap();
    let sections = file["sections"].as_array().unwrap();
    assert_eq!(sections.len(), 6);
    for (section, id) in sections.iter().zip(&klips) {
        assert_eq!(section["klip_id"], id.as_str());
        assert_eq!(section["window"], WINDOW);
    }

    let trend = insight(&sections[0], "trend");
    let slope = num(trend, "slope");
    assert!((19.0..21.0).contains(&slope), "slope {slope}: {trend:#}");
    assert!(num(trend, "p_value") < 0.05, "{trend:#}");
    let method = trend["method"].as_str().unwrap();
    assert!(
        method.contains("Theil") && method.contains("Mann"),
        "{method}"
    );
    assert_eq!(trend["sentiment"], "positive");

    let anomaly = insight(&sections[1], "anomaly");
    assert_eq!(anomaly["values"]["date"], spike.as_str(), "{anomaly:#}");
    assert_eq!(num(anomaly, "actual"), 400.0);
    let expected = num(anomaly, "expected");
    assert!((95.0..105.0).contains(&expected), "{anomaly:#}");
    assert!(num(anomaly, "z").abs() > 3.5);
    assert!(
        anomaly["method"].as_str().unwrap().contains("z"),
        "{anomaly:#}"
    );

    // The season is the baseline, so the weekends are not anomalies; the odd Saturday is.
    let visits = &sections[2];
    let odd: Vec<&Value> = visits["insights"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "anomaly")
        .collect();
    assert_eq!(odd.len(), 1, "one anomaly in {visits:#}");
    assert_eq!(odd[0]["values"]["date"], saturday.as_str(), "{visits:#}");
    assert_eq!(num(odd[0], "actual"), 1000.0);
    let expected = num(odd[0], "expected");
    assert!((380.0..420.0).contains(&expected), "{:#}", odd[0]);
    assert!(
        odd[0]["method"].as_str().unwrap().contains("same weekday"),
        "{:#}",
        odd[0]
    );

    let goal = insight(&sections[3], "goal");
    assert_eq!(num(goal, "target"), TARGET);
    assert_eq!(goal["values"]["on_track"], false, "{goal:#}");
    let current = sections[3]["value"]["current"].as_f64().unwrap();
    assert!((1600.0..1900.0).contains(&current), "{current}");
    assert_eq!(num(goal, "current"), current);
    assert_eq!(goal["sentiment"], "negative");
    assert_eq!(sections[3]["value"]["status"], "bad");

    let driver = insight(&sections[4], "driver");
    assert_eq!(driver["values"]["group"], "west", "{driver:#}");
    // West's 400 a day more over 35 days is all of the change.
    assert_eq!(num(driver, "group_change"), 14000.0);
    assert_eq!(num(driver, "total_change"), 14000.0);
    assert_eq!(num(driver, "share_pct"), 100.0);

    assert_eq!(
        sections[5]["insights"],
        json!([]),
        "nothing about noise: {:#}",
        sections[5]
    );
    let overall = file["highlights"].as_array().unwrap();
    assert!(overall.iter().all(|i| i["klip_id"] != klips[5].as_str()));

    // The texts and methods of the json are the ones the html and pdf show.
    let said: Vec<(String, String)> = sections[..5]
        .iter()
        .flat_map(|s| s["insights"].as_array().unwrap().iter())
        .map(|i| {
            (
                i["text"].as_str().unwrap().to_owned(),
                i["method"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (text, _) in &said {
        assert!(!text.contains("noise"), "{text}");
    }
    let named = |text: &str| -> Vec<&'static str> {
        [
            ("the trend", "Revenue"),
            ("the spike", spike.as_str()),
            ("the odd Saturday", saturday.as_str()),
            ("the driving group", "west"),
            ("the target", "3,000"),
            ("the trend's method", "Theil"),
            ("the season's method", "same weekday"),
        ]
        .into_iter()
        .filter(|(_, token)| !text.contains(token))
        .map(|(what, _)| what)
        .collect()
    };

    let html = String::from_utf8(generated(&app, &klips, "html").await).unwrap();
    assert_eq!(named(&html), Vec::<&str>::new(), "missing from the html");
    for (text, method) in &said {
        let escaped = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
                .replace('\'', "&#39;")
        };
        assert!(html.contains(&escaped(text)), "html lacks: {text}");
        assert!(html.contains(&escaped(method)), "html lacks: {method}");
    }
    let noise_section = html
        .split("<section class=\"klip\">")
        .find(|s| s.starts_with("<h2>Background noise</h2>"))
        .expect("the noise Klip's section");
    assert!(
        !noise_section.contains("What the data shows"),
        "{noise_section}"
    );

    let pdf = generated(&app, &klips, "pdf").await;
    assert!(pdf.starts_with(b"%PDF-"));
    let text = pdf_text(&pdf);
    // Lines are wrapped at spaces: joined back, the sentences read as in the json.
    let flowing = text.replace('\n', " ");
    assert_eq!(
        named(&flowing),
        Vec::<&str>::new(),
        "missing from the pdf:\n{text}"
    );
    for (said_text, _) in &said {
        // The characters WinAnsi lacks are spelt in ASCII.
        let ascii = said_text
            .replace('−', "-")
            .replace('≈', "~")
            .replace('≥', ">=")
            .replace('≤', "<=");
        assert!(flowing.contains(&ascii), "pdf lacks: {said_text}\n{text}");
    }
    let after_noise = flowing
        .split("Background noise")
        .last()
        .expect("the noise Klip's heading");
    assert!(
        !after_noise.contains("What the data shows"),
        "{after_noise}"
    );

    // xlsx, read back with an independent reader (calamine): a sheet per Klip with the
    // json's values, its series as a table and a native chart, and every insight the json
    // has on the Insights sheet.
    use calamine::{Data, Reader};
    let book_bytes = generated(&app, &klips, "xlsx").await;
    let mut book: calamine::Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(book_bytes.clone()))
            .expect("it opens");
    let names = book.sheet_names();
    assert_eq!(names.len(), 7, "{names:?}");
    assert_eq!(names[0], "Revenue");
    assert_eq!(names[6], "Insights");
    for (index, section) in sections.iter().enumerate() {
        let sheet = book.worksheet_range(&names[index]).expect("a Klip's sheet");
        assert_eq!(
            sheet.get_value((0, 1)),
            Some(&Data::String(section["name"].as_str().unwrap().into()))
        );
        let current = section["value"]["current"].as_f64().unwrap();
        assert_eq!(
            sheet.get_value((2, 1)),
            Some(&Data::Float(current)),
            "{}",
            section["name"]
        );
        let series = section["value"]["series"].as_array().unwrap();
        for (i, point) in series.iter().enumerate() {
            let cell = sheet.get_value((10 + i as u32, 1));
            assert_eq!(
                cell,
                Some(&Data::Float(point["y"].as_f64().unwrap())),
                "{} row {i}",
                section["name"]
            );
        }
    }
    let insights = book
        .worksheet_range("Insights")
        .expect("the insights sheet");
    let listed: usize = sections
        .iter()
        .map(|s| s["insights"].as_array().unwrap().len())
        .sum();
    assert_eq!(insights.height(), listed + 1);
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(book_bytes)).expect("a zip");
    assert!(zip.by_name("xl/charts/chart1.xml").is_ok());
}

/// A daily revenue that rises by 7 a day with a weekday/weekend pattern (+40 on weekdays,
/// −60 on weekends), ±10 of noise and one spike, beside noise only; both Klips have no range
/// (all data). The seasonal one is forecast the next 7 days by additive Holt–Winters with a
/// weekly season (the numbers are the domain's fit over the same complete days, itself
/// checked against statsmodels), and nothing is said about the noise.
#[tokio::test]
async fn an_all_data_report_forecasts_the_weekly_season_seven_days_ahead() {
    let app = TestApp::spawn().await;
    let today = Utc::now().with_timezone(&New_York).date_naive();
    let mut csv = String::from("day,seasonal,noise\n");
    let (mut a, mut b) = (Noise(0x5EA5_0A11), Noise(0x0DD_BA11));
    let mut complete = Vec::new();
    for back in (0..DAYS).rev() {
        let day = today - Duration::days(back);
        let i = (DAYS - 1 - back) as f64;
        let weekend = matches!(day.weekday(), Weekday::Sat | Weekday::Sun);
        let swing = if weekend { -60.0 } else { 40.0 };
        let spike = if back == SPIKE_BACK + 20 { 150.0 } else { 0.0 };
        let seasonal = round1(500.0 + 7.0 * i + swing + 10.0 * a.next() + spike);
        let noise = round1(500.0 + 20.0 * b.next());
        csv.push_str(&format!("{day},{seasonal},{noise}\n"));
        if back > 0 {
            complete.push(seasonal);
        }
    }
    let ds = source(&app, "Seasonal", csv).await;
    let klip = |name: &str, column: &str| {
        json!({"name": name, "type": "line", "datasource_id": ds,
            "query": {"value": column, "aggregate": "sum", "time_column": "day", "time_bucket": "day"}})
    };
    let klips = vec![
        created(&app, "/klips", klip("Seasonal revenue", "seasonal")).await,
        created(&app, "/klips", klip("Background noise", "noise")).await,
    ];
    let file: Value =
        serde_json::from_slice(&generated_in(&app, &klips, "json", None).await).unwrap();
    let sections = file["sections"].as_array().unwrap();
    let forecast = insight(&sections[0], "forecast");
    assert_eq!(forecast["values"]["model"], "holt_winters", "{forecast:#}");
    assert_eq!(forecast["values"]["season"], "weekly");
    assert_eq!(forecast["values"]["open_window"], true);
    assert_eq!(num(forecast, "horizon"), 7.0);
    assert_eq!(
        forecast["values"]["forecast_date"],
        (today + Duration::days(6)).to_string()
    );
    let fit = domain::analysis::stats::holt_winters_grid(&complete, 7).expect("a fit");
    assert_eq!(complete.len(), (DAYS - 1) as usize);
    let want = fit.forecast(7);
    assert!(
        (num(forecast, "forecast") - want).abs() < 1e-6,
        "{forecast:#} vs {want}"
    );
    let (lo, hi) = fit.interval(7, domain::analysis::stats::Z_80);
    assert!(
        (num(forecast, "lower") - lo).abs() < 1e-6 && (num(forecast, "upper") - hi).abs() < 1e-6
    );
    let text = forecast["text"].as_str().unwrap();
    assert!(
        text.contains("7 days ahead") && text.contains("weekly season"),
        "{text}"
    );
    assert!(forecast["method"]
        .as_str()
        .unwrap()
        .contains("Holt–Winters"));
    // Nothing is said about the noise: no trend, no forecast.
    let noise = sections[1]["insights"].as_array().unwrap();
    assert!(
        noise
            .iter()
            .all(|i| i["type"] != "forecast" && i["type"] != "trend"),
        "{noise:#?}"
    );
}
