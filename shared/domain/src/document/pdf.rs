//! The PDF rendering of a report: vector A4 pages (text, lines and shapes, no images), with
//! the PDF standard fonts Helvetica and Helvetica-Bold, which every PDF reader has, so
//! nothing is embedded and no browser is needed (a Lambda has none).
//!
//! The layout mirrors the HTML page: the title and when it was made, the highlights, then
//! one section per Klip (its value with change and status, a line chart of its series with
//! anomalies marked, bars for its groups, and its insights with how each was computed). A
//! section that would not fit on the rest of a page starts a new one.
//!
//! Text is written in WinAnsi encoding: characters outside it become their nearest ASCII
//! spelling (`−` → `-`, `≈` → `~`, `₹` → `INR `), and line breaking uses Helvetica's
//! character widths. The currency symbols `$`, `€` (0x80), `£` (0xA3) and `¥` (0xA5) are in
//! it.

use super::{status_word, style, Document, Section};
use crate::analysis::InsightType;
use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str};

const WIDTH: f32 = 595.0;
const HEIGHT: f32 = 842.0;
const MARGIN: f32 = 50.0;
const REGULAR: Name<'static> = Name(b"F1");
const BOLD: Name<'static> = Name(b"F2");

type Rgb = (f32, f32, f32);
const INK: Rgb = (0.13, 0.15, 0.16);
const MUTED: Rgb = (0.42, 0.46, 0.49);
const LINE: Rgb = (0.11, 0.49, 0.84);
const RULE: Rgb = (0.81, 0.83, 0.85);
const ALERT: Rgb = (0.85, 0.28, 0.06);
const GOOD: Rgb = (0.17, 0.54, 0.24);
const WARN: Rgb = (0.90, 0.47, 0.0);
const BAD: Rgb = (0.79, 0.16, 0.16);

/// A character in WinAnsi encoding, or its ASCII spelling.
pub(super) fn encode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match c {
            ' '..='~' => out.push(c as u8),
            '\u{a0}'..='\u{ff}' => out.push(c as u32 as u8),
            '–' => out.push(0x96),
            '—' => out.push(0x97),
            '•' => out.push(0x95),
            '’' => out.push(0x92),
            '‘' => out.push(0x91),
            '“' => out.push(0x93),
            '”' => out.push(0x94),
            '…' => out.push(0x85),
            '€' => out.push(0x80),
            // Not in WinAnsi: the Indian rupee is written as its code.
            '₹' => out.extend_from_slice(b"INR "),
            '−' => out.push(b'-'),
            '≈' => out.push(b'~'),
            '≥' => out.extend_from_slice(b">="),
            '≤' => out.extend_from_slice(b"<="),
            'α' => out.extend_from_slice(b"alpha"),
            'β' => out.extend_from_slice(b"beta"),
            'σ' => out.extend_from_slice(b"sigma"),
            'ℓ' => out.push(b'l'),
            '\n' | '\t' => out.push(b' '),
            _ => out.push(b'?'),
        }
    }
    out
}

/// Helvetica's advance width of a character, in thousandths of the font size (close
/// enough for line breaking; bold is a little wider).
fn advance(c: char, bold: bool) -> f32 {
    let w = match c {
        ' ' | 'I' | 'f' | 't' | '.' | ',' | ':' | ';' | '!' | '/' | '[' | ']' => 278.0,
        'i' | 'j' | 'l' | '\'' | '|' => 222.0,
        'r' | '(' | ')' | '-' | '–' => 333.0,
        '0'..='9' | '$' | '€' | '#' | '?' | '_' => 556.0,
        'm' | 'M' => 833.0,
        'w' => 722.0,
        'W' => 944.0,
        '%' => 889.0,
        '+' | '=' | '<' | '>' | '~' => 584.0,
        '—' => 1000.0,
        // Written `INR ` (see `encode`).
        '₹' => 278.0 + 667.0 + 667.0 + 278.0,
        'A'..='Z' => 667.0,
        _ => 556.0,
    };
    if bold {
        w * 1.06
    } else {
        w
    }
}

