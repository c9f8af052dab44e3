//! A succeeded run's deliveries (API.md §6 reports, delivery): one `report.delivered` event
//! (its id derived from the run, so the run makes it once), one delivery per `deliver_to`
//! channel, written in the transaction that ends the run ([`platform::store::runs::Runs::finish_delivering`]):
//! the run ends with all its deliveries or with none, however often its record reaches the
//! worker. With `only_if_changed`, a run whose values and insights equal the last delivered
//! run's ([`digest`]) has its deliveries `suppressed`.

use crate::error::WorkError;
use chrono::{DateTime, Duration, Utc};
use domain::analysis::insights::Insight;
use domain::document::Document;
use domain::notify::{self, Attachment, Delivery, DeliverySource, Event};
use domain::reports::{Report, Run, RunDelivery};
use domain::{DeliveryKind, DeliveryStatus};
use platform::AppState;
use serde_json::json;
use sha2::{Digest, Sha256};

/// The insights a delivery carries besides the highlights.
const TOP_INSIGHTS: usize = 5;

/// What a run showed, as a digest: every Klip's numbers and every insight's words (not the
/// time it was computed), so two runs with the same data and analysis have the same one.
pub fn digest(doc: &Document) -> String {
    let sections: Vec<_> = doc
        .sections
        .iter()
        .map(|s| {
            json!([
                s.klip_id,
                s.value.current,
                s.value.previous,
                s.value.series,
                s.value.groups,
                s.value.status,
                s.insights.iter().map(|i| &i.text).collect::<Vec<_>>()
            ])
        })
        .collect();
    let highlights: Vec<&str> = doc.highlights.iter().map(|i| i.text.as_str()).collect();
    hex::encode(Sha256::digest(json!([sections, highlights]).to_string()))
}

/// The best insights of the report's Klips, by score.
fn top_insights(doc: &Document) -> Vec<&Insight> {
    let mut all: Vec<&Insight> = doc.sections.iter().flat_map(|s| &s.insights).collect();
    all.sort_by(|a, b| b.score.total_cmp(&a.score));
    all.truncate(TOP_INSIGHTS);
    all
}

/// The deliveries of `run` (succeeded, its file written) to the report's channels; the run
/// gets its view of them. `suppressed`: nothing changed since the last delivered run.
pub async fn build(
    state: &AppState,
    run: &mut Run,
    report: &Report,
    doc: &Document,
    suppressed: bool,
    now: DateTime<Utc>,
) -> Result<Vec<Delivery>, WorkError> {
    let (Some(file), Some(key)) = (&run.file, &run.file_key) else {
        return Ok(Vec::new());
    };
    let link_for = std::time::Duration::from_secs(notify::LINK_SECS as u64);
    let url = state
        .store
        .files()
        .presigned_get(key, &file.name, link_for)
        .await?;
    let data = json!({
        "report": {"id": report.meta.id, "name": report.meta.name, "slug": report.meta.slug,
                   "format": report.format},
        "run": {"id": run.id, "trigger": run.job.trigger, "status": run.job.status,
                "date_created": platform::time::rfc3339(run.job.date_created),
                "finished_at": run.job.finished_at.map(platform::time::rfc3339),
                "data_as_of": run.data_as_of.map(platform::time::rfc3339),
                "window": run.window, "timezone": run.timezone},
        "file": {"url": url, "expires_at": platform::time::rfc3339(now + Duration::seconds(notify::LINK_SECS)),
                 "name": file.name, "content_type": file.content_type, "size": file.size,
                 "sha256": file.sha256},
        "highlights": doc.highlights,
        "insights": top_insights(doc),
    });
    let event = Event::derived("report.delivered", &run.id, now, data);
    let attachment = report.delivery.attach.then(|| Attachment {
        key: key.clone(),
        name: file.name.clone(),
        content_type: file.content_type.clone(),
        size: file.size,
    });
    let mut deliveries = Vec::with_capacity(report.deliver_to.len());
    for channel in &report.deliver_to {
        let mut delivery = Delivery::queued(
            &event,
            &run.company_id,
            channel,
            DeliveryKind::Report,
            DeliverySource {
                report_id: Some(report.meta.id.clone()),
                run_id: Some(run.id.clone()),
                ..DeliverySource::default()
            },
            now,
        );
        delivery.attachment = attachment.clone();
        if suppressed {
            delivery.status = DeliveryStatus::Suppressed;
            delivery.next_attempt_at = None;
            delivery.error = Some(
                "nothing changed since the last delivered run (delivery.only_if_changed)".into(),
            );
        }
        run.deliveries.insert(
            channel.clone(),
            RunDelivery {
                delivery_id: delivery.id.clone(),
                status: delivery.status,
            },
        );
        deliveries.push(delivery);
    }
    Ok(deliveries)
}
