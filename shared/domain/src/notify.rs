//! Notifications (API.md §6 notifications): channels (email, signed webhook, Slack), the
//! deliveries made to them, and what each sends. Everything here is computation: the
//! platform stores channels and deliveries, and the worker sends.
//!
//! - A **channel** is an asset of its company (kind [`Kind::Channel`]); a webhook channel
//!   signs with a `whsec_` secret ([`new_secret`]), and after a rotation with the previous
//!   one too for [`ROTATION_OVERLAP_SECS`].
//! - A **delivery** is one event to one channel, a durable job: its id is derived from the
//!   event and the channel ([`delivery_id`]), so a second creation of it is refused by the
//!   database instead of sending twice. It keeps the exact body it sends ([`Delivery::payload`]),
//!   so every attempt sends the same bytes under the same `webhook-id`.
//! - Webhook requests follow Standard Webhooks 1.0 ([`signature`]); Slack gets an
//!   incoming-webhook message ([`slack_message`]); email a MIME message ([`mime`]).

use crate::asset::{Asset, Kind, Meta};
use crate::sets::{ChannelType, DeliveryKind, DeliveryStatus};
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The most addresses an email channel sends to.
pub const MAX_EMAIL_TO: usize = 50;
/// How long a rotated-out webhook secret still signs (both signatures are sent).
pub const ROTATION_OVERLAP_SECS: i64 = 24 * 3600;
/// Failed deliveries in a row after which a channel is disabled.
pub const DISABLE_AFTER_FAILURES: u32 = 10;
/// The default `DELIVERY_BACKOFF_SECONDS`: seven attempts over about 31 hours.
pub const DEFAULT_BACKOFF: [u64; 6] = [30, 120, 600, 3600, 21_600, 86_400];
/// The most a `Retry-After` can push an attempt back.
pub const MAX_RETRY_AFTER_SECS: u64 = 86_400;
/// An email attaches the report's file when it is smaller than this (else it links it).
pub const MAX_ATTACHMENT_BYTES: u64 = 10 * 1024 * 1024;
/// How long a delivery's link to a report file works.
pub const LINK_SECS: i64 = 7 * 24 * 3600;
/// How long a delivery is kept (the table's time to live removes it after).
pub const DELIVERY_RETENTION_SECS: i64 = 30 * 24 * 3600;

/// An email channel's recipients.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmailTarget {
    pub to: Vec<String>,
}

/// The outcome of a channel's latest finished delivery.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LastDelivery {
    pub status: DeliveryStatus,
    #[serde(with = "crate::time::utc")]
    pub at: DateTime<Utc>,
    pub response_status: Option<u16>,
}

/// A notification channel.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Channel {
    pub meta: Meta,
    #[serde(rename = "type")]
    pub kind: ChannelType,
    #[serde(default)]
    pub email: Option<EmailTarget>,
    /// A webhook's or Slack's URL (stored as given; shown masked).
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub disabled_reason: Option<String>,
    #[serde(default)]
    pub consecutive_failures: u32,
    #[serde(default)]
    pub last_delivery: Option<LastDelivery>,
    /// The webhook signing secret (`whsec_...`); shown once, when made. Not shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The secret before the last rotation, which still signs until `previous_until`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<String>,
    #[serde(
        default,
        with = "crate::time::utc::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub previous_until: Option<DateTime<Utc>>,
}

impl Channel {
    /// The secrets that sign a request at `now`: the current one, and the previous one
    /// within a day of a rotation.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&str> {
        let mut secrets: Vec<&str> = self.secret.iter().map(String::as_str).collect();
        if let (Some(previous), Some(until)) = (&self.previous_secret, self.previous_until) {
            if now < until {
                secrets.push(previous);
            }
        }
        secrets
    }
}

