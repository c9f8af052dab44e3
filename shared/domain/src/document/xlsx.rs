//! A report as an Excel workbook (`xlsx`), written with `rust_xlsxwriter` to a buffer:
//!
//! - **a sheet per Klip**: its name, period, value, previous value, change, change % and
//!   status, then its series (date, value) or groups (key, value) as a table, every number a
//!   native number with the Klip's format (a currency Klip's amounts carry its currency's
//!   symbol, a percent Klip's a `%` that leaves the stored number as it is), and a native
//!   Excel chart of the series (a line) or the groups (columns);
//! - **an Insights sheet**: each insight's Klip, type, sentence, method, score and its
//!   numbers (`values`, as JSON text).
//!
//! Text is always written as text: a Klip name or group key that looks like a formula
//! (`=HYPERLINK(…)`) stays a string and is never evaluated.

use super::{Document, Section};
use crate::analysis::text::currency_symbol;
use rust_xlsxwriter::{Chart, ChartType, ExcelDateTime, Format, Workbook, Worksheet, XlsxError};

/// The characters a sheet name may not hold.
const NOT_IN_SHEET_NAMES: [char; 7] = ['[', ']', ':', '*', '?', '/', '\\'];

/// A sheet name for `name` that Excel accepts (at most 31 characters, none of `[]:*?/\`, no
/// leading or trailing `'`) and that no sheet in `taken` has (case-insensitive).
fn sheet_name(name: &str, index: usize, taken: &[String]) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if NOT_IN_SHEET_NAMES.contains(&c) {
                ' '
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned.trim().trim_matches('\'').trim();
    let base: String = if cleaned.is_empty() || cleaned.eq_ignore_ascii_case("insights") {
        format!("Klip {}", index + 1)
    } else {
        cleaned.chars().take(31).collect()
    };
    let free = |candidate: &str| !taken.iter().any(|t| t.eq_ignore_ascii_case(candidate));
    if free(&base) {
        return base;
    }
    (2..)
        .map(|n| {
            let suffix = format!(" ({n})");
            let head: String = base.chars().take(31 - suffix.chars().count()).collect();
            format!("{}{suffix}", head.trim_end())
        })
        .find(|candidate| free(candidate))
        .unwrap_or(base)
}

/// An Excel number format for a section's amounts.
fn number_format(section: &Section) -> String {
    match section.format.as_deref() {
        Some("currency") => {
            let code = section
                .currency
                .as_deref()
                .unwrap_or(crate::analysis::text::DEFAULT_CURRENCY);
            let symbol = currency_symbol(code).replace('"', "");
            format!("\"{symbol}\"#,##0.00;-\"{symbol}\"#,##0.00")
        }
        // The stored number is the percentage itself (12.5 is 12.5%): a literal sign.
        Some("percent") => "#,##0.0\"%\"".to_owned(),
        _ => "#,##0.##".to_owned(),
    }
}

