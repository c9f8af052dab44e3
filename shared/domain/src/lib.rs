//! `domain`: what Pulseboard's resources are and compute, knowing nothing of HTTP requests,
//! credentials, the network or where things are stored (the URL connector and its egress
//! guard are the platform's: outbound traffic waits for admission there).
//!
//! - [`asset`]: what every data source, Klip and dashboard has (kind, meta, share rights)
//!   and the rules for the fields people choose;
//! - [`records`]: the data source, Klip and dashboard records;
//! - [`klip`]: the Klip engine, one pure computation from rows to a Klip's value;
//! - [`data`]: CSV and JSON data as tables (parsing, column types, writing back);
//! - [`reports`]: reports, their schedules and runs, and the files a run generates;
//! - [`notify`]: notification channels, deliveries and what they send (signed webhooks,
//!   Slack messages, emails);
//! - [`cron`]: schedule expressions and their next due times in a time zone;
//! - [`analysis`]: the statistics and insights a report explains;
//! - [`ids`]: ids, slugs and API key secrets;
//! - [`time`]: how times are written (RFC 3339, UTC, seconds);
//! - [`error`]: the problems these report ([`FieldError`], [`DataError`]), which the
//!   platform renders as API errors.

/// An enum whose values are the names the API and the stored items use: each value's name
/// (`as_str`), every value (`ALL`) and name (`NAMES`) in the order declared, the value a name
/// means (`parse`), and serde as the name. Values order by name, as the names always did.
macro_rules! named {
    ($(#[$doc:meta])* $enum:ident { $($(#[$vdoc:meta])* $variant:ident = $name:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $enum { $($(#[$vdoc])* $variant,)* }

        impl $enum {
            pub const ALL: &'static [$enum] = &[$($enum::$variant,)*];
            pub const NAMES: &'static [&'static str] = &[$($name,)*];

            pub const fn as_str(self) -> &'static str {
                match self { $($enum::$variant => $name,)* }
            }

            pub fn parse(name: &str) -> Option<$enum> {
                match name { $($name => Some($enum::$variant),)* _ => None }
            }
        }

        impl std::fmt::Display for $enum {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Ord for $enum {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.as_str().cmp(other.as_str())
            }
        }

        impl PartialOrd for $enum {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl serde::Serialize for $enum {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $enum {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let name = <std::borrow::Cow<str> as serde::Deserialize>::deserialize(deserializer)?;
                $enum::parse(&name).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "unknown {} '{name}': expected one of {}",
                        stringify!($enum).to_lowercase(),
                        $enum::NAMES.join(", ")
                    ))
                })
            }
        }
    };
}

pub mod accounts;
pub mod alerts;
pub mod analysis;
pub mod asset;
pub mod audit;
pub mod cron;
pub mod data;
pub mod document;
pub mod error;
pub mod ids;
pub mod klip;
pub mod notify;
pub mod records;
pub mod reports;
pub mod sets;
pub mod time;

pub use error::{DataError, FieldError, Problems};
pub use sets::{
    ChannelType, ColumnType, CompanyStatus, Connector, DeliveryKind, DeliveryStatus, Format,
    KlipType, ReportFormat, RunStatus, RunTrigger,
};