/// What the API shows of a channel besides its meta (never its secrets).
#[derive(Debug, Serialize)]
pub struct ChannelFields<'a> {
    #[serde(rename = "type")]
    pub kind: ChannelType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: &'a Option<EmailTarget>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub disabled: bool,
    pub disabled_reason: &'a Option<String>,
    pub consecutive_failures: u32,
    pub last_delivery: &'a Option<LastDelivery>,
}

impl Asset for Channel {
    const KIND: Kind = Kind::Channel;
    type Fields<'a> = ChannelFields<'a>;
    fn fields(&self) -> ChannelFields<'_> {
        ChannelFields {
            kind: self.kind,
            email: &self.email,
            url: self.url.as_deref().map(crate::records::mask_url),
            disabled: self.disabled,
            disabled_reason: &self.disabled_reason,
            consecutive_failures: self.consecutive_failures,
            last_delivery: &self.last_delivery,
        }
    }
    fn meta(&self) -> &Meta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut Meta {
        &mut self.meta
    }
}

/// A new webhook signing secret: `whsec_` and the base64 of 32 random bytes.
pub fn new_secret() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The Standard Webhooks signature (`v1,<base64>`) of a request by one secret: HMAC-SHA256
/// of `{id}.{timestamp}.{body}` keyed by the base64-decoded secret (after its `whsec_`).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Result<String, String> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| "the channel's secret is not base64".to_owned())?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&key).map_err(|_| "the secret is not usable".to_owned())?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Ok(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The `webhook-signature` header: one signature per secret, space-separated.
pub fn signature(secrets: &[&str], id: &str, timestamp: i64, body: &str) -> Result<String, String> {
    let signed = secrets
        .iter()
        .map(|s| sign(s, id, timestamp, body))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(signed.join(" "))
}

/// Where a delivery's event came from.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DeliverySource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
}

/// One attempt to send.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Attempt {
    #[serde(with = "crate::time::utc")]
    pub at: DateTime<Utc>,
    pub response_status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// A file an email attaches (a report's).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Attachment {
    /// Where the file is in the bucket.
    pub key: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
}

/// What marks a delivery item, so the stream's filter can pass queued ones to the worker.
pub const DELIVERY_ENTITY: &str = crate::reports::JobKind::Delivery.as_str();

/// One event to one channel, sent by the worker in attempts until delivered or failed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Delivery {
    /// Always [`crate::reports::JobKind::Delivery`].
    pub entity: crate::reports::JobKind,
    pub id: String,
    pub company_id: String,
    /// The event's id: the `webhook-id` of every attempt (and of every channel it goes to).
    pub event_id: String,
    /// The event's type (`report.delivered`, `channel.test`, ...).
    pub event_type: String,
    pub channel_id: String,
    pub kind: DeliveryKind,
    #[serde(default)]
    pub source: DeliverySource,
    pub status: DeliveryStatus,
    /// Attempts made (a retry asked for by the API starts again from 0).
    pub attempts: u32,
    #[serde(
        default,
        with = "crate::time::utc::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<Attempt>,
    /// Every attempt, oldest first (at most [`MAX_HISTORY`]).
    #[serde(default)]
    pub history: Vec<Attempt>,
    /// Why it failed or was suppressed, in a sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(with = "crate::time::utc")]
    pub date_created: DateTime<Utc>,
    #[serde(
        default,
        with = "crate::time::utc::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub delivered_at: Option<DateTime<Utc>>,
    /// The exact JSON body every attempt sends (`{type, timestamp, data}`); not shown.
    pub payload: String,
    /// The file an email attaches; not shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
    /// Whether it was counted against the company's `deliveries.perDay`; not shown.
    #[serde(default)]
    pub counted: bool,
    /// Until when the attempt that claimed it holds it; not shown.
    #[serde(
        default,
        with = "crate::time::utc::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub lease_until: Option<DateTime<Utc>>,
    /// When the table's time to live removes it (Unix seconds); not shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
}

/// The most attempts a delivery remembers one by one.
pub const MAX_HISTORY: usize = 20;

