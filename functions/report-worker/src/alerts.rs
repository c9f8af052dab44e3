//! Evaluating alerts (API.md §6 alerts) when a Klip's value changed: the table's stream
//! brings every change of a Klip's item; when its `value` moved, the Klip's alerts (one
//! query of its watchers in `gsi1`) are judged on the new value ([`domain::alerts`]) and
//! each evaluation is written with the event and the deliveries it makes, conditional on
//! the alert's revision ([`platform::store::alerts`]): an evaluation that lost to another
//! reads the alert again and judges once more, so a transition fires once. Never on a read:
//! reads do not write Klip values. The alerts that will deliver are written first, and
//! their deliveries sent at once (the stream's record of each then finds it taken).

use crate::error::WorkError;
use crate::generate::Outcome;
use chrono::{DateTime, Utc};
use domain::alerts::{self, Alert, AlertEvent, Step};
use domain::notify::{Delivery, DeliverySource, Event};
use domain::records::Klip;
use domain::DeliveryKind;
use futures::StreamExt;
use platform::auth::records::Company;
use platform::store::WriteError;
use platform::AppState;
use serde_json::json;
use sha2::Digest;

/// How many times an evaluation that lost a race is judged again.
const TRIES: usize = 3;

/// Evaluates the alerts on Klip `klip` of `company` (its value changed).
pub async fn on_klip_change(state: &AppState, company: &str, klip: &str) -> Outcome {
    match evaluate_klip(state, company, klip).await {
        Ok(()) => Outcome::Done,
        Err(e) if e.is_transient() => Outcome::Retry(e.to_string()),
        Err(e) => {
            tracing::error!(error = %e.chain(), klip, "evaluating a Klip's alerts");
            Outcome::Done
        }
    }
}

async fn evaluate_klip(state: &AppState, company: &str, klip: &str) -> Result<(), WorkError> {
    let watching = state.store.alerts().watching(company, klip).await?;
    if watching.is_empty() {
        return Ok(());
    }
    // One read of the Klip (and, for anomaly alerts, of the company) for all its alerts.
    let seen = Seen {
        klip: read_klip(state, company, klip).await?,
        owner: tokio::sync::OnceCell::new(),
        sent: Default::default(),
    };
    // The alerts that will deliver go first: a transition is not kept waiting behind the
    // evaluations that only record themselves (a Klip may have hundreds).
    let now = state.clock.now();
    let mut first = Vec::new();
    let mut then = Vec::new();
    for alert in watching.into_iter().filter(|a| a.klip_id == klip) {
        let judged = judge(state, &alert, seen.klip.as_ref(), &seen.owner, now).await?;
        match alerts::step(&alert, &judged, now) {
            Step::Move {
                deliver: Some(_), ..
            } => first.push((alert, judged)),
            _ => then.push((alert, judged)),
        }
    }
    let evaluations = first
        .into_iter()
        .chain(then)
        .map(|(alert, judged)| evaluate_seen(state, alert, &seen, Some((judged, now))));
    let mut running = futures::stream::iter(evaluations).buffer_unordered(PARALLEL);
    while let Some(done) = running.next().await {
        done?;
    }
    Ok(())
}

/// How many of a Klip's alerts are evaluated at once (each that moves is one transaction).
const PARALLEL: usize = 16;

/// What the evaluations of one Klip change share: the Klip as read, and its company (read
/// once, when an anomaly alert needs its time zone and currency).
struct Seen {
    klip: Option<Klip>,
    owner: tokio::sync::OnceCell<Option<Company>>,
    /// Deliveries sent at once so far (at most [`SEND_NOW`]; the stream sends the rest).
    sent: std::sync::atomic::AtomicUsize,
}

/// How many deliveries one Klip's evaluations send themselves: each waits for its receiver
/// (up to 10 s), so a Klip with hundreds of alerts firing together leaves the rest to the
/// stream's records of them, whose attempts keep to the invocation's time.
const SEND_NOW: usize = 16;

