//! Every key the store reads or writes, in one place (the key design is in the store's
//! module documentation).

use super::Key;

pub fn company_pk(company: &str) -> String {
    format!("C#{company}")
}
pub fn company(company: &str) -> Key {
    Key::new(company_pk(company), "COMPANY")
}
pub fn user(company: &str, user: &str) -> Key {
    Key::new(company_pk(company), format!("USER#{user}"))
}
pub fn email(email: &str) -> Key {
    Key::new(format!("EMAIL#{}", email.to_lowercase()), "EMAIL")
}
pub fn api_key(company: &str, key: &str) -> Key {
    Key::new(company_pk(company), format!("APIKEY#{key}"))
}
pub fn key_hash(hash: &str) -> Key {
    Key::new(format!("KEYHASH#{hash}"), "KEYHASH")
}
pub fn refresh(jti: &str) -> Key {
    Key::new(format!("REFRESH#{jti}"), "REFRESH")
}
pub fn family(family: &str) -> Key {
    Key::new(format!("FAMILY#{family}"), "FAMILY")
}
pub fn rate_pk(company: &str) -> String {
    format!("RATE#{company}")
}
pub fn rate_day(company: &str, ny_date: &str) -> Key {
    Key::new(rate_pk(company), format!("D#{ny_date}"))
}
pub fn role(company: &str, role: &str) -> Key {
    Key::new(company_pk(company), format!("ROLE#{role}"))
}
pub fn group(company: &str, group: &str) -> Key {
    Key::new(company_pk(company), format!("GROUP#{group}"))
}
pub fn reset_token(hash: &str) -> Key {
    Key::new(format!("RESET#{hash}"), "RESET")
}
pub fn published_link(token_hash: &str) -> Key {
    Key::new(format!("PUBLINK#{token_hash}"), "PUBLINK")
}
pub fn partner_index(partner: &str) -> String {
    format!("PARTNER#{partner}")
}
/// A data source, Klip or dashboard.
pub fn asset(kind: domain::asset::Kind, company: &str, id: &str) -> Key {
    Key::new(company_pk(company), format!("{}{id}", kind.prefix()))
}
/// How many assets of a kind a company has (`n`), kept by the transactions that create and
/// delete them (its sort key does not start with the kind's prefix, so it is in no list).
pub fn asset_count(kind: domain::asset::Kind, company: &str) -> Key {
    Key::new(company_pk(company), format!("COUNT#{}", kind.prefix()))
}
/// The claim of a slug among a company's assets of one kind (value: the id).
pub fn slug(kind: domain::asset::Kind, company: &str, slug: &str) -> Key {
    Key::new(company_pk(company), format!("SLUG#{}{slug}", kind.prefix()))
}
pub fn favorite(company: &str, user: &str, dashboard: &str) -> Key {
    Key::new(
        company_pk(company),
        format!("{}{dashboard}", favorites_prefix(user)),
    )
}
/// The sort-key prefix of a user's favorite marks (under the company's partition).
pub fn favorites_prefix(user: &str) -> String {
    format!("FAV#{user}#")
}
/// The times of an email's recent failed logins (a rolling window).
pub fn login_failures(email: &str) -> Key {
    Key::new(format!("LOGINFAIL#{}", email.to_lowercase()), "RECENT")
}
/// A run of a report (its id sorts by time, so the runs of a report list in order).
pub fn run(company: &str, report: &str, run: &str) -> Key {
    Key::new(company_pk(company), format!("RUN#{report}#{run}"))
}
/// The prefix of every run of a report.
pub fn runs_of(report: &str) -> String {
    format!("RUN#{report}#")
}
/// An `Idempotency-Key` of `POST /reports/{id}/generate` (its hash), pointing at its run.
pub fn idempotency(company: &str, report: &str, key_hash: &str) -> Key {
    Key::new(company_pk(company), format!("IDEM#{report}#{key_hash}"))
}
/// The `gsi1` partition of everything due for work at a time (scheduled reports).
pub fn due_index() -> String {
    "DUE#".to_owned()
}
/// Where a run's file lives in the bucket (one fixed key per run: a retried generation
/// overwrites its own file, never makes a second one).
pub fn report_file(company: &str, report: &str, run: &str, extension: &str) -> String {
    format!("{company}/reports/{report}/{run}/report.{extension}")
}
/// A background refresh of a data source.
pub fn refresh_job(company: &str, datasource: &str, job: &str) -> Key {
    Key::new(
        company_pk(company),
        format!("REFRESHJOB#{datasource}#{job}"),
    )
}
/// Where the sweep of unreferenced data files under `prefix` (see `assets::stored::sweep`)
/// goes on from.
pub fn sweep_cursor(prefix: &str) -> Key {
    Key::new("SWEEP", format!("DATAFILES#{prefix}"))
}
/// A delivery of a notification (its id sorts by time, so a company's deliveries list in
/// order).
pub fn delivery(company: &str, delivery: &str) -> Key {
    Key::new(company_pk(company), format!("{DELIVERY_PREFIX}{delivery}"))
}
/// The sort-key prefix of a company's deliveries.
pub const DELIVERY_PREFIX: &str = "DLV#";
/// The counter of a company's deliveries on a day (`deliveries.perDay`).
pub fn delivery_day(company: &str, day: &str) -> Key {
    Key::new(format!("DLVDAY#{company}"), format!("D#{day}"))
}
/// An event of an alert (its id sorts by time, so an alert's events list in order).
pub fn alert_event(company: &str, alert: &str, event: &str) -> Key {
    Key::new(
        company_pk(company),
        format!("{}{event}", alert_events_of(alert)),
    )
}
/// The `gsi1` partition of the alerts watching a Klip (`gsi1sk` = the alert's id).
pub fn klip_watchers(company: &str, klip: &str) -> String {
    format!("WATCH#{company}#{klip}")
}
/// The sort-key prefix of an alert's events.
pub fn alert_events_of(alert: &str) -> String {
    format!("ALERTEVT#{alert}#")
}
/// The partition of a company's audit events (sort key: the event's id).
pub fn audit_pk(company: &str) -> String {
    format!("AUDIT#{company}")
}