/// What the API shows of a delivery.
#[derive(Debug, Serialize)]
pub struct DeliveryView<'a> {
    pub id: &'a str,
    pub event_id: &'a str,
    #[serde(rename = "type")]
    pub event_type: &'a str,
    pub channel_id: &'a str,
    pub kind: DeliveryKind,
    pub source: &'a DeliverySource,
    pub status: DeliveryStatus,
    pub attempts: u32,
    #[serde(with = "crate::time::utc::option")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt: &'a Option<Attempt>,
    pub history: &'a [Attempt],
    pub error: &'a Option<String>,
    #[serde(with = "crate::time::utc")]
    pub date_created: DateTime<Utc>,
    #[serde(with = "crate::time::utc::option")]
    pub delivered_at: Option<DateTime<Utc>>,
}

impl Delivery {
    /// A new queued delivery of `event` to `channel`, made at `now`.
    pub fn queued(
        event: &Event,
        company_id: &str,
        channel_id: &str,
        kind: DeliveryKind,
        source: DeliverySource,
        now: DateTime<Utc>,
    ) -> Self {
        Delivery {
            entity: crate::reports::JobKind::Delivery,
            id: delivery_id(&event.id, channel_id, event.timestamp),
            company_id: company_id.to_owned(),
            event_id: event.id.clone(),
            event_type: event.kind.clone(),
            channel_id: channel_id.to_owned(),
            kind,
            source,
            status: DeliveryStatus::Queued,
            attempts: 0,
            next_attempt_at: Some(now),
            last_attempt: None,
            history: Vec::new(),
            error: None,
            date_created: now,
            delivered_at: None,
            payload: event.body(),
            attachment: None,
            counted: false,
            lease_until: None,
            ttl: Some(now.timestamp() + DELIVERY_RETENTION_SECS),
        }
    }

    pub fn view(&self) -> DeliveryView<'_> {
        DeliveryView {
            id: &self.id,
            event_id: &self.event_id,
            event_type: &self.event_type,
            channel_id: &self.channel_id,
            kind: self.kind,
            source: &self.source,
            status: self.status,
            attempts: self.attempts,
            next_attempt_at: match self.status {
                DeliveryStatus::Queued | DeliveryStatus::Retrying => self.next_attempt_at,
                _ => None,
            },
            last_attempt: &self.last_attempt,
            history: &self.history,
            error: &self.error,
            date_created: self.date_created,
            delivered_at: self.delivered_at,
        }
    }

    /// Records an attempt.
    pub fn record(&mut self, attempt: Attempt) {
        self.history.push(attempt.clone());
        if self.history.len() > MAX_HISTORY {
            self.history.remove(0);
        }
        self.last_attempt = Some(attempt);
    }
}

/// The id of the delivery of event `event_id` to `channel`: time-ordered (12 hex digits of
/// the event's milliseconds) then 20 of a hash of both, so the same event and channel always
/// make the same id, and a second creation is refused.
pub fn delivery_id(event_id: &str, channel: &str, at: DateTime<Utc>) -> String {
    let hash = hex::encode(Sha256::digest(format!("{event_id}/{channel}")));
    crate::reports::run_id(at.timestamp_millis(), &hash)
}

/// An event: what a webhook receives as its body.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub id: String,
    pub kind: String,
    pub timestamp: DateTime<Utc>,
    pub data: Value,
}

impl Event {
    /// The event of type `kind` whose id is derived from `key` (the same source makes the
    /// same event id, so its deliveries are made once).
    pub fn derived(kind: &str, key: &str, timestamp: DateTime<Utc>, data: Value) -> Self {
        let hash = hex::encode(Sha256::digest(format!("{kind}/{key}")));
        Event {
            id: format!("evt_{}", &hash[..32]),
            kind: kind.to_owned(),
            timestamp,
            data,
        }
    }