fn text_width(text: &str, size: f32, bold: bool) -> f32 {
    text.chars().map(|c| advance(c, bold)).sum::<f32>() * size / 1000.0
}

/// Breaks `text` into lines no wider than `width`.
fn wrap(text: &str, size: f32, bold: bool, width: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let candidate = if line.is_empty() {
            word.to_owned()
        } else {
            format!("{line} {word}")
        };
        if text_width(&candidate, size, bold) > width && !line.is_empty() {
            lines.push(std::mem::take(&mut line));
            line = word.to_owned();
        } else {
            line = candidate;
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Pages being written, with a cursor that moves down the current one.
struct Writer {
    pages: Vec<Content>,
    y: f32,
}

impl Writer {
    fn new() -> Self {
        Writer {
            pages: vec![Content::new()],
            y: HEIGHT - MARGIN,
        }
    }

    fn page(&mut self) -> &mut Content {
        if self.pages.is_empty() {
            self.pages.push(Content::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    /// Starts a new page unless `height` more fits on this one.
    fn ensure(&mut self, height: f32) {
        if self.y - height < MARGIN {
            self.pages.push(Content::new());
            self.y = HEIGHT - MARGIN;
        }
    }

    fn text_at(&mut self, x: f32, y: f32, text: &str, size: f32, bold: bool, color: Rgb) {
        let bytes = encode(text);
        let page = self.page();
        page.set_fill_rgb(color.0, color.1, color.2);
        page.begin_text();
        page.set_font(if bold { BOLD } else { REGULAR }, size);
        page.next_line(x, y);
        page.show(Str(&bytes));
        page.end_text();
    }

    /// A wrapped paragraph at the cursor, indented by `indent`.
    fn paragraph(&mut self, text: &str, size: f32, bold: bool, color: Rgb, indent: f32) {
        let leading = size * 1.35;
        for line in wrap(text, size, bold, WIDTH - 2.0 * MARGIN - indent) {
            self.ensure(leading);
            self.y -= leading;
            self.text_at(
                MARGIN + indent,
                self.y + size * 0.25,
                &line,
                size,
                bold,
                color,
            );
        }
    }

    /// A bulleted paragraph: wrapped lines hang under the text, not the bullet.
    fn bullet(&mut self, text: &str, size: f32, color: Rgb, indent: f32) {
        let leading = size * 1.35;
        let hang = indent + text_width("• ", size, false);
        for (i, line) in wrap(text, size, false, WIDTH - 2.0 * MARGIN - hang)
            .iter()
            .enumerate()
        {
            self.ensure(leading);
            self.y -= leading;
            let baseline = self.y + size * 0.25;
            if i == 0 {
                self.text_at(MARGIN + indent, baseline, "•", size, false, color);
            }
            self.text_at(MARGIN + hang, baseline, line, size, false, color);
        }
    }

    fn rule(&mut self) {
        let y = self.y;
        let page = self.page();
        page.set_stroke_rgb(RULE.0, RULE.1, RULE.2);
        page.set_line_width(0.75);
        page.move_to(MARGIN, y);
        page.line_to(WIDTH - MARGIN, y);
        page.stroke();
    }
}

fn line_chart(w: &mut Writer, section: &Section) {
    let points = &section.value.series;
    if points.len() < 2 {
        return;
    }
    let (height, label) = (110.0, 9.0);
    w.ensure(height + 2.0 * label + 10.0);
    w.y -= 8.0;
    let (left, right) = (MARGIN + 40.0, WIDTH - MARGIN);
    let (top, bottom) = (w.y - label, w.y - label - height);
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
    let x = |i: usize| left + (right - left) * i as f32 / (points.len() - 1) as f32;
    let y = |v: f64| bottom + (top - bottom) * ((v - min) / (max - min)) as f32;
    let st = style(section);
    w.text_at(MARGIN, top - 7.0, &st.value(max), 7.5, false, MUTED);
    w.text_at(MARGIN, bottom, &st.value(min), 7.5, false, MUTED);
    let first = points[0].x.clone();
    let last = points[points.len() - 1].x.clone();
    w.text_at(left, bottom - label - 2.0, &first, 7.5, false, MUTED);
    let last_width = text_width(&last, 7.5, false);
    w.text_at(
        right - last_width,
        bottom - label - 2.0,
        &last,
        7.5,
        false,
        MUTED,
    );
    let anomalies: Vec<usize> = section
        .insights
        .iter()
        .filter(|i| i.kind == InsightType::Anomaly)
        .filter_map(|i| i.values.get("date").and_then(|d| d.as_str()))
        .filter_map(|date| points.iter().position(|p| p.x == date))
        .collect();
    let page = w.page();
    page.set_stroke_rgb(RULE.0, RULE.1, RULE.2);
    page.set_line_width(0.75);
    page.move_to(left, bottom);
    page.line_to(right, bottom);
    page.stroke();
    page.set_stroke_rgb(LINE.0, LINE.1, LINE.2);
    page.set_line_width(1.5);
    page.move_to(x(0), y(points[0].y));
    for (i, p) in points.iter().enumerate().skip(1) {
        page.line_to(x(i), y(p.y));
    }
    page.stroke();
    page.set_fill_rgb(ALERT.0, ALERT.1, ALERT.2);
    for i in anomalies {
        page.rect(x(i) - 3.0, y(points[i].y) - 3.0, 6.0, 6.0);
        page.fill_nonzero();
    }
    w.y = bottom - label - 8.0;
}

fn bars(w: &mut Writer, section: &Section) {
    let groups = &section.value.groups;
    if groups.is_empty() {
        return;
    }
    let shown = &groups[..groups.len().min(12)];
    let max = shown
        .iter()
        .map(|g| g.value.abs())
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let st = style(section);
    w.y -= 4.0;
    for g in shown {
        w.ensure(16.0);
        w.y -= 16.0;
        let y = w.y;
        let key: String = g.key.chars().take(24).collect();
        w.text_at(MARGIN, y + 3.0, &key, 8.5, false, INK);
        let len = 300.0 * (g.value.abs() / max) as f32;
        let page = w.page();
        page.set_fill_rgb(LINE.0, LINE.1, LINE.2);
        page.rect(MARGIN + 130.0, y + 1.0, len.max(0.5), 10.0);
        page.fill_nonzero();
        w.text_at(
            MARGIN + 136.0 + len,
            y + 3.0,
            &st.value(g.value),
            8.5,
            false,
            INK,
        );
    }
    w.y -= 6.0;
}

fn section(w: &mut Writer, s: &Section) {
    // The heading, the KPI line and the chart stay on one page.
    let chart = if s.value.series.len() >= 2 {
        146.0
    } else {
        0.0
    };
    w.ensure(90.0 + chart);
    w.y -= 10.0;
    w.rule();
    w.paragraph(&s.name, 13.0, true, INK, 0.0);
    let v = &s.value;
    if let Some(error) = &v.error {
        w.paragraph(&format!("Not computed: {error}"), 9.5, false, BAD, 0.0);
        return;
    }
    let st = style(s);
    w.ensure(30.0);
    w.y -= 26.0;
    let value = v.current.map(|c| st.value(c)).unwrap_or_else(|| "-".into());
    w.text_at(MARGIN, w.y + 4.0, &value, 20.0, true, INK);
    let mut x = MARGIN + text_width(&value, 20.0, true) + 14.0;
    if let (Some(change), Some(previous)) = (v.change, v.previous) {
        let pct = v
            .change_pct
            .map(|p| format!(" ({})", crate::analysis::text::format_pct(p)))
            .unwrap_or_default();
        let text = format!("{}{pct} vs {}", st.change(change), st.value(previous));
        w.text_at(x, w.y + 6.0, &text, 9.5, false, MUTED);
        x += text_width(&text, 9.5, false) + 14.0;
    }
    let (kind, words) = status_word(v.status);
    if !words.is_empty() {
        let color = match kind {
            "good" => GOOD,
            "warning" => WARN,
            _ => BAD,
        };
        let target = s
            .target
            .map(|t| format!(" (target {})", st.value(t)))
            .unwrap_or_default();
        w.text_at(x, w.y + 6.0, &format!("{words}{target}"), 9.5, true, color);
    }
    if let Some(window) = &s.window {
        let line = super::window_line(window, s.period.as_deref());
        w.paragraph(&line, 8.5, false, MUTED, 0.0);
    }
    line_chart(w, s);
    bars(w, s);
    if !s.insights.is_empty() {
        w.y -= 4.0;
        w.paragraph("What the data shows", 10.0, true, INK, 0.0);
        for insight in &s.insights {
            w.bullet(&insight.text, 9.5, INK, 6.0);
            w.paragraph(
                &insight.method,
                7.5,
                false,
                MUTED,
                6.0 + text_width("• ", 9.5, false),
            );
        }
    }
}

/// The PDF file of a document.
pub fn render(document: &Document) -> Vec<u8> {
    let mut w = Writer::new();
    w.paragraph(&document.title, 20.0, true, INK, 0.0);
    let mut meta = String::new();
    if let Some(d) = &document.description {
        meta.push_str(d);
        meta.push_str(". ");
    }
    meta.push_str(&format!("Generated {}.", super::generated_line(document)));
    w.paragraph(&meta, 9.0, false, MUTED, 0.0);
    if !document.highlights.is_empty() {
        w.y -= 6.0;
        w.paragraph("Highlights", 12.0, true, INK, 0.0);
        for insight in &document.highlights {
            w.bullet(&insight.text, 9.5, INK, 6.0);
        }
    }
    for s in &document.sections {
        section(&mut w, s);
    }

    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let (regular, bold) = (Ref::new(3), Ref::new(4));
    let count = w.pages.len() as i32;
    let page_ids: Vec<Ref> = (0..count).map(|i| Ref::new(10 + 2 * i)).collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree).kids(page_ids.iter().copied()).count(count);
    pdf.type1_font(regular)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    let total = w.pages.len();
    for (i, mut content) in w.pages.into_iter().enumerate() {
        // Page numbers in the footer.
        let footer = format!("{} · page {} of {total}", document.title, i + 1);
        let bytes = encode(&footer);
        content.set_fill_rgb(MUTED.0, MUTED.1, MUTED.2);
        content.begin_text();
        content.set_font(REGULAR, 7.5);
        content.next_line(MARGIN, MARGIN / 2.0);
        content.show(Str(&bytes));
        content.end_text();
        let page_id = page_ids[i];
        let content_id = Ref::new(11 + 2 * i as i32);
        let mut page = pdf.page(page_id);
        page.media_box(Rect::new(0.0, 0.0, WIDTH, HEIGHT));
        page.parent(tree);
        page.contents(content_id);
        page.resources()
            .fonts()
            .pair(REGULAR, regular)
            .pair(BOLD, bold);
        page.finish();
        pdf.stream(content_id, &content.finish());
    }
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_encoded_for_winansi_and_wrapped_to_the_width() {
        assert_eq!(encode("a – b • c ≈ d"), b"a \x96 b \x95 c ~ d");
        assert_eq!(encode("α and β"), b"alpha and beta");
        assert_eq!(encode("€1 £2 ¥3 CN¥4 $5"), b"\x801 \xa32 \xa53 CN\xa54 $5");
        assert_eq!(encode("₹1,234"), b"INR 1,234");
        assert_eq!(
            text_width("₹1", 10.0, false),
            text_width("INR 1", 10.0, false)
        );
        let lines = wrap(&"word ".repeat(60), 10.0, false, 200.0);
        assert!(lines.len() > 5);
        assert!(lines.iter().all(|l| text_width(l, 10.0, false) <= 200.0));
    }
}
