//! Lists (API.md §5): offset/limit or page/page_size, `q`, `sort`, `since`, and the `meta`
//! with `count`, `total`, `limit`, `offset`, `next`, `previous` (and `page`, `page_size`),
//! whose links keep the caller's other parameters.

use crate::error::ApiError;
use crate::extract::{field_names, Params};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{DateTime, TimeZone, Utc};
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

pub const MAX_PAGE: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Offset,
    Page,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortField {
    Name,
    DateCreated,
    LastUpdated,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Paging {
    pub style: Style,
    pub offset: usize,
    pub limit: usize,
    pub q: Option<String>,
    pub sort: SortField,
    pub descending: bool,
    pub since: Option<DateTime<Utc>>,
}

/// What a listed item offers to `q`, `sort` and `since`.
pub trait Listed {
    fn name(&self) -> &str;
    fn date_created(&self) -> DateTime<Utc>;
    fn last_updated(&self) -> DateTime<Utc>;
}

const PAGING_PARAMS: &[&str] = &["offset", "limit", "page", "page_size", "q", "sort", "since"];

fn positive(params: &Params, name: &str, allow_zero: bool) -> Result<Option<usize>, ApiError> {
    let Some(raw) = params.get(name) else {
        return Ok(None);
    };
    let n: i64 = raw
        .trim()
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{name} must be a whole number, not '{raw}'")))?;
    if n < 0 || (n == 0 && !allow_zero) {
        let least = if allow_zero { 0 } else { 1 };
        return Err(ApiError::BadRequest(format!(
            "{name} must be at least {least}"
        )));
    }
    if name != "offset" && name != "page" && n as usize > MAX_PAGE {
        return Err(ApiError::BadRequest(format!(
            "{name} must be at most {MAX_PAGE} (the maximum)"
        )));
    }
    Ok(Some(n as usize))
}

impl Paging {
    /// Validates the paging parameters and that every parameter is one the endpoint knows
    /// (`extra` are its resource filters).
    pub fn from_params(params: &Params, extra: &[&str]) -> Result<Self, ApiError> {
        let known: Vec<&str> = PAGING_PARAMS.iter().chain(extra).copied().collect();
        params.only(&known)?;
        let offset = positive(params, "offset", true)?;
        let limit = positive(params, "limit", false)?;
        let page = positive(params, "page", false)?;
        let page_size = positive(params, "page_size", false)?;
        let offset_style = offset.is_some() || limit.is_some();
        let page_style = page.is_some() || page_size.is_some();
        if offset_style && page_style {
            return Err(ApiError::BadRequest(
                "use either offset/limit or page/page_size, not both".into(),
            ));
        }
        let (style, offset, limit) = if page_style {
            let size = page_size.unwrap_or(20);
            let page = page.unwrap_or(1);
            (Style::Page, (page - 1).saturating_mul(size), size)
        } else {
            (Style::Offset, offset.unwrap_or(0), limit.unwrap_or(25))
        };
        let (descending, sort) = match params.get("sort") {
            None => (false, SortField::DateCreated),
            Some(raw) => {
                let (desc, field) = match raw.strip_prefix('-') {
                    Some(f) => (true, f),
                    None => (false, raw),
                };
                let field = match field {
                    "name" => SortField::Name,
                    "date_created" => SortField::DateCreated,
                    "last_updated" => SortField::LastUpdated,
                    _ => {
                        return Err(ApiError::BadRequest(format!(
                            "sort must be one of name, date_created, last_updated (optionally with a '-' prefix), not '{raw}'"
                        )))
                    }
                };
                (desc, field)
            }
        };
        let since = params.get("since").map(parse_since).transpose()?;
        let q = params
            .get("q")
            .map(str::to_lowercase)
            .filter(|q| !q.is_empty());
        Ok(Paging {
            style,
            offset,
            limit,
            q,
            sort,
            descending,
            since,
        })
    }

    /// Paging for a list that is neither searched nor sorted (a resource's sub-list, data
    /// rows): `q`, `sort` and `since` are refused by name.
    pub fn plain(params: &Params, extra: &[&str]) -> Result<Self, ApiError> {
        let paging = Self::from_params(params, extra)?;
        Self::refuse_search(params)?;
        Ok(paging)
    }

    fn refuse_search(params: &Params) -> Result<(), ApiError> {
        if let Some(name) = ["q", "sort", "since"]
            .into_iter()
            .find(|n| params.get(n).is_some())
        {
            return Err(ApiError::BadRequest(format!(
                "query parameter '{name}' is not supported on this list"
            )));
        }
        Ok(())
    }

    /// Whether the list is in creation order (`date_created`, the default sort) with nothing
    /// searched (`q`, `since`), the order in which the database keeps assets: `Some` with
    /// whether it is descending.
    pub fn in_creation_order(&self) -> Option<bool> {
        let plain = self.q.is_none() && self.since.is_none();
        (plain && self.sort == SortField::DateCreated).then_some(self.descending)
    }

    /// Cuts the page out of items kept in their own order; answers the page and the total.
    pub fn slice<T>(&self, items: Vec<T>) -> (Vec<T>, usize) {
        let total = items.len();
        (
            items
                .into_iter()
                .skip(self.offset)
                .take(self.limit)
                .collect(),
            total,
        )
    }

    /// Filters by `q`/`since`, sorts, and cuts the page; answers the page and the total.
    pub fn apply<T: Listed>(&self, mut items: Vec<T>) -> (Vec<T>, usize) {
        if let Some(q) = &self.q {
            items.retain(|i| i.name().to_lowercase().contains(q));
        }
        if let Some(since) = self.since {
            // Stored times have whole seconds: `since` counts from the start of its second.
            let since = domain::time::seconds(since);
            items.retain(|i| i.last_updated() >= since);
        }
        // Ties keep the items' own order (the database's: by id), and a descending list is
        // the ascending one reversed, ties too, as the database reads a partition backwards.
        items.sort_by(|a, b| match self.sort {
            SortField::Name => a.name().to_lowercase().cmp(&b.name().to_lowercase()),
            SortField::DateCreated => a.date_created().cmp(&b.date_created()),
            SortField::LastUpdated => a.last_updated().cmp(&b.last_updated()),
        });
        if self.descending {
            items.reverse();
        }
        let total = items.len();
        let page = items
            .into_iter()
            .skip(self.offset)
            .take(self.limit)
            .collect();
        (page, total)
    }

    /// The list `meta`: counts and links in the caller's style, keeping their other params.
    pub fn meta(&self, params: &Params, count: usize, total: usize) -> Map<String, Value> {
        let mut meta = Map::new();
        meta.insert("count".into(), json!(count));
        meta.insert("total".into(), json!(total));
        meta.insert("limit".into(), json!(self.limit));
        meta.insert("offset".into(), json!(self.offset));
        // Saturating: `page=9223372036854775807` makes an offset near usize::MAX (a panic in
        // a debug build before, found by schemathesis).
        let after = self.offset.saturating_add(self.limit);
        let next = (after < total).then_some(after);
        let previous = (self.offset > 0).then(|| self.offset.saturating_sub(self.limit));
        let link = |offset: usize| Value::String(self.link(params, offset));
        meta.insert("next".into(), next.map(link).unwrap_or(Value::Null));
        meta.insert("previous".into(), previous.map(link).unwrap_or(Value::Null));
        if self.style == Style::Page {
            meta.insert("page".into(), json!(self.offset / self.limit + 1));
            meta.insert("page_size".into(), json!(self.limit));
        }
        meta
    }

    fn link(&self, params: &Params, offset: usize) -> String {
        let (first, second) = match self.style {
            Style::Offset => (("offset", offset), ("limit", self.limit)),
            Style::Page => (("page", offset / self.limit + 1), ("page_size", self.limit)),
        };
        let mut query = form_urlencoded::Serializer::new(String::new());
        let mut wrote = (false, false);
        for (name, value) in &params.pairs {
            if name == first.0 {
                query.append_pair(name, &first.1.to_string());
                wrote.0 = true;
            } else if name == second.0 {
                query.append_pair(name, &second.1.to_string());
                wrote.1 = true;
            } else {
                query.append_pair(name, value);
            }
        }
        if !wrote.0 {
            query.append_pair(first.0, &first.1.to_string());
        }
        if !wrote.1 {
            query.append_pair(second.0, &second.1.to_string());
        }
        format!("{}?{}", params.caller_path, query.finish())
    }
}

/// A list's query: the paging (offset/limit or page/page_size, `q`, `sort`, `since`) and the
/// list's own filters `F`, a struct of optional fields (`#[derive(Deserialize)]`). Any other
/// parameter is a 400 naming it; the raw parameters stay for the paging links.
#[derive(Debug, Clone)]
pub struct Listing<F> {
    pub paging: Paging,
    pub filters: F,
    pub params: Params,
    /// Whether any of the list's own filters (`F`'s fields) was given.
    pub filtered: bool,
}

/// The filters of a list that has none of its own.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
pub struct NoFilters {}

impl<F: DeserializeOwned> Listing<F> {
    pub fn from_params(params: Params) -> Result<Self, ApiError> {
        let paging = Paging::from_params(&params, field_names::<F>())?;
        let filters = params.read()?;
        let filtered = field_names::<F>()
            .iter()
            .any(|name| params.get(name).is_some());
        Ok(Listing {
            paging,
            filters,
            params,
            filtered,
        })
    }
}

impl<F> Listing<F> {
    /// For a list that is neither searched nor sorted (a resource's sub-list): `q`, `sort`
    /// and `since` are refused by name.
    pub fn plain(self) -> Result<Self, ApiError> {
        Paging::refuse_search(&self.params)?;
        Ok(self)
    }

    /// The list `meta` for a page of `count` out of `total`.
    pub fn meta(&self, count: usize, total: usize) -> Map<String, Value> {
        self.paging.meta(&self.params, count, total)
    }
}

impl<S: Send + Sync, F: DeserializeOwned> FromRequestParts<S> for Listing<F> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Self::from_params(Params::from_request_parts(parts, state).await?)
    }
}