async fn read_klip(state: &AppState, company: &str, klip: &str) -> Result<Option<Klip>, WorkError> {
    Ok(state.store.assets().get::<Klip>(company, klip).await?)
}

/// Judges one alert on its Klip's current value and writes what follows; after a lost race,
/// reads both again.
pub async fn evaluate(state: &AppState, alert: Alert) -> Result<(), WorkError> {
    let seen = Seen {
        klip: read_klip(state, &alert.meta.company_id, &alert.klip_id).await?,
        owner: tokio::sync::OnceCell::new(),
        sent: Default::default(),
    };
    evaluate_seen(state, alert, &seen, None).await
}

/// What an alert was judged, and when (an anomaly's judgement analyses the Klip's series).
type Judgement = (Result<alerts::Judged, String>, DateTime<Utc>);

/// [`evaluate`] with the Klip already read and, when given, the alert already judged on it
/// (a retry reads both again and judges anew).
async fn evaluate_seen(
    state: &AppState,
    mut alert: Alert,
    seen: &Seen,
    mut judged_first: Option<Judgement>,
) -> Result<(), WorkError> {
    let company = alert.meta.company_id.clone();
    let mut fresh_klip: Option<Option<Klip>> = None;
    for _ in 0..TRIES {
        let klip = fresh_klip.as_ref().unwrap_or(&seen.klip).as_ref();
        let (judged, now) = match judged_first.take() {
            Some(judgement) => judgement,
            None => {
                let now = state.clock.now();
                (judge(state, &alert, klip, &seen.owner, now).await?, now)
            }
        };
        let Step::Move {
            to,
            deliver,
            pause,
            reason,
        } = alerts::step(&alert, &judged, now)
        else {
            return Ok(());
        };
        let mut new = alert.clone();
        new.state = to;
        new.state_reason = reason;
        new.last_evaluated_at = Some(now);
        new.last_value = judged.as_ref().ok().and_then(|j| j.value);
        new.revision = alert.revision + 1;
        new.paused = alert.paused || pause;
        if deliver == Some("alert.firing") {
            new.last_fired_at = Some(now);
        }
        let moved = new.state != alert.state || deliver.is_some();
        let (event, deliveries) = if moved {
            made(&alert, &new, klip, &judged, deliver, now)
        } else {
            (None, Vec::new())
        };
        match state
            .store
            .alerts()
            .record(&alert, &new, event.as_ref(), &deliveries)
            .await
        {
            Ok(()) => {
                send_now(state, &company, &deliveries, &seen.sent).await;
                return Ok(());
            }
            Err(WriteError::Failed(e)) => return Err(e.into()),
            Err(WriteError::Refused(())) => {
                // Another evaluation (or an edit) came first, or the alert was a stale
                // copy: judge what is there now.
                let fresh: Option<Alert> = state
                    .store
                    .assets()
                    .get::<Alert>(&company, &alert.meta.id)
                    .await?;
                match fresh {
                    Some(fresh) if !fresh.paused => {
                        fresh_klip = Some(read_klip(state, &company, &fresh.klip_id).await?);
                        alert = fresh;
                    }
                    _ => return Ok(()),
                }
            }
        }
    }
    Ok(())
}

/// Sends an evaluation's deliveries at once, not after the rest of the batch (a Klip may
/// have hundreds of alerts to record first): each attempt claims its delivery, so the
/// stream's record of it, arriving later, finds it taken and does nothing; an attempt that
/// could not finish leaves it to the stream or, once its lease ends, to the tick.
async fn send_now(
    state: &AppState,
    company: &str,
    deliveries: &[Delivery],
    sent: &std::sync::atomic::AtomicUsize,
) {
    for delivery in deliveries {
        if sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= SEND_NOW {
            return;
        }
        if let Outcome::Retry(error) = crate::deliver::run(state, company, &delivery.id).await {
            tracing::warn!(%error, delivery = %delivery.id, "an alert's delivery left to the stream");
        }
    }
}

