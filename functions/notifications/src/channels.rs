//! Channels as assets: create (a webhook's signing secret answered once), update (`PUT
//! {"disabled": false}` re-enables), list, rotate a webhook's secret, and queue a test.
//! A webhook's or Slack's URL is checked against the egress guard when it is saved (and
//! again by the worker at every attempt).

use axum::extract::{Path, State};
use axum::response::Response;
use domain::notify::{self, Channel, Delivery, DeliverySource, EmailTarget, Event, MAX_EMAIL_TO};
use domain::{ChannelType, DeliveryKind};
use platform::assets::resource::{self, Edit};
use platform::assets::{self, check_common, find, save, view, Meta};
use platform::auth::Caller;
use platform::envelope;
use platform::extract::{nullable, JsonBody, NoParams};
use platform::paging::Listing;
use platform::store::WriteError;
use platform::{ApiError, ApiResult, AppState, Problems};
use serde::Deserialize;
use serde_json::{json, Value};

/// The longest channel URL (as for a data source's `endpoint_url`).
const MAX_URL: usize = 2048;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelBody {
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    description: Option<Option<String>>,
    slug: Option<String>,
    #[serde(rename = "type")]
    kind: Option<ChannelType>,
    email: Option<EmailTarget>,
    url: Option<String>,
    disabled: Option<bool>,
}

/// The channel list's filters.
#[derive(Deserialize, Debug)]
pub struct ChannelFilters {
    #[serde(rename = "type")]
    kind: Option<ChannelType>,
    disabled: Option<bool>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    list: Listing<ChannelFilters>,
) -> ApiResult<Response> {
    let (kind, disabled) = (list.filters.kind, list.filters.disabled);
    resource::list(&state, &caller, &list, "channels", |c: &Channel| {
        kind.is_none_or(|k| c.kind == k) && disabled.is_none_or(|d| c.disabled == d)
    })
    .await
}

/// Checks the recipients of an email channel.
fn check_email(email: &EmailTarget, problems: &mut Problems) {
    if email.to.is_empty() || email.to.len() > MAX_EMAIL_TO {
        problems.add(
            "email.to",
            format!("must list 1 to {MAX_EMAIL_TO} addresses"),
        );
    }
    for (i, address) in email.to.iter().enumerate() {
        if !notify::plausible_email(address) {
            problems.add(
                format!("email.to[{i}]"),
                format!("'{address}' is not an email address"),
            );
        }
    }
}

/// Applies a create or update body to `channel`, collecting every problem.
async fn apply(
    state: &AppState,
    channel: &mut Channel,
    body: ChannelBody,
    creating: bool,
) -> ApiResult<()> {
    let description = body.description.as_ref().and_then(|d| d.as_deref());
    let mut problems = check_common(
        body.name.as_deref(),
        description,
        body.slug.as_deref(),
        creating,
    );
    match body.kind {
        Some(kind) if creating => channel.kind = kind,
        Some(kind) if kind != channel.kind => {
            problems.add("type", "cannot change: make a new channel instead")
        }
        Some(_) => {}
        None if creating => problems.add("type", "is required: email, webhook or slack"),
        None => {}
    }
    let kind = channel.kind;
    match (&body.email, kind) {
        (Some(email), ChannelType::Email) => {
            check_email(email, &mut problems);
            channel.email = Some(email.clone());
        }
        (Some(_), _) => problems.add("email", "is only for email channels"),
        (None, ChannelType::Email) if creating => problems.add(
            "email",
            "is required for an email channel: {\"to\": [addresses]}",
        ),
        (None, _) => {}
    }
    match (&body.url, kind) {
        (Some(url), ChannelType::Webhook | ChannelType::Slack) if url.len() > MAX_URL => {
            problems.add("url", format!("must be at most {MAX_URL} characters"))
        }
        (Some(url), ChannelType::Webhook | ChannelType::Slack) => {
            // A masked URL sent back keeps the stored secrets.
            let url = match &channel.url {
                Some(old) => domain::records::unmask_url(url, old),
                None => url.clone(),
            };
            match platform::connector::check_url(&url, &state.config.allowed_networks).await {
                Ok(()) => channel.url = Some(url),
                Err(why) => problems.add("url", why),
            }
        }
        (Some(_), _) => problems.add("url", "is only for webhook and slack channels"),
        (None, ChannelType::Webhook | ChannelType::Slack) if creating => {
            problems.add("url", "is required for a webhook or slack channel")
        }
        (None, _) => {}
    }
    problems.check()?;
    match body.disabled {
        Some(false) => {
            channel.disabled = false;
            channel.disabled_reason = None;
            channel.consecutive_failures = 0;
        }
        Some(true) if !channel.disabled => {
            channel.disabled = true;
            channel.disabled_reason = Some("disabled by a user".into());
        }
        _ => {}
    }
    channel
        .meta
        .apply(body.name, body.description.flatten(), body.slug);
    Ok(())
}