    /// A new event with a random id.
    pub fn fresh(kind: &str, timestamp: DateTime<Utc>, data: Value) -> Self {
        Event {
            id: format!("evt_{}", crate::ids::new_id()),
            kind: kind.to_owned(),
            timestamp,
            data,
        }
    }

    /// The JSON body (`{type, timestamp, data}`).
    pub fn body(&self) -> String {
        json!({
            "type": self.kind,
            "timestamp": crate::time::rfc3339(self.timestamp),
            "data": self.data,
        })
        .to_string()
    }
}

/// How an attempt ended, from the receiver's HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Try again later (a timeout, a network error, 408, 429, 5xx).
    Retry,
    /// Fail now (another 4xx).
    Fail,
    /// Fail now and disable the channel (410 Gone).
    Gone,
}

pub fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        408 | 429 | 500..=599 => Verdict::Retry,
        410 => Verdict::Gone,
        _ => Verdict::Fail,
    }
}

/// Parses `DELIVERY_BACKOFF_SECONDS` (`30,120,600`): the waits before the second, third...
/// attempt. Empty or unparsable: an error naming it.
pub fn parse_backoff(text: &str) -> Result<Vec<u64>, String> {
    let waits = text
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.parse::<u64>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            format!("DELIVERY_BACKOFF_SECONDS must be comma-separated seconds, not '{text}'")
        })?;
    if waits.is_empty() || waits.len() > 20 {
        return Err("DELIVERY_BACKOFF_SECONDS must list 1 to 20 waits".into());
    }
    Ok(waits)
}

/// The wait before the next attempt after `attempts` attempts, or `None` when none is left:
/// the backoff's, give or take 10% (`jitter` in 0..1 picks where), and never less than a
/// `Retry-After` the receiver sent (capped at a day).
pub fn next_wait(
    backoff: &[u64],
    attempts: u32,
    jitter: f64,
    retry_after: Option<u64>,
) -> Option<u64> {
    let base = *backoff.get(usize::try_from(attempts).ok()?.checked_sub(1)?)?;
    let jittered = (base as f64 * (0.9 + 0.2 * jitter.clamp(0.0, 1.0))).round() as u64;
    Some(jittered.max(retry_after.unwrap_or(0).min(MAX_RETRY_AFTER_SECS)))
}

/// A `Retry-After` header's seconds (a number of seconds, or an HTTP date after `now`).
pub fn retry_after(value: &str, now: DateTime<Utc>) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds);
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    u64::try_from((at.with_timezone(&Utc) - now).num_seconds()).ok()
}

/// The facts a message about an event shows: a title, lines of highlights, a link.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub title: String,
    pub lines: Vec<String>,
    pub link: Option<String>,
}

/// What people read of an event (Slack and email say the same).
pub fn summary(payload: &Value) -> Summary {
    let kind = payload["type"].as_str().unwrap_or("event");
    let data = &payload["data"];
    match kind {
        "report.delivered" => {
            let name = data["report"]["name"].as_str().unwrap_or("A report");
            let lines = data["highlights"]
                .as_array()
                .map(|h| {
                    h.iter()
                        .filter_map(|i| i["text"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            Summary {
                title: format!("Report: {name}"),
                lines,
                link: data["file"]["url"].as_str().map(str::to_owned),
            }
        }
        "alert.firing" | "alert.resolved" => Summary {
            title: format!(
                "Alert {}: {}",
                if kind == "alert.firing" {
                    "firing"
                } else {
                    "resolved"
                },
                data["alert"]["name"].as_str().unwrap_or("")
            ),
            lines: data["text"]
                .as_str()
                .map(|t| vec![t.to_owned()])
                .unwrap_or_default(),
            link: None,
        },
        "channel.test" => Summary {
            title: format!(
                "Test of channel {}",
                data["channel"]["name"].as_str().unwrap_or("")
            ),
            lines: vec!["Pulseboard can deliver to this channel.".into()],
            link: None,
        },
        other => Summary {
            title: other.to_owned(),
            lines: data["text"]
                .as_str()
                .map(|t| vec![t.to_owned()])
                .unwrap_or_default(),
            link: None,
        },
    }
}

/// A Slack incoming-webhook message for an event: `text` (the fallback and notification
/// line) and `blocks` (a header, the highlights, the link).
pub fn slack_message(payload: &Value) -> Value {
    let s = summary(payload);
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": clip(&s.title, 150)}
    })];
    if !s.lines.is_empty() {
        let text: Vec<String> = s
            .lines
            .iter()
            .map(|l| format!("• {}", slack_escape(l)))
            .collect();
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": clip(&text.join("\n"), 3000)}
        }));
    }
    if let Some(link) = &s.link {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("<{link}|Download the report>")}
        }));
    }
    let mut text = s.title.clone();
    if let Some(first) = s.lines.first() {
        text.push_str(": ");
        text.push_str(first);
    }
    json!({"text": clip(&text, 3000), "blocks": blocks})
}

fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut clipped: String = text.chars().take(max - 1).collect();
    clipped.push('…');
    clipped
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An email's subject, text and HTML bodies for an event.
pub fn email_parts(payload: &Value, attached: Option<&str>) -> (String, String, String) {
    let s = summary(payload);
    let mut text = format!("{}\n\n", s.title);
    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\"><h2>{}</h2>",
        html_escape(&s.title)
    );
    if !s.lines.is_empty() {
        html.push_str("<ul>");
        for line in &s.lines {
            text.push_str(&format!("- {line}\n"));
            html.push_str(&format!("<li>{}</li>", html_escape(line)));
        }
        html.push_str("</ul>");
    }
    if let Some(name) = attached {
        text.push_str(&format!("\nThe report is attached ({name}).\n"));
        html.push_str(&format!(
            "<p>The report is attached ({}).</p>",
            html_escape(name)
        ));
    } else if let Some(link) = &s.link {
        text.push_str(&format!(
            "\nDownload the report (the link works for 7 days): {link}\n"
        ));
        html.push_str(&format!(
            "<p><a href=\"{}\">Download the report</a> (the link works for 7 days).</p>",
            html_escape(link)
        ));
    }
    html.push_str("<p style=\"color:#777\">Sent by Pulseboard.</p></body></html>");
    (s.title, text, html)
}

/// A file to attach to an email.
pub struct MimeFile<'a> {
    pub name: &'a str,
    pub content_type: &'a str,
    pub bytes: &'a [u8],
}

/// An email to write as MIME.
pub struct Mail<'a> {
    pub from: &'a str,
    pub to: &'a [String],
    pub subject: &'a str,
    pub text: &'a str,
    pub html: &'a str,
    pub file: Option<MimeFile<'a>>,
    /// Unique per event (the `Message-ID`'s left part).
    pub message_id: &'a str,
    pub date: DateTime<Utc>,
}