/// `since=` as RFC 3339 or Unix seconds.
fn parse_since(raw: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(secs) = raw.parse::<i64>() {
        if let Some(t) = Utc.timestamp_opt(secs, 0).single() {
            return Ok(t);
        }
    }
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "since must be RFC 3339 or Unix seconds, not '{raw}'"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Params {
        Params::from_query(Some(q), "/api/v1/api-keys/")
    }

    /// A name and the second it was created (and last updated) at.
    struct Item(&'static str, i64);
    impl Listed for Item {
        fn name(&self) -> &str {
            self.0
        }
        fn date_created(&self) -> DateTime<Utc> {
            Utc.timestamp_opt(self.1, 0).unwrap()
        }
        fn last_updated(&self) -> DateTime<Utc> {
            self.date_created()
        }
    }

    #[test]
    fn defaults_and_limits() {
        let p = Paging::from_params(&params(""), &[]).unwrap();
        assert_eq!((p.offset, p.limit, p.style), (0, 25, Style::Offset));
        let p = Paging::from_params(&params("page=3"), &[]).unwrap();
        assert_eq!((p.offset, p.limit, p.style), (40, 20, Style::Page));
        for bad in [
            "limit=101",
            "page_size=500",
            "limit=0",
            "offset=-1",
            "limit=ten",
            "page=0",
            "limit=5&page=2",
            "colour=red",
            "sort=size",
            "since=yesterday",
        ] {
            assert!(
                Paging::from_params(&params(bad), &[]).is_err(),
                "{bad} should fail"
            );
        }
        let err = Paging::from_params(&params("limit=101"), &[]).unwrap_err();
        assert!(err.to_string().contains("100"), "{err}");
        assert!(Paging::from_params(&params("status=active"), &["status"]).is_ok());
    }

    #[test]
    fn the_largest_page_and_offset_are_an_empty_page() {
        for query in [
            "page=9223372036854775807&page_size=69",
            "offset=9223372036854775807",
        ] {
            let p = Paging::from_params(&params(query), &[]).unwrap();
            let meta = p.meta(&params(query), 0, 3);
            assert_eq!(meta["next"], Value::Null, "{query}");
            assert!(meta["previous"].is_string(), "{query}");
        }
    }

    #[test]
    fn descending_is_ascending_reversed_ties_included() {
        // Stored order (the database's: by id) is the tie-break: a, b, c made in second 1.
        let stored = || vec![Item("a", 1), Item("b", 1), Item("c", 1), Item("d", 2)];
        let names = |query: &str| {
            let paging = Paging::from_params(&params(query), &[]).unwrap();
            let (page, _) = paging.apply(stored());
            page.iter().map(|i| i.0).collect::<Vec<_>>()
        };
        assert_eq!(names("sort=date_created"), ["a", "b", "c", "d"]);
        assert_eq!(names("sort=-date_created"), ["d", "c", "b", "a"]);
        assert_eq!(
            Paging::from_params(&params("sort=-date_created"), &[])
                .unwrap()
                .in_creation_order(),
            Some(true)
        );
        assert_eq!(
            Paging::from_params(&params("q=x"), &[])
                .unwrap()
                .in_creation_order(),
            None
        );
    }

    #[test]
    fn links_keep_other_parameters() {
        let p = params("q=a&limit=2&sort=-name");
        let paging = Paging::from_params(&p, &[]).unwrap();
        let (page, total) = paging.apply(vec![
            Item("ab", 1),
            Item("ba", 2),
            Item("c", 3),
            Item("AA", 4),
        ]);
        assert_eq!(total, 3);
        assert_eq!(
            page.iter().map(|i| i.0).collect::<Vec<_>>(),
            vec!["ba", "ab"]
        );
        let meta = paging.meta(&p, page.len(), total);
        assert_eq!(
            meta["next"],
            "/api/v1/api-keys/?q=a&limit=2&sort=-name&offset=2"
        );
        assert_eq!(meta["previous"], Value::Null);

        let p = params("page=2&page_size=1");
        let paging = Paging::from_params(&p, &[]).unwrap();
        let meta = paging.meta(&p, 1, 3);
        assert_eq!(meta["next"], "/api/v1/api-keys/?page=3&page_size=1");
        assert_eq!(meta["previous"], "/api/v1/api-keys/?page=1&page_size=1");
        assert_eq!(meta["page"], 2);
    }
}
