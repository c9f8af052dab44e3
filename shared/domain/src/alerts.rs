//! Alerts on Klips (API.md §6 notifications, alerts): a condition on a Klip's value, judged
//! whenever the value is recomputed (never on a read), and the state machine that decides
//! what is delivered:
//!
//! - `ok` → `firing`: `alert.firing` (a `first_time` alert then pauses itself);
//! - `firing` → `firing`: `every_time` repeats `alert.firing` once the cooldown has passed;
//! - `firing` → `ok`: `alert.resolved` (when `notify_resolved`);
//! - a value that cannot be judged (the Klip's value failed, no target, a deleted Klip):
//!   `error` with the reason, and nothing delivered.
//!
//! `anomaly` judges the latest complete bucket of the Klip's series with the report
//! analysis itself ([`crate::analysis::insights`]: the same method and thresholds), so an
//! alert and a report never disagree about the same point.

use crate::analysis::insights::{self, InsightType, KlipSeries, Settings};
use crate::asset::{Asset, Kind, Meta};
use crate::klip::KlipValue;
use crate::records::Klip;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use crate::sets::{AlertState, ConditionType, Direction, Frequency};

/// A threshold: a number, or `"target"` (the Klip's `display.target`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Threshold {
    Number(f64),
    Named(TargetWord),
}

/// The one word a threshold may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetWord {
    Target,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: ConditionType,
    /// The threshold (`above`, `below`), or the percentage (`change_pct`); none for
    /// `anomaly`.
    #[serde(default)]
    pub value: Option<Threshold>,
    /// `change_pct` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
}

/// The default `cooldown_minutes`.
pub const DEFAULT_COOLDOWN_MINUTES: u32 = 60;

fn sixty() -> u32 {
    DEFAULT_COOLDOWN_MINUTES
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub meta: Meta,
    pub klip_id: String,
    pub condition: Condition,
    #[serde(default)]
    pub frequency: Frequency,
    #[serde(default = "sixty")]
    pub cooldown_minutes: u32,
    #[serde(default = "yes")]
    pub notify_resolved: bool,
    pub channels: Vec<String>,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub state: AlertState,
    /// Why it is in `error`.
    #[serde(default)]
    pub state_reason: Option<String>,
    #[serde(default)]
    pub last_value: Option<f64>,
    #[serde(default, with = "crate::time::utc::option")]
    pub last_evaluated_at: Option<DateTime<Utc>>,
    #[serde(default, with = "crate::time::utc::option")]
    pub last_fired_at: Option<DateTime<Utc>>,
    /// Moves on with every evaluation's write, whose condition it is (so two evaluations of
    /// one change cannot both fire). Not shown.
    #[serde(default)]
    pub revision: u64,
}

/// What the API shows of an alert besides its meta.
#[derive(Debug, Serialize)]
pub struct AlertFields<'a> {
    pub klip_id: &'a str,
    pub condition: &'a Condition,
    pub frequency: Frequency,
    pub cooldown_minutes: u32,
    pub notify_resolved: bool,
    pub channels: &'a [String],
    pub paused: bool,
    pub state: AlertState,
    pub state_reason: &'a Option<String>,
    pub last_value: Option<f64>,
    #[serde(with = "crate::time::utc::option")]
    pub last_evaluated_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::time::utc::option")]
    pub last_fired_at: Option<DateTime<Utc>>,
}

impl Asset for Alert {
    const KIND: Kind = Kind::Alert;
    type Fields<'a> = AlertFields<'a>;
    fn fields(&self) -> AlertFields<'_> {
        AlertFields {
            klip_id: &self.klip_id,
            condition: &self.condition,
            frequency: self.frequency,
            cooldown_minutes: self.cooldown_minutes,
            notify_resolved: self.notify_resolved,
            channels: &self.channels,
            paused: self.paused,
            state: self.state,
            state_reason: &self.state_reason,
            last_value: self.last_value,
            last_evaluated_at: self.last_evaluated_at,
            last_fired_at: self.last_fired_at,
        }
    }
    fn meta(&self) -> &Meta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut Meta {
        &mut self.meta
    }
    fn watched_klip(&self) -> Option<&str> {
        Some(&self.klip_id)
    }
}