/// A raw MIME email (what SES's `SendEmail` takes as `Content.Raw`): text and HTML
/// alternatives, and a file attached when given. Headers are RFC 2047 encoded, bodies
/// base64 in 76-character lines.
pub fn mime(mail: Mail<'_>) -> Vec<u8> {
    let Mail {
        from,
        to,
        subject,
        text,
        html,
        file,
        message_id,
        date,
    } = mail;
    let boundary = format!("pb-{}", &hex::encode(Sha256::digest(message_id))[..24]);
    let mut out = String::new();
    out.push_str(&format!("From: {from}\r\nTo: {}\r\n", to.join(", ")));
    out.push_str(&format!("Subject: {}\r\n", encoded_word(subject)));
    out.push_str(&format!("Date: {}\r\n", date.to_rfc2822()));
    out.push_str(&format!("Message-ID: <{message_id}@pulseboard>\r\n"));
    out.push_str("MIME-Version: 1.0\r\n");
    out.push_str(&format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}-m\"\r\n\r\n"
    ));
    out.push_str(&format!("--{boundary}-m\r\n"));
    out.push_str(&format!(
        "Content-Type: multipart/alternative; boundary=\"{boundary}-a\"\r\n\r\n"
    ));
    for (kind, body) in [("text/plain", text), ("text/html", html)] {
        out.push_str(&format!("--{boundary}-a\r\n"));
        out.push_str(&format!("Content-Type: {kind}; charset=UTF-8\r\n"));
        out.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
        out.push_str(&base64_lines(body.as_bytes()));
    }
    out.push_str(&format!("--{boundary}-a--\r\n"));
    if let Some(file) = file {
        let name = file.name.replace(['"', '\r', '\n'], "");
        let content_type = file
            .content_type
            .split(';')
            .next()
            .unwrap_or("application/octet-stream");
        out.push_str(&format!("--{boundary}-m\r\n"));
        out.push_str(&format!(
            "Content-Type: {content_type}; name=\"{name}\"\r\n"
        ));
        out.push_str(&format!(
            "Content-Disposition: attachment; filename=\"{name}\"\r\n"
        ));
        out.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
        out.push_str(&base64_lines(file.bytes));
    }
    out.push_str(&format!("--{boundary}-m--\r\n"));
    out.into_bytes()
}

fn encoded_word(text: &str) -> String {
    if text.is_ascii() && !text.contains(['\r', '\n']) {
        return text.to_owned();
    }
    format!(
        "=?UTF-8?B?{}?=",
        base64::engine::general_purpose::STANDARD.encode(text.replace(['\r', '\n'], " "))
    )
}

fn base64_lines(bytes: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 76 * 2 + 2);
    for chunk in encoded.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

