//! One attempt of a delivery (API.md §6 notifications), exactly once at a time:
//! 1. **claim** it with a lease (`queued`/`retrying` whose time has come, or `sending` whose
//!    lease ended → `sending`, `attempts + 1`); anything else is left alone;
//! 2. **check** what may stop it before sending: the channel deleted or disabled, the
//!    company's `deliveries.perDay` spent (counted once per delivery);
//! 3. **send**: a webhook signed per Standard Webhooks (`webhook-id` = the event id on every
//!    attempt, `webhook-timestamp` this attempt's, one signature per live secret), a Slack
//!    message, or an email through SES v2 (raw MIME, the report attached under 10 MiB), all
//!    through the egress guard within 10 s;
//! 4. **record** the attempt and what follows, only while the lease is held: delivered;
//!    retrying after the backoff (a timeout, a network error, 408, 429 with its
//!    `Retry-After`, 5xx) or failed once no wait is left; failed at once on another 4xx or
//!    a refused address; with it, in one transaction, the channel's last delivery and
//!    failures in a row (a 410, or the tenth failure in a row, disables it) and the run's
//!    view of its delivery.
//!
//! A worker that dies mid-attempt leaves the delivery `sending` with a lease that ends: the
//! tick claims it again (the due index holds it at its lease's end), so none stays
//! `sending`.

use crate::error::WorkError;
use crate::generate::Outcome;
use chrono::{DateTime, Duration, Utc};
use domain::notify::{self, Attempt, Channel, Delivery, Verdict};
use domain::{ChannelType, DeliveryStatus};
use platform::auth::records::Company;
use platform::connector::{self, NotSent};
use platform::store::deliveries::ChannelOutcome;
use platform::store::WriteError;
use platform::AppState;
use std::time::Instant;

/// How long an attempt holds a delivery: its 10 s request and SES's call, with room.
pub const LEASE_SECS: i64 = 60;

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Tried {
    pub verdict: Verdict,
    pub response_status: Option<u16>,
    pub error: Option<String>,
    /// The receiver's `Retry-After`, in seconds.
    pub retry_after: Option<u64>,
    /// Whether it counts on the channel (a check that stopped it before sending does not).
    pub on_channel: bool,
}

impl Tried {
    fn stopped(error: String) -> Self {
        Tried {
            verdict: Verdict::Fail,
            response_status: None,
            error: Some(error),
            retry_after: None,
            on_channel: false,
        }
    }
}

/// Claims a delivery and makes one attempt (see the module documentation).
pub async fn run(state: &AppState, company: &str, id: &str) -> Outcome {
    let now = state.clock.now();
    let lease = now + Duration::seconds(LEASE_SECS);
    let deliveries = state.store.deliveries();
    let mut delivery = match deliveries.claim(company, id, now, lease).await {
        Ok(d) => d,
        Err(WriteError::Refused(_)) => return Outcome::Done,
        Err(WriteError::Failed(e)) => return Outcome::Retry(e.to_string()),
    };
    let started = Instant::now();
    let tried = match attempt(state, &mut delivery, now).await {
        Ok(tried) => tried,
        // Our storage failed: the lease ends and the tick (or the stream) tries again.
        Err(e) => return Outcome::Retry(e.to_string()),
    };
    tracing::info!(delivery = %delivery.id, attempt = delivery.attempts, verdict = ?tried.verdict,
        status = ?tried.response_status, "delivery attempt");
    delivery.record(Attempt {
        at: now,
        response_status: tried.response_status,
        error: tried.error.clone(),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    });
    decide(state, &mut delivery, &tried, now);
    let on_channel = channel_outcome(&delivery, &tried, now);
    let channel = on_channel
        .as_ref()
        .map(|o| (o, notify::DISABLE_AFTER_FAILURES));
    match deliveries.finish(&delivery, lease, channel).await {
        Ok(disabled) if disabled => {
            tracing::warn!(channel = %delivery.channel_id, "channel disabled by its deliveries")
        }
        Ok(_) => {}
        Err(WriteError::Refused(())) => return Outcome::Done,
        Err(WriteError::Failed(e)) => return Outcome::Retry(e.to_string()),
    }
    // Counted by the template's metric filter (the failed-deliveries alarm).
    if delivery.status == DeliveryStatus::Failed {
        tracing::warn!(delivery = %delivery.id, channel = %delivery.channel_id,
            kind = %delivery.kind, error = delivery.error.as_deref().unwrap_or_default(),
            "delivery failed");
    }
    Outcome::Done
}

/// What follows an attempt: delivered, retrying at the backoff's next time, or failed.
fn decide(state: &AppState, delivery: &mut Delivery, tried: &Tried, now: DateTime<Utc>) {
    delivery.lease_until = None;
    match tried.verdict {
        Verdict::Delivered => {
            delivery.status = DeliveryStatus::Delivered;
            delivery.delivered_at = Some(now);
            delivery.next_attempt_at = None;
            delivery.error = None;
        }
        Verdict::Retry => {
            let jitter: f64 = rand::random();
            match notify::next_wait(
                &state.config.delivery_backoff,
                delivery.attempts,
                jitter,
                tried.retry_after,
            ) {
                Some(wait) => {
                    delivery.status = DeliveryStatus::Retrying;
                    delivery.next_attempt_at =
                        Some(now + Duration::seconds(i64::try_from(wait).unwrap_or(i64::MAX / 2)));
                    delivery.error = tried.error.clone();
                }
                None => {
                    delivery.status = DeliveryStatus::Failed;
                    delivery.next_attempt_at = None;
                    delivery.error = Some(format!(
                        "gave up after {} attempts; the last: {}",
                        delivery.attempts,
                        tried.error.as_deref().unwrap_or("no answer")
                    ));
                }
            }
        }
        Verdict::Fail | Verdict::Gone => {
            delivery.status = DeliveryStatus::Failed;
            delivery.next_attempt_at = None;
            delivery.error = tried.error.clone();
        }
    }
}

