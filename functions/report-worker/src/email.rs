//! Email deliveries through Amazon SES v2 `SendEmail` (a raw MIME message, so the report can
//! be attached), from `MAIL_FROM`, with `SES_CONFIGURATION_SET` when set.
//! `AWS_ENDPOINT_URL_SESV2` points the client at a local SES server (`aws-ses-v2-local`).
//!
//! SES throttling and service or network failures are retried like a webhook's 5xx; a
//! message SES rejects (an unverified sender, a bad address) fails at once.

use crate::deliver::Tried;
use crate::error::WorkError;
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage};
use domain::notify::{self, Channel, Delivery, MimeFile, Verdict};
use platform::AppState;
use tokio::sync::OnceCell;

/// The SES client, made on first use (only the worker sends email, and only some batches).
async fn client() -> &'static aws_sdk_sesv2::Client {
    static CLIENT: OnceCell<aws_sdk_sesv2::Client> = OnceCell::const_new();
    CLIENT
        .get_or_init(|| async {
            let sdk = platform::store::sdk_config().await;
            aws_sdk_sesv2::Client::new(&sdk)
        })
        .await
}

/// Sends the delivery's event to an email channel's recipients.
pub async fn send(
    state: &AppState,
    channel: &Channel,
    delivery: &Delivery,
) -> Result<Tried, WorkError> {
    platform::held::outbound().await?;
    let to = channel
        .email
        .as_ref()
        .map(|e| e.to.clone())
        .unwrap_or_default();
    let raw = message(state, &to, delivery).await?;
    let message = RawMessage::builder()
        .data(Blob::new(raw))
        .build()
        .map_err(WorkError::fault)?;
    let sent = tokio::time::timeout(
        platform::connector::TIMEOUT,
        client()
            .await
            .send_email()
            .from_email_address(&state.config.mail_from)
            .destination(Destination::builder().set_to_addresses(Some(to)).build())
            .content(EmailContent::builder().raw(message).build())
            .set_configuration_set_name(state.config.ses_configuration_set.clone())
            .send(),
    )
    .await;
    Ok(match sent {
        Err(_) => retry(None, "SES did not answer within 10 seconds".into()),
        Ok(Ok(_)) => Tried {
            verdict: Verdict::Delivered,
            response_status: Some(200),
            error: None,
            retry_after: None,
            on_channel: true,
        },
        Ok(Err(e)) => refused(e),
    })
}

/// The raw MIME message: the event's highlights as text and HTML, and the report's file
/// attached when it is to be and is small enough (else the message links it).
async fn message(
    state: &AppState,
    to: &[String],
    delivery: &Delivery,
) -> Result<Vec<u8>, WorkError> {
    let payload: serde_json::Value = serde_json::from_str(&delivery.payload).unwrap_or_default();
    let mut file = None;
    if let Some(attachment) = &delivery.attachment {
        if attachment.size < notify::MAX_ATTACHMENT_BYTES {
            file = state.store.files().get(&attachment.key).await?;
        }
    }
    let attached = delivery
        .attachment
        .as_ref()
        .filter(|_| file.is_some())
        .map(|a| a.name.as_str());
    let (subject, text, html) = notify::email_parts(&payload, attached);
    Ok(notify::mime(notify::Mail {
        from: &state.config.mail_from,
        to,
        subject: &subject,
        text: &text,
        html: &html,
        file: match (&delivery.attachment, &file) {
            (Some(a), Some(bytes)) => Some(MimeFile {
                name: &a.name,
                content_type: &a.content_type,
                bytes,
            }),
            _ => None,
        },
        message_id: &delivery.event_id,
        date: state.clock.now(),
    }))
}

/// What an error of SES means: throttling, its own failures and the network's are retried;
/// a message it refuses fails.
type SendError = aws_sdk_sesv2::error::SdkError<
    aws_sdk_sesv2::operation::send_email::SendEmailError,
    aws_sdk_sesv2::config::http::HttpResponse,
>;

fn refused(e: SendError) -> Tried {
    let status = e.raw_response().map(|r| r.status().as_u16());
    let text = platform::store::short_error(&e);
    let service = e.as_service_error();
    let transient = service.is_none()
        || service
            .is_some_and(|s| s.is_too_many_requests_exception() || s.is_limit_exceeded_exception())
        || status.is_some_and(|s| s >= 500 || s == 429);
    if transient {
        retry(status, format!("SES: {text}"))
    } else {
        Tried {
            verdict: Verdict::Fail,
            response_status: status,
            error: Some(format!("SES refused the message: {text}")),
            retry_after: None,
            on_channel: true,
        }
    }
}

fn retry(status: Option<u16>, error: String) -> Tried {
    Tried {
        verdict: Verdict::Retry,
        response_status: status,
        error: Some(error),
        retry_after: None,
        on_channel: true,
    }
}
