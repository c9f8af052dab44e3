//! Time as every record stores and the API shows it: RFC 3339 in UTC with whole seconds and
//! `Z` (`2026-12-03T08:00:00Z`). Records hold `DateTime<Utc>`; a field says how it is written
//! with `#[serde(with = "domain::time::utc")]` (or `utc::option` for an `Option`), and reading
//! takes any RFC 3339 offset.

use chrono::{DateTime, Utc};

/// RFC 3339 with seconds and `Z`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `t` without its fraction of a second: the instant its stored text names, so comparing
/// with stored times is what comparing their texts was.
pub fn seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::SubsecRound;
    t.trunc_subsecs(0)
}

/// An RFC 3339 time (any offset), in UTC.
pub fn parse(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `DateTime<Utc>` as RFC 3339 with seconds and `Z`.
pub mod utc {
    use chrono::{DateTime, Utc};
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::parse(&text)
            .ok_or_else(|| D::Error::custom(format!("not an RFC 3339 time: '{text}'")))
    }

    /// `Option<DateTime<Utc>>`: `None` is `null` (or, with `skip_serializing_if`, absent).
    pub mod option {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            #[derive(Deserialize)]
            struct Wrapped(#[serde(with = "super")] DateTime<Utc>);
            Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
        }
    }
}

/// `DateTime<Utc>` as RFC 3339 with milliseconds and `Z` (audit events, where order within
/// a second matters).
pub mod utc_millis {
    use chrono::{DateTime, Utc};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        super::utc::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Times {
        #[serde(with = "utc")]
        at: DateTime<Utc>,
        #[serde(default, with = "utc::option", skip_serializing_if = "Option::is_none")]
        until: Option<DateTime<Utc>>,
        #[serde(default, with = "utc::option")]
        shown: Option<DateTime<Utc>>,
    }

    #[test]
    fn times_are_written_in_utc_with_seconds_and_read_from_any_offset() {
        let t: Times =
            serde_json::from_str(r#"{"at": "2026-03-08T23:30:00.75-04:00", "shown": null}"#)
                .unwrap();
        assert_eq!(rfc3339(t.at), "2026-03-09T03:30:00Z");
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"at":"2026-03-09T03:30:00Z","shown":null}"#
        );
        let t: Times = serde_json::from_str(
            r#"{"at": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(
            t.until.map(rfc3339).as_deref(),
            Some("2026-01-02T00:00:00Z")
        );
        assert!(serde_json::from_str::<Times>(r#"{"at": ""}"#).is_err());
        assert!(serde_json::from_str::<Times>(r#"{"at": "yesterday"}"#).is_err());
    }
}