/// A channel's view with its signing secret (answered once, when it is made or rotated).
fn with_secret(channel: &Channel) -> ApiResult<Value> {
    let mut shown = view(channel)?;
    if let (Some(secret), Value::Object(map)) = (&channel.secret, &mut shown) {
        map.insert("secret".into(), json!(secret));
    }
    Ok(shown)
}

/// `POST /channels`: 201 with the channel (a webhook's `secret` shown this once).
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    JsonBody(body): JsonBody<ChannelBody>,
) -> ApiResult<Response> {
    let mut channel = Channel {
        meta: Meta::new(
            caller.company_id(),
            caller.user_id(),
            String::new(),
            None,
            None,
        ),
        kind: ChannelType::Webhook,
        email: None,
        url: None,
        disabled: false,
        disabled_reason: None,
        consecutive_failures: 0,
        last_delivery: None,
        secret: None,
        previous_secret: None,
        previous_until: None,
    };
    apply(&state, &mut channel, body, true).await?;
    if channel.kind == ChannelType::Webhook {
        channel.secret = Some(notify::new_secret());
    }
    let channel = assets::create(&state, channel).await?;
    Ok(envelope::created(
        &envelope::location("channels", &channel.meta.id),
        with_secret(&channel)?,
    ))
}

/// `PUT /channels/{id}` (`resource::update`): a partial update; the type stays.
impl Edit<Channel> for ChannelBody {
    async fn apply(
        self,
        state: &AppState,
        _caller: &Caller,
        channel: &mut Channel,
    ) -> ApiResult<()> {
        apply(state, channel, self, false).await
    }
}

/// `POST /channels/{id}/rotate-secret`: a new signing secret, answered once; the old one
/// keeps signing beside it for 24 hours, so receivers can switch without missing a request.
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let old: Channel = find(&state, &caller, &id).await?;
    if old.kind != ChannelType::Webhook {
        return Err(ApiError::BadRequest(
            "only webhook channels have a signing secret".into(),
        ));
    }
    let now = state.clock.now();
    let mut new = old.clone();
    new.previous_secret = old.secret.clone();
    new.previous_until = Some(now + chrono::Duration::seconds(notify::ROTATION_OVERLAP_SECS));
    new.secret = Some(notify::new_secret());
    let saved = save(&state, &old, new).await?;
    Ok(envelope::ok(with_secret(&saved)?))
}

/// `POST /channels/{id}/test`: queues a `channel.test` delivery; 202 with it.
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let channel: Channel = find(&state, &caller, &id).await?;
    if channel.disabled {
        return Err(ApiError::Conflict(format!(
            "the channel is disabled ({}); re-enable it with PUT {{\"disabled\": false}}",
            channel
                .disabled_reason
                .as_deref()
                .unwrap_or("no reason given")
        )));
    }
    let now = state.clock.now();
    let event = Event::fresh(
        "channel.test",
        now,
        json!({"channel": {"id": channel.meta.id, "name": channel.meta.name,
                           "type": channel.kind}}),
    );
    let delivery = Delivery::queued(
        &event,
        caller.company_id(),
        &channel.meta.id,
        DeliveryKind::Test,
        DeliverySource {
            channel_id: Some(channel.meta.id.clone()),
            ..DeliverySource::default()
        },
        now,
    );
    match state.store.deliveries().create(&delivery).await {
        Ok(()) => Ok(envelope::accepted(
            &envelope::location("deliveries", &delivery.id),
            delivery.view(),
        )),
        Err(WriteError::Refused(())) => {
            Err(ApiError::Conflict("delivery id collision; retry".into()))
        }
        Err(WriteError::Failed(e)) => Err(e.into()),
    }
}