/// What a finished delivery does to its channel (none for one a check stopped before
/// sending, or one still retrying).
fn channel_outcome(
    delivery: &Delivery,
    tried: &Tried,
    now: DateTime<Utc>,
) -> Option<ChannelOutcome> {
    let done = matches!(
        delivery.status,
        DeliveryStatus::Delivered | DeliveryStatus::Failed
    );
    (done && tried.on_channel).then(|| ChannelOutcome {
        last: notify::LastDelivery {
            status: delivery.status,
            at: now,
            response_status: tried.response_status,
        },
        delivered: delivery.status == DeliveryStatus::Delivered,
        disable: (tried.verdict == Verdict::Gone)
            .then(|| "the receiver answered 410 Gone: it no longer takes deliveries".to_owned()),
    })
}

/// Step 2 and 3: the checks, then the request.
async fn attempt(
    state: &AppState,
    delivery: &mut Delivery,
    now: DateTime<Utc>,
) -> Result<Tried, WorkError> {
    let company = delivery.company_id.clone();
    let channel: Option<Channel> = state
        .store
        .assets()
        .get::<Channel>(&company, &delivery.channel_id)
        .await?;
    let Some(channel) = channel else {
        return Ok(Tried::stopped("the channel was deleted".into()));
    };
    if channel.disabled {
        return Ok(Tried::stopped(format!(
            "the channel is disabled ({})",
            channel
                .disabled_reason
                .as_deref()
                .unwrap_or("no reason given")
        )));
    }
    if !delivery.counted {
        delivery.counted = true;
        if let Some(refusal) = over_budget(state, &company, now).await? {
            return Ok(Tried::stopped(refusal));
        }
    }
    Ok(match channel.kind {
        ChannelType::Webhook => webhook(state, &channel, delivery, now).await?,
        ChannelType::Slack => slack(state, &channel, delivery).await?,
        ChannelType::Email => crate::email::send(state, &channel, delivery).await?,
    })
}

/// Counts the delivery on the company's day; the refusal when that is past
/// `deliveries.perDay`.
async fn over_budget(
    state: &AppState,
    company: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>, WorkError> {
    let owner: Option<Company> = state.store.companies().get(company).await?;
    let Some(budget) = owner.map_or(
        Some(platform::auth::records::DEFAULT_DELIVERIES_PER_DAY),
        |c| c.deliveries_budget(),
    ) else {
        return Ok(None);
    };
    let count = state.store.deliveries().count_today(company, now).await?;
    Ok((u64::try_from(count).unwrap_or(0) > budget).then(|| {
        format!(
            "deliveries.perDay limit reached: this company may send {budget} deliveries a day (it resets at 00:00 America/New_York)"
        )
    }))
}

/// What a POST's answer (or its absence) means.
fn judged(sent: Result<connector::Answered, NotSent>, now: DateTime<Utc>) -> Tried {
    match sent {
        Ok(answer) => {
            let verdict = notify::verdict(answer.status);
            let error = (verdict != Verdict::Delivered).then(|| {
                let excerpt = answer.excerpt.trim();
                if excerpt.is_empty() {
                    format!("the receiver answered HTTP {}", answer.status)
                } else {
                    format!("the receiver answered HTTP {}: {excerpt}", answer.status)
                }
            });
            Tried {
                verdict,
                response_status: Some(answer.status),
                error,
                retry_after: answer
                    .retry_after
                    .as_deref()
                    .and_then(|v| notify::retry_after(v, now)),
                on_channel: true,
            }
        }
        Err(NotSent::Network(error)) => Tried {
            verdict: Verdict::Retry,
            response_status: None,
            error: Some(error),
            retry_after: None,
            on_channel: true,
        },
        Err(NotSent::Refused(error)) => Tried {
            verdict: Verdict::Fail,
            response_status: None,
            error: Some(error),
            retry_after: None,
            on_channel: true,
        },
    }
}

/// A Standard Webhooks request: the stored body, signed now by every live secret.
async fn webhook(
    state: &AppState,
    channel: &Channel,
    delivery: &Delivery,
    now: DateTime<Utc>,
) -> Result<Tried, WorkError> {
    let url = channel.url.as_deref().unwrap_or_default();
    let timestamp = now.timestamp();
    let signature = match notify::signature(
        &channel.signing_secrets(now),
        &delivery.event_id,
        timestamp,
        &delivery.payload,
    ) {
        Ok(s) => s,
        Err(e) => return Ok(Tried::stopped(e)),
    };
    let headers = [
        ("content-type", "application/json".to_owned()),
        ("webhook-id", delivery.event_id.clone()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
    ];
    let sent = connector::post(
        url,
        &headers,
        delivery.payload.clone().into_bytes(),
        &state.config.allowed_networks,
    )
    .await?;
    Ok(judged(sent, now))
}

/// A Slack incoming-webhook message with the event's facts.
async fn slack(
    state: &AppState,
    channel: &Channel,
    delivery: &Delivery,
) -> Result<Tried, WorkError> {
    let payload: serde_json::Value = serde_json::from_str(&delivery.payload).unwrap_or_default();
    let body = notify::slack_message(&payload).to_string();
    let sent = connector::post(
        channel.url.as_deref().unwrap_or_default(),
        &[("content-type", "application/json".to_owned())],
        body.into_bytes(),
        &state.config.allowed_networks,
    )
    .await?;
    Ok(judged(sent, state.clock.now()))
}
