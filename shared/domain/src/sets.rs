//! The closed sets of names the API uses (formats, connectors, statuses, Klip and column
//! types), as enums that serialise as their lowercase names, so a stored or shown value can
//! only ever be one of them.

/// Declares an enum whose variants are written as the given names (in JSON, in items and
/// in messages), with `ALL`, `as_str`, `Display` and `FromStr` (the error is the list of
/// names, for messages).
macro_rules! closed_set {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            /// The names it could have been, comma-separated.
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($name::NAMES.join(", ")),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(|names| {
                    serde::de::Error::custom(format!("must be one of {names}, not '{text}'"))
                })
            }
        }
    };
}

closed_set! {
    /// How a data source's data is written.
    pub enum Format { Csv = "csv", Json = "json" }
}

closed_set! {
    /// Where a data source's data comes from: pushed to the API, or fetched from a URL.
    pub enum Connector { Push = "push", Url = "url" }
}

closed_set! {
    /// A company's (or client account's) status; a disabled one cannot be used.
    pub enum CompanyStatus { Active = "active", Trial = "trial", Setup = "setup", Disabled = "disabled" }
}

closed_set! {
    /// How a Klip is drawn.
    pub enum KlipType { Number = "number", Line = "line", Bar = "bar", Pie = "pie", Table = "table", Gauge = "gauge" }
}

closed_set! {
    /// The type inferred for a data column.
    pub enum ColumnType { Number = "number", Datetime = "datetime", Boolean = "boolean", Text = "text" }
}

closed_set! {
    /// The file a report generates.
    pub enum ReportFormat { Html = "html", Pdf = "pdf", Csv = "csv", Json = "json", Xlsx = "xlsx" }
}

closed_set! {
    /// Where a report run is: `queued` until the worker claims it, `running` while it holds
    /// the lease, then `succeeded` or `failed`; `skipped` for a scheduled run an outage
    /// missed.
    pub enum RunStatus {
        Queued = "queued",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Skipped = "skipped",
    }
}

closed_set! {
    /// What queued a report run.
    pub enum RunTrigger { Api = "api", Schedule = "schedule" }
}

closed_set! {
    /// Where a notification channel sends: an email (SES), a signed webhook, or a Slack
    /// incoming webhook.
    pub enum ChannelType { Email = "email", Webhook = "webhook", Slack = "slack" }
}

closed_set! {
    /// Where a delivery is: `queued` until the worker claims it, `sending` while an attempt
    /// holds its lease, `retrying` between attempts, then `delivered` or `failed`;
    /// `suppressed` when there was nothing new to send (`only_if_changed`).
    pub enum DeliveryStatus {
        Queued = "queued",
        Sending = "sending",
        Retrying = "retrying",
        Delivered = "delivered",
        Failed = "failed",
        Suppressed = "suppressed",
    }
}

closed_set! {
    /// What a delivery carries: a report's run, an alert's event, or a channel's test.
    pub enum DeliveryKind { Report = "report", Alert = "alert", Test = "test" }
}

closed_set! {
    /// What an alert watches for.
    pub enum ConditionType { Above = "above", Below = "below", ChangePct = "change_pct", Anomaly = "anomaly" }
}

closed_set! {
    /// Which way a `change_pct` alert counts.
    #[derive(Default)]
    pub enum Direction { Up = "up", Down = "down", #[default] Any = "any" }
}

closed_set! {
    /// How often a firing alert is delivered: again after each cooldown, or once (the
    /// alert pauses itself after it fires).
    #[derive(Default)]
    pub enum Frequency { #[default] EveryTime = "every_time", FirstTime = "first_time" }
}

closed_set! {
    /// Where an alert is.
    #[derive(Default)]
    pub enum AlertState { #[default] Ok = "ok", Firing = "firing", Error = "error" }
}

impl ReportFormat {
    pub fn media_type(self) -> &'static str {
        match self {
            ReportFormat::Html => "text/html; charset=utf-8",
            ReportFormat::Pdf => "application/pdf",
            ReportFormat::Csv => "text/csv; charset=utf-8",
            ReportFormat::Json => "application/json",
            ReportFormat::Xlsx => {
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            }
        }
    }
}

impl Format {
    /// The media type files of this format are stored and served with.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv",
            Format::Json => "application/json",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_json_and_text() {
        for format in Format::ALL {
            let json = serde_json::to_string(format).unwrap();
            assert_eq!(json, format!("\"{format}\""));
            assert_eq!(serde_json::from_str::<Format>(&json).unwrap(), *format);
            assert_eq!(format.as_str().parse::<Format>(), Ok(*format));
        }
        assert_eq!("xml".parse::<Format>(), Err("csv, json".to_owned()));
        let err = serde_json::from_str::<KlipType>("\"donut\"").unwrap_err();
        assert!(
            err.to_string().contains("must be one of number, line"),
            "{err}"
        );
    }
}