/// The judgement of the alert's condition on the Klip's value (an error: why it cannot be
/// judged).
async fn judge(
    state: &AppState,
    alert: &Alert,
    klip: Option<&Klip>,
    owner: &tokio::sync::OnceCell<Option<Company>>,
    now: DateTime<Utc>,
) -> Result<Result<alerts::Judged, String>, WorkError> {
    let Some(klip) = klip else {
        return Ok(Err(format!(
            "the Klip it watches ({}) was deleted",
            alert.klip_id
        )));
    };
    let Some(value) = &klip.value else {
        return Ok(Err(format!(
            "Klip '{}' has no computed value yet",
            klip.meta.name
        )));
    };
    let series = if alert.condition.kind == alerts::ConditionType::Anomaly {
        let owner = owner
            .get_or_try_init(|| async { state.store.companies().get(&alert.meta.company_id).await })
            .await?;
        let tz = domain::data::timezone(owner.as_ref().and_then(|c| c.timezone.as_deref()));
        let currency = owner.as_ref().map_or_else(
            || domain::analysis::text::DEFAULT_CURRENCY.to_owned(),
            |c| domain::document::company_currency(&c.properties),
        );
        Some(domain::document::series_of(
            klip,
            value,
            &[],
            None,
            tz,
            &currency,
            now,
        ))
    } else {
        None
    };
    Ok(alerts::judge(alert, klip, value, series.as_ref(), now))
}

/// The event an evaluation records and the deliveries it makes (one per channel).
fn made(
    old: &Alert,
    new: &Alert,
    klip: Option<&Klip>,
    judged: &Result<alerts::Judged, String>,
    deliver: Option<&'static str>,
    now: DateTime<Utc>,
) -> (Option<AlertEvent>, Vec<Delivery>) {
    let reason = match judged {
        Ok(j) => j.reason.clone(),
        Err(e) => e.clone(),
    };
    let event_id = domain::reports::run_id(
        now.timestamp_millis(),
        &hex::encode(sha2::Sha256::digest(format!(
            "{}/{}",
            old.meta.id, new.revision
        ))),
    );
    let mut event = AlertEvent {
        id: event_id.clone(),
        alert_id: old.meta.id.clone(),
        company_id: old.meta.company_id.clone(),
        time: now,
        from: old.state,
        to: new.state,
        value: new.last_value,
        reason,
        deliveries: Vec::new(),
        ttl: Some(now.timestamp() + platform::store::alerts::EVENT_RETENTION_SECS),
    };
    let (Some(kind), Some(klip), Ok(judged)) = (deliver, klip, judged) else {
        return (Some(event), Vec::new());
    };
    let mut data = alerts::event_data(new, klip, judged, &event_id);
    data["state"] = json!({"from": old.state, "to": new.state});
    let payload = Event::derived(
        kind,
        &format!("{}/{}", old.meta.id, new.revision),
        now,
        data,
    );
    let deliveries: Vec<Delivery> = new
        .channels
        .iter()
        .map(|channel| {
            Delivery::queued(
                &payload,
                &old.meta.company_id,
                channel,
                DeliveryKind::Alert,
                DeliverySource {
                    alert_id: Some(old.meta.id.clone()),
                    alert_event_id: Some(event_id.clone()),
                    ..DeliverySource::default()
                },
                now,
            )
        })
        .collect();
    event.deliveries = deliveries
        .iter()
        .map(|d| json!({"channel_id": d.channel_id, "delivery_id": d.id}))
        .collect();
    (Some(event), deliveries)
}

/// Whether a stream record's Klip value moved (the whole `value` attribute differs).
pub fn value_moved(old: &serde_dynamo::Item, new: &serde_dynamo::Item) -> bool {
    old.get("value") != new.get("value")
}