/// Checks a condition's shape; the problems as (field, message).
pub fn check_condition(c: &Condition) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    match (c.kind, &c.value) {
        (ConditionType::Anomaly, Some(_)) => problems.push((
            "condition.value".into(),
            "is not used by an anomaly condition; leave it out".into(),
        )),
        (ConditionType::Anomaly, None) => {}
        (_, None) => problems.push((
            "condition.value".into(),
            "is required: a number, or \"target\" for the Klip's display.target".into(),
        )),
        (_, Some(Threshold::Number(n))) if !n.is_finite() => {
            problems.push(("condition.value".into(), "must be a finite number".into()))
        }
        (ConditionType::ChangePct, Some(Threshold::Named(_))) => problems.push((
            "condition.value".into(),
            "is a percentage for change_pct, not \"target\"".into(),
        )),
        _ => {}
    }
    if c.direction.is_some() && c.kind != ConditionType::ChangePct {
        problems.push((
            "condition.direction".into(),
            "is only for change_pct conditions".into(),
        ));
    }
    problems
}

/// A judged value.
#[derive(Clone, Debug, PartialEq)]
pub struct Judged {
    /// Whether the condition holds.
    pub holds: bool,
    pub value: Option<f64>,
    pub previous: Option<f64>,
    pub change_pct: Option<f64>,
    /// The number compared with (the threshold, or the percentage).
    pub threshold: Option<f64>,
    /// One sentence saying what was judged and how.
    pub reason: String,
}

fn number(n: f64) -> String {
    let rounded = (n * 100.0).round() / 100.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded}")
    }
}

/// Judges `alert`'s condition on the Klip's value (`now` for the anomaly analysis); the
/// error is why it cannot be judged.
pub fn judge(
    alert: &Alert,
    klip: &Klip,
    value: &KlipValue,
    series: Option<&KlipSeries>,
    now: DateTime<Utc>,
) -> Result<Judged, String> {
    if let Some(error) = &value.error {
        return Err(format!("the Klip's value could not be computed: {error}"));
    }
    let name = &klip.meta.name;
    let current = value.current;
    let threshold = match &alert.condition.value {
        Some(Threshold::Number(n)) => Some(*n),
        Some(Threshold::Named(_)) => Some(klip.display.target.ok_or_else(|| {
            format!("the condition uses \"target\", but Klip '{name}' has no display.target")
        })?),
        None => None,
    };
    let mut judged = Judged {
        holds: false,
        value: current,
        previous: value.previous,
        change_pct: value.change_pct,
        threshold,
        reason: String::new(),
    };
    match alert.condition.kind {
        ConditionType::Above | ConditionType::Below => {
            let (Some(v), Some(t)) = (current, threshold) else {
                return Err(format!("Klip '{name}' has no current value"));
            };
            let above = alert.condition.kind == ConditionType::Above;
            judged.holds = if above { v > t } else { v < t };
            let word = if above { "above" } else { "below" };
            judged.reason = format!(
                "{name} is {}, {}{word} the threshold {}",
                number(v),
                if judged.holds { "" } else { "not " },
                number(t)
            );
        }
        ConditionType::ChangePct => {
            let t = threshold.unwrap_or(0.0).abs();
            let Some(pct) = value.change_pct else {
                return Err(format!(
                    "Klip '{name}' has no change against its previous period (no previous value)"
                ));
            };
            let direction = alert.condition.direction.unwrap_or_default();
            judged.holds = match direction {
                Direction::Up => pct >= t,
                Direction::Down => pct <= -t,
                Direction::Any => pct.abs() >= t,
            };
            let way = match direction {
                Direction::Up => "up",
                Direction::Down => "down",
                Direction::Any => "either way",
            };
            judged.reason = format!(
                "{name} changed {}% against its previous period ({} → {}); the alert is for {}% {way}",
                number(pct),
                value.previous.map_or("none".into(), number),
                current.map_or("none".into(), number),
                number(t)
            );
        }
        ConditionType::Anomaly => {
            let series = series.ok_or_else(|| format!("Klip '{name}' has no time series"))?;
            let (holds, reason, point) = anomaly(series, now)?;
            judged.holds = holds;
            judged.reason = reason;
            judged.value = Some(point);
        }
    }
    Ok(judged)
}

/// Whether the latest complete bucket of the series is an anomaly by the report analysis,
/// a sentence saying so (with the method and its parameters), and the bucket's value.
pub fn anomaly(series: &KlipSeries, now: DateTime<Utc>) -> Result<(bool, String, f64), String> {
    let (day, value) = *insights::complete_buckets(series, now)
        .last()
        .ok_or_else(|| "the Klip's series has no complete bucket yet".to_owned())?;
    let date = day.format("%Y-%m-%d").to_string();
    let found = insights::all_insights(series, now, &Settings::default())
        .into_iter()
        .find(|i| i.kind == InsightType::Anomaly && i.values.get("date") == Some(&json!(date)));
    let reason = match &found {
        Some(i) => format!("{} (method: {}; {})", i.text, i.method, params(&i.params)),
        None => format!(
            "{}: the bucket of {date} is not an anomaly by the report analysis",
            series.name
        ),
    };
    Ok((found.is_some(), reason, value))
}