fn status_text(section: &Section) -> String {
    serde_json::to_value(section.value.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Writes `value` as a number with `format`, or leaves the cell empty.
fn write_optional(
    sheet: &mut Worksheet,
    row: u32,
    value: Option<f64>,
    format: &Format,
) -> Result<(), XlsxError> {
    if let Some(v) = value.filter(|v| v.is_finite()) {
        sheet.write_number_with_format(row, 1, v, format)?;
    }
    Ok(())
}

/// The first row of a section's table (after its summary and a blank row).
const TABLE_ROW: u32 = 9;

/// One Klip's sheet: the summary, the table, the chart.
fn klip_sheet(sheet: &mut Worksheet, section: &Section) -> Result<(), XlsxError> {
    let bold = Format::new().set_bold();
    let amount = Format::new().set_num_format(number_format(section));
    let pct = Format::new().set_num_format("0.0\"%\"");
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let sheet_name = sheet.name();
    sheet.set_column_width(0, 22)?;
    sheet.set_column_width(1, 16)?;
    let v = &section.value;
    let labels = [
        "Klip",
        "Period",
        "Value",
        "Previous value",
        "Change",
        "Change %",
        "Status",
    ];
    for (row, label) in labels.iter().enumerate() {
        sheet.write_string_with_format(row as u32, 0, *label, &bold)?;
    }
    sheet.write_string(0, 1, &section.name)?;
    sheet.write_string(1, 1, section.period.as_deref().unwrap_or("all data"))?;
    write_optional(sheet, 2, v.current, &amount)?;
    write_optional(sheet, 3, v.previous, &amount)?;
    write_optional(sheet, 4, v.change, &amount)?;
    if let Some(p) = v.change_pct.filter(|p| p.is_finite()) {
        sheet.write_number_with_format(5, 1, p, &pct)?;
    }
    sheet.write_string(6, 1, status_text(section))?;
    if let Some(target) = section.target.filter(|t| t.is_finite()) {
        sheet.write_string_with_format(7, 0, "Target", &bold)?;
        sheet.write_number_with_format(7, 1, target, &amount)?;
    }
    let (rows, chart_type, heading): (Vec<(&str, f64)>, ChartType, &str) = if !v.series.is_empty() {
        let rows = v.series.iter().map(|p| (p.x.as_str(), p.y)).collect();
        (rows, ChartType::Line, "Date")
    } else if !v.groups.is_empty() {
        let rows = v.groups.iter().map(|g| (g.key.as_str(), g.value)).collect();
        (rows, ChartType::Column, "Group")
    } else {
        return Ok(());
    };
    sheet.write_string_with_format(TABLE_ROW, 0, heading, &bold)?;
    sheet.write_string_with_format(TABLE_ROW, 1, "Value", &bold)?;
    for (i, (x, y)) in rows.iter().enumerate() {
        let row = TABLE_ROW + 1 + i as u32;
        // A series' day is a native date; any other label (a week, a month, a key) is text.
        match ExcelDateTime::parse_from_str(x) {
            Ok(day) if heading == "Date" && x.len() == 10 => {
                sheet.write_datetime_with_format(row, 0, &day, &date)?
            }
            _ => sheet.write_string(row, 0, *x)?,
        };
        if y.is_finite() {
            sheet.write_number_with_format(row, 1, *y, &amount)?;
        }
    }
    let last = TABLE_ROW + rows.len() as u32;
    let mut chart = Chart::new(chart_type);
    chart
        .add_series()
        .set_name(section.name.as_str())
        .set_categories((sheet_name.as_str(), TABLE_ROW + 1, 0, last, 0))
        .set_values((sheet_name.as_str(), TABLE_ROW + 1, 1, last, 1));
    chart.title().set_name(section.name.as_str());
    chart.legend().set_hidden();
    chart.set_width(640).set_height(300);
    sheet.insert_chart(1, 3, &chart)?;
    Ok(())
}

/// The Insights sheet: every section's insights, in the sections' order.
fn insights_sheet(sheet: &mut Worksheet, document: &Document) -> Result<(), XlsxError> {
    let bold = Format::new().set_bold();
    let headings = ["Klip", "Type", "Insight", "Method", "Score", "Numbers"];
    for (col, heading) in headings.iter().enumerate() {
        sheet.write_string_with_format(0, col as u16, *heading, &bold)?;
    }
    for (col, width) in [(0, 20), (1, 18), (2, 70), (3, 50), (4, 8), (5, 60)] {
        sheet.set_column_width(col, width)?;
    }
    let mut row = 1;
    for section in &document.sections {
        for insight in &section.insights {
            let kind = serde_json::to_value(insight.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            sheet.write_string(row, 0, &section.name)?;
            sheet.write_string(row, 1, kind)?;
            sheet.write_string(row, 2, &insight.text)?;
            sheet.write_string(row, 3, &insight.method)?;
            sheet.write_number_with_format(
                row,
                4,
                insight.score,
                &Format::new().set_num_format("0.00"),
            )?;
            let numbers = serde_json::to_string(&insight.values).unwrap_or_default();
            sheet.write_string(row, 5, numbers)?;
            row += 1;
        }
    }
    Ok(())
}

/// The workbook of `document` (see the module documentation).
pub fn render(document: &Document) -> Result<Vec<u8>, XlsxError> {
    let mut workbook = Workbook::new();
    let mut taken: Vec<String> = vec!["Insights".to_owned()];
    for (index, section) in document.sections.iter().enumerate() {
        let name = sheet_name(&section.name, index, &taken);
        taken.push(name.clone());
        let sheet = workbook.add_worksheet();
        sheet.set_name(&name)?;
        klip_sheet(sheet, section)?;
    }
    let sheet = workbook.add_worksheet();
    sheet.set_name("Insights")?;
    insights_sheet(sheet, document)?;
    workbook.save_to_buffer()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheet_names_are_what_excel_accepts_and_unique() {
        let taken = vec!["Insights".to_owned(), "Revenue".to_owned()];
        assert_eq!(sheet_name("Revenue", 1, &taken), "Revenue (2)");
        assert_eq!(sheet_name("a/b:c*d?[e]", 0, &taken), "a b c d  e");
        assert_eq!(sheet_name("'quoted'", 0, &taken), "quoted");
        assert_eq!(sheet_name("", 4, &taken), "Klip 5");
        assert_eq!(sheet_name("insights", 2, &taken), "Klip 3");
        let long = "x".repeat(40);
        assert_eq!(sheet_name(&long, 0, &taken).chars().count(), 31);
        let taken = vec![long.chars().take(31).collect::<String>()];
        let second = sheet_name(&long, 1, &taken);
        assert!(
            second.ends_with(" (2)") && second.chars().count() == 31,
            "{second}"
        );
    }
}
