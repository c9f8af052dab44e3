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

pub mod accounts;
pub mod alerts;
pub mod analysis;
pub mod asset;
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