fn params(p: &std::collections::BTreeMap<String, Value>) -> String {
    p.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What an evaluation does.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Nothing to write (paused, or nothing changed that is shown).
    Nothing,
    /// Record the evaluation; deliver `deliver` (an event type) if any; move to `to`.
    Move {
        to: AlertState,
        deliver: Option<&'static str>,
        /// Pause the alert (`first_time` after firing).
        pause: bool,
        reason: Option<String>,
    },
}

/// The state machine (see the module documentation).
pub fn step(alert: &Alert, judged: &Result<Judged, String>, now: DateTime<Utc>) -> Step {
    // A paused alert is not judged, but one that can no longer be (its Klip deleted) shows
    // why, so that resuming it does not pretend all is well.
    if alert.paused && (judged.is_ok() || alert.state == AlertState::Error) {
        return Step::Nothing;
    }
    let judged = match judged {
        Err(reason) => {
            return Step::Move {
                to: AlertState::Error,
                deliver: None,
                pause: false,
                reason: Some(reason.clone()),
            }
        }
        Ok(j) => j,
    };
    match (alert.state, judged.holds) {
        (AlertState::Firing, true) => {
            let cooled = alert
                .last_fired_at
                .is_none_or(|at| now - at >= Duration::minutes(i64::from(alert.cooldown_minutes)));
            let again = alert.frequency == Frequency::EveryTime && cooled;
            Step::Move {
                to: AlertState::Firing,
                deliver: again.then_some("alert.firing"),
                pause: false,
                reason: None,
            }
        }
        (_, true) => Step::Move {
            to: AlertState::Firing,
            deliver: Some("alert.firing"),
            pause: alert.frequency == Frequency::FirstTime,
            reason: None,
        },
        (AlertState::Firing, false) => Step::Move {
            to: AlertState::Ok,
            deliver: alert.notify_resolved.then_some("alert.resolved"),
            pause: false,
            reason: None,
        },
        (_, false) => Step::Move {
            to: AlertState::Ok,
            deliver: None,
            pause: false,
            reason: None,
        },
    }
}

/// An alert event: a transition (or a repeat), kept for `GET /alerts/{id}/events`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub id: String,
    pub alert_id: String,
    pub company_id: String,
    #[serde(with = "crate::time::utc")]
    pub time: DateTime<Utc>,
    pub from: AlertState,
    pub to: AlertState,
    pub value: Option<f64>,
    pub reason: String,
    /// `{channel_id, delivery_id}` of each delivery it made.
    #[serde(default)]
    pub deliveries: Vec<Value>,
    /// When the table removes it (Unix seconds); not shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
}

impl AlertEvent {
    pub fn view(&self) -> Value {
        json!({"id": self.id, "time": crate::time::rfc3339(self.time), "from": self.from,
               "to": self.to, "value": self.value, "reason": self.reason,
               "deliveries": self.deliveries})
    }
}