/// Checks an email address well enough to refuse typos (`a@b.c`, no spaces or commas).
pub fn plausible_email(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && address.len() <= 254
        && !address.contains(|c: char| c.is_whitespace() || c == ',' || c == '<' || c == '>')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's own example: its secret, message id,
    /// timestamp and payload give its signature.
    #[test]
    fn signatures_match_the_specifications_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = r#"{"test": 2432232314}"#;
        let signed = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(signed, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let two = signature(
            &[secret, secret],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
        )
        .unwrap();
        assert_eq!(two, format!("{signed} {signed}"));
        assert!(new_secret().starts_with("whsec_"));
        assert_ne!(new_secret(), new_secret());
    }

    #[test]
    fn statuses_decide_what_happens_next() {
        assert_eq!(verdict(200), Verdict::Delivered);
        assert_eq!(verdict(204), Verdict::Delivered);
        for retry in [408, 429, 500, 502, 503, 504] {
            assert_eq!(verdict(retry), Verdict::Retry, "{retry}");
        }
        assert_eq!(verdict(410), Verdict::Gone);
        for fail in [400, 401, 403, 404, 413, 422, 301] {
            assert_eq!(verdict(fail), Verdict::Fail, "{fail}");
        }
    }

    #[test]
    fn backoff_waits_with_jitter_and_retry_after() {
        let b = DEFAULT_BACKOFF;
        assert_eq!(next_wait(&b, 0, 0.5, None), None);
        assert_eq!(next_wait(&b, 1, 0.5, None), Some(30));
        assert_eq!(next_wait(&b, 1, 0.0, None), Some(27));
        assert_eq!(next_wait(&b, 1, 1.0, None), Some(33));
        assert_eq!(next_wait(&b, 6, 0.5, None), Some(86_400));
        assert_eq!(next_wait(&b, 7, 0.5, None), None, "seven attempts in all");
        assert_eq!(next_wait(&b, 1, 0.5, Some(600)), Some(600));
        assert_eq!(next_wait(&b, 1, 0.5, Some(10_000_000)), Some(86_400));
        assert_eq!(parse_backoff(" 1, 2 ,3").unwrap(), vec![1, 2, 3]);
        assert!(parse_backoff("").is_err() && parse_backoff("1,x").is_err());
        let now: DateTime<Utc> = "2026-12-07T10:00:00Z".parse().unwrap();
        assert_eq!(retry_after("120", now), Some(120));
        assert_eq!(retry_after("Mon, 07 Dec 2026 10:01:00 GMT", now), Some(60));
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn the_same_event_and_channel_make_the_same_delivery() {
        let at: DateTime<Utc> = "2026-12-07T10:00:00Z".parse().unwrap();
        let e = Event::derived("report.delivered", "run-1", at, json!({}));
        assert_eq!(
            e.id,
            Event::derived("report.delivered", "run-1", at, json!({})).id
        );
        assert_ne!(
            e.id,
            Event::derived("report.delivered", "run-2", at, json!({})).id
        );
        let a = delivery_id(&e.id, "c1", at);
        assert_eq!(a, delivery_id(&e.id, "c1", at));
        assert_ne!(a, delivery_id(&e.id, "c2", at));
        assert!(crate::ids::is_id(&a));
        let body: Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(body["type"], "report.delivered");
        assert_eq!(body["timestamp"], "2026-12-07T10:00:00Z");
    }

    #[test]
    fn messages_say_the_same_facts() {
        let payload = json!({"type": "report.delivered", "timestamp": "x", "data": {
            "report": {"name": "Sales <weekly>"},
            "highlights": [{"text": "Revenue rose 12%"}, {"text": "Churn fell"}],
            "file": {"url": "https://files.example/r.pdf?sig=1"}
        }});
        let slack = slack_message(&payload);
        assert!(slack["text"].as_str().unwrap().contains("Revenue rose 12%"));
        let blocks = slack["blocks"].to_string();
        assert!(blocks.contains("Sales &lt;weekly&gt;") || blocks.contains("Sales <weekly>"));
        assert!(blocks.contains("https://files.example/r.pdf?sig=1"));
        let (subject, text, html) = email_parts(&payload, None);
        assert_eq!(subject, "Report: Sales <weekly>");
        assert!(text.contains("- Churn fell") && text.contains("https://files.example"));
        assert!(
            html.contains("Sales &lt;weekly&gt;") && html.contains("<li>Revenue rose 12%</li>")
        );
        let (_, text, _) = email_parts(&payload, Some("r.pdf"));
        assert!(text.contains("attached (r.pdf)") && !text.contains("https://"));
    }

    #[test]
    fn mime_messages_carry_both_bodies_and_the_file() {
        let at: DateTime<Utc> = "2026-12-07T10:00:00Z".parse().unwrap();
        let raw = mime(Mail {
            from: "reports@pulseboard.local",
            to: &["a@example.com".into(), "b@example.com".into()],
            subject: "Report: Q4 — Umsätze",
            text: "text body",
            html: "<p>html body</p>",
            file: Some(MimeFile {
                name: "q4.pdf",
                content_type: "application/pdf",
                bytes: b"%PDF-1.7 ...",
            }),
            message_id: "evt_1",
            date: at,
        });
        let raw = String::from_utf8(raw).unwrap();
        assert!(raw.contains("To: a@example.com, b@example.com\r\n"));
        assert!(raw.contains("Subject: =?UTF-8?B?"));
        assert!(raw.contains("multipart/alternative") && raw.contains("text/html"));
        assert!(raw.contains("Content-Disposition: attachment; filename=\"q4.pdf\""));
        let b64 = base64::engine::general_purpose::STANDARD.encode(b"%PDF-1.7 ...");
        assert!(raw.contains(&b64));
        assert!(raw.lines().all(|l| l.len() <= 998));
    }

    #[test]
    fn emails_are_checked() {
        assert!(plausible_email("ops@example.com"));
        for bad in [
            "",
            "ops",
            "ops@",
            "@example.com",
            "a b@example.com",
            "a@b",
            "a,b@c.d",
        ] {
            assert!(!plausible_email(bad), "{bad}");
        }
    }
}