/// The payload of an alert's event (`alert.firing` / `alert.resolved`).
pub fn event_data(alert: &Alert, klip: &Klip, judged: &Judged, event_id: &str) -> Value {
    json!({
        "alert": {"id": alert.meta.id, "name": alert.meta.name, "slug": alert.meta.slug,
                  "condition": alert.condition},
        "klip": {"id": klip.meta.id, "name": klip.meta.name},
        "alert_event_id": event_id,
        "value": judged.value,
        "previous": judged.previous,
        "change_pct": judged.change_pct,
        "change": match (judged.value, judged.previous) {
            (Some(v), Some(p)) => Some(v - p),
            _ => None,
        },
        "threshold": judged.threshold,
        "text": judged.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn klip(target: Option<f64>) -> Klip {
        let mut k: Klip = serde_json::from_value(json!({
            "meta": {"id": "k", "company_id": "c", "name": "Sales", "slug": "sales", "version": 1,
                     "created_by": "u", "date_created": "2026-12-01T00:00:00Z",
                     "last_updated": "2026-12-01T00:00:00Z"},
            "type": "number", "datasource_id": null, "query": {"aggregate": "count"},
            "display": {}
        }))
        .unwrap();
        k.display.target = target;
        k
    }

    fn alert(condition: Value) -> Alert {
        serde_json::from_value(json!({
            "meta": {"id": "a", "company_id": "c", "name": "A", "slug": "a", "version": 1,
                     "created_by": "u", "date_created": "2026-12-01T00:00:00Z",
                     "last_updated": "2026-12-01T00:00:00Z"},
            "klip_id": "k", "condition": condition, "channels": ["ch"]
        }))
        .unwrap()
    }

    fn value(current: f64, previous: f64) -> KlipValue {
        let mut v = KlipValue::failed(String::new(), "2026-12-07T00:00:00Z".parse().unwrap());
        v.error = None;
        v.current = Some(current);
        v.previous = Some(previous);
        v.change_pct = Some((current - previous) / previous * 100.0);
        v
    }

    fn now() -> DateTime<Utc> {
        "2026-12-07T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn conditions_hold_as_their_words_say() {
        let k = klip(Some(500.0));
        let holds = |c: Value, cur: f64, prev: f64| {
            judge(&alert(c), &k, &value(cur, prev), None, now())
                .unwrap()
                .holds
        };
        assert!(holds(json!({"type": "above", "value": 100}), 120.0, 100.0));
        assert!(!holds(json!({"type": "above", "value": 120}), 120.0, 100.0));
        assert!(holds(
            json!({"type": "below", "value": "target"}),
            120.0,
            100.0
        ));
        assert!(!holds(
            json!({"type": "above", "value": "target"}),
            120.0,
            100.0
        ));
        let pct = |d: &str, cur: f64| {
            holds(
                json!({"type": "change_pct", "value": 10, "direction": d}),
                cur,
                100.0,
            )
        };
        assert!(pct("up", 115.0) && !pct("up", 85.0));
        assert!(pct("down", 85.0) && !pct("down", 115.0));
        assert!(pct("any", 85.0) && pct("any", 115.0) && !pct("any", 105.0));
        let no_target = judge(
            &alert(json!({"type": "above", "value": "target"})),
            &klip(None),
            &value(1.0, 1.0),
            None,
            now(),
        );
        assert!(no_target.unwrap_err().contains("display.target"));
        assert!(!check_condition(&alert(json!({"type": "above"})).condition).is_empty());
        assert!(
            !check_condition(&alert(json!({"type": "anomaly", "value": 3})).condition).is_empty()
        );
        assert!(!check_condition(
            &alert(json!({"type": "above", "value": 1, "direction": "up"})).condition
        )
        .is_empty());
        assert!(check_condition(
            &alert(json!({"type": "change_pct", "value": 5, "direction": "up"})).condition
        )
        .is_empty());
    }

    #[test]
    fn the_state_machine_fires_once_repeats_after_the_cooldown_and_resolves() {
        let j = |holds| {
            Ok(Judged {
                holds,
                value: Some(1.0),
                previous: None,
                change_pct: None,
                threshold: Some(0.0),
                reason: "r".into(),
            })
        };
        let mut a = alert(json!({"type": "above", "value": 0}));
        let fire = step(&a, &j(true), now());
        assert_eq!(
            fire,
            Step::Move {
                to: AlertState::Firing,
                deliver: Some("alert.firing"),
                pause: false,
                reason: None
            }
        );
        a.state = AlertState::Firing;
        a.last_fired_at = Some(now());
        let again = |a: &Alert, minutes| step(a, &j(true), now() + Duration::minutes(minutes));
        assert_eq!(
            again(&a, 59),
            Step::Move {
                to: AlertState::Firing,
                deliver: None,
                pause: false,
                reason: None
            }
        );
        assert_eq!(
            again(&a, 60),
            Step::Move {
                to: AlertState::Firing,
                deliver: Some("alert.firing"),
                pause: false,
                reason: None
            }
        );
        assert_eq!(
            step(&a, &j(false), now()),
            Step::Move {
                to: AlertState::Ok,
                deliver: Some("alert.resolved"),
                pause: false,
                reason: None
            }
        );
        a.notify_resolved = false;
        assert_eq!(
            step(&a, &j(false), now()),
            Step::Move {
                to: AlertState::Ok,
                deliver: None,
                pause: false,
                reason: None
            }
        );
        let mut once = alert(json!({"type": "above", "value": 0}));
        once.frequency = Frequency::FirstTime;
        assert!(matches!(
            step(&once, &j(true), now()),
            Step::Move {
                pause: true,
                deliver: Some("alert.firing"),
                ..
            }
        ));
        once.state = AlertState::Firing;
        assert!(matches!(
            again(&once, 600),
            Step::Move { deliver: None, .. }
        ));
        once.paused = true;
        assert_eq!(step(&once, &j(false), now()), Step::Nothing);
        let broken = step(&a, &Err("no value".into()), now());
        assert_eq!(
            broken,
            Step::Move {
                to: AlertState::Error,
                deliver: None,
                pause: false,
                reason: Some("no value".into())
            }
        );
    }
}
