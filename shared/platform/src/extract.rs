//! Extractors that turn a request into typed input or a precise 400/413/415.
//!
//! `JsonBody<T>` reads a JSON body (415 for other media types, 413 over 1 MiB, `invalid_json`
//! for syntax, `validation_failed` naming the field for wrong types and unknown fields).
//! `Params` holds the query string and the path the caller used; `Query<T>` reads an
//! endpoint's own parameters into the struct `T` and rejects any other (`NoParams`: none),
//! as `paging::Listing<F>` does for a list's paging and filters.

use crate::error::{ApiError, FieldError};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts};
use serde::de::DeserializeOwned;

/// JSON bodies above this are refused with 413 (data uploads have their own limit).
pub const JSON_BODY_LIMIT: usize = 1024 * 1024;

pub struct JsonBody<T>(pub T);

pub use domain::data::is_json_media_type;

/// For body fields an update may clear: absent is `None`, an explicit `null` is
/// `Some(None)`. Use with `#[serde(default, deserialize_with = "nullable")]`.
pub fn nullable<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        match read_json(req).await? {
            Some(value) => Ok(JsonBody(value)),
            None => Err(ApiError::InvalidJson(
                "request body is empty; expected a JSON object".into(),
            )),
        }
    }
}

/// The JSON body of a request, `None` when it is empty (only whitespace).
async fn read_json<T: DeserializeOwned>(req: Request) -> Result<Option<T>, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = axum::body::to_bytes(req.into_body(), JSON_BODY_LIMIT)
        .await
        .map_err(|_| {
            ApiError::PayloadTooLarge(format!("request body exceeds {JSON_BODY_LIMIT} bytes"))
        })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match content_type.as_deref() {
        Some(ct) if is_json_media_type(ct) => {}
        Some(ct) => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "content type '{ct}' is not supported; send application/json"
            )))
        }
        None => {
            return Err(ApiError::UnsupportedMediaType(
                "missing Content-Type; send application/json".into(),
            ))
        }
    }
    parse_json(&bytes).map(Some)
}

/// A JSON body that may be absent: an empty body is `None`; anything else follows the rules
/// of `JsonBody`.
pub struct OptionalJsonBody<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let empty_declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v == "0");
        let no_type = req.headers().get(header::CONTENT_TYPE).is_none();
        if empty_declared || no_type {
            // No body was sent (or it is not declared JSON): only an empty body is fine.
            let bytes = axum::body::to_bytes(req.into_body(), JSON_BODY_LIMIT)
                .await
                .map_err(|_| {
                    ApiError::PayloadTooLarge(format!(
                        "request body exceeds {JSON_BODY_LIMIT} bytes"
                    ))
                })?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(OptionalJsonBody(None));
            }
            return Err(ApiError::UnsupportedMediaType(
                "missing Content-Type; send application/json".into(),
            ));
        }
        read_json(req).await.map(OptionalJsonBody)
    }
}

/// Deserialises `bytes`, naming the offending field on type errors.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = match serde_path_to_error::deserialize(&mut *de) {
        Ok(value) => value,
        // JSON has one number type: `914.0` is the whole number 914 (JSON Schema agrees), but
        // serde refuses a float where it wants an integer. Read such a body again with its
        // whole floats as integers (rare, so the common path stays one pass).
        Err(e)
            if e.inner()
                .to_string()
                .contains("invalid type: floating point") =>
        {
            return parse_with_whole_floats(bytes);
        }
        Err(e) => return Err(parse_error(e)),
    };
    // Anything after the value (`{"name":"a"}garbage`) makes the body not JSON.
    de.end()
        .map_err(|e| ApiError::InvalidJson(format!("request body is not valid JSON: {e}")))?;
    Ok(value)
}

/// [`parse_json`] for a body some of whose integers are written as floats (`914.0`).
fn parse_with_whole_floats<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::InvalidJson(format!("request body is not valid JSON: {e}")))?;
    whole_floats_as_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(parse_error)
}

/// Turns every float with no fractional part that an `i64` holds exactly into an integer.
fn whole_floats_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(x) = n.as_f64() {
                // Within ±2^53 every whole f64 is an exact i64.
                if x.fract() == 0.0 && x.abs() <= 9_007_199_254_740_992.0 {
                    *value = Value::from(x as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_floats_as_integers),
        Value::Object(map) => map.values_mut().for_each(whole_floats_as_integers),
        _ => {}
    }
}

fn parse_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    match inner.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            ApiError::InvalidJson(format!("request body is not valid JSON: {inner}"))
        }
        _ => {
            let message = humanize(&strip_position(&inner.to_string()));
            let named = unknown_field_name(&message).or_else(|| missing_field_name(&message));
            let field = match (path.as_str(), named) {
                (".", Some(name)) => name,
                (".", None) => "body".into(),
                (_, Some(name)) if message.starts_with("missing field") => {
                    format!("{path}.{name}")
                }
                _ => path,
            };
            ApiError::validation(vec![FieldError::new(field, message)])
        }
    }
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn missing_field_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}

/// serde's words for JSON types, in the words of a JSON API ("expected struct LoginBody" is
/// "expected a JSON object").
fn humanize(message: &str) -> String {
    let mut out = message.to_owned();
    if let Some(i) = out.find("expected struct ") {
        out.replace_range(i.., "expected a JSON object");
    }
    for (rust, json) in [
        ("expected u8", "expected a whole number"),
        ("expected u16", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected usize", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected a sequence", "expected a JSON array"),
        ("expected a map", "expected a JSON object"),
    ] {
        if out.ends_with(rust) {
            out.truncate(out.len() - rust.len());
            out.push_str(json);
        }
    }
    out
}

fn unknown_field_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_owned())
}

/// The path as the caller wrote it (before version prefixes and aliases were stripped), for
/// paging links.
#[derive(Clone, Debug)]
pub struct CallerPath(pub String);

/// Query parameters; every endpoint says which it knows (`client_id` is known everywhere).
#[derive(Clone, Debug, Default)]
pub struct Params {
    pub pairs: Vec<(String, String)>,
    pub caller_path: String,
}

/// Parameters every endpoint accepts.
/// (`callback` is checked by the edge: JSONP for GETs.)
const GLOBAL_PARAMS: &[&str] = &["client_id", "callback"];

impl Params {
    pub fn from_query(query: Option<&str>, caller_path: &str) -> Self {
        let pairs = form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        Params {
            pairs,
            caller_path: caller_path.to_owned(),
        }
    }

    /// 400 naming the first parameter not in `known` (or repeated).
    pub fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        for (i, (name, _)) in self.pairs.iter().enumerate() {
            if !known.contains(&name.as_str()) && !GLOBAL_PARAMS.contains(&name.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter '{name}'"
                )));
            }
            if self.pairs[..i].iter().any(|(n, _)| n == name) {
                return Err(ApiError::BadRequest(format!(
                    "query parameter '{name}' is repeated"
                )));
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `true|false|1|0`, absent is false.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(false),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(other) => Err(ApiError::BadRequest(format!(
                "query parameter '{name}' must be true or false, not '{other}'"
            ))),
        }
    }
}

impl Params {
    /// 400 naming the first parameter that is neither one of `T`'s fields, nor in `also`,
    /// nor global (or that is repeated).
    pub fn known<T: DeserializeOwned>(&self, also: &[&str]) -> Result<(), ApiError> {
        let known: Vec<&str> = field_names::<T>().iter().chain(also).copied().collect();
        self.only(&known)
    }

    /// Reads `T` from the parameters its fields name (the others are someone else's: paging,
    /// the global ones). Flags take `true|false|1|0`, numbers whole numbers; a wrong value
    /// is a 400 naming the parameter.
    pub fn read<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let fields = field_names::<T>();
        let pairs = self
            .pairs
            .iter()
            .filter(|(name, _)| fields.contains(&name.as_str()))
            .map(|(name, raw)| (name.as_str(), Raw { name, raw }));
        T::deserialize(serde::de::value::MapDeserializer::new(pairs)).map_err(|e| {
            let message = e.to_string();
            if message.starts_with("query parameter") {
                return ApiError::BadRequest(message);
            }
            // A value refused by its type's own rule (a closed set such as `type=` says
            // "must be one of ..."): name the parameter it came from, the one that alone is
            // refused.
            let alone_refused = |name: &str, raw: &str| {
                let one = std::iter::once((name, Raw { name, raw }));
                T::deserialize(serde::de::value::MapDeserializer::new(one)).is_err()
            };
            match self
                .pairs
                .iter()
                .filter(|(name, _)| fields.contains(&name.as_str()))
                .find(|(name, raw)| alone_refused(name, raw))
            {
                Some((name, _)) => {
                    ApiError::BadRequest(format!("query parameter '{name}' {message}"))
                }
                None => ApiError::BadRequest(message),
            }
        })
    }
}

/// An endpoint's own query parameters as a struct of optional fields (`#[derive(Deserialize)]`):
/// any parameter that is not one of its fields (or global) is a 400 naming it, as is a
/// repeated one or a value of the wrong kind.
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = Params::from_request_parts(parts, state).await?;
        params.known::<T>(&[])?;
        Ok(Query(params.read()?))
    }
}

/// `?full=true`: the fuller view some reads give (a profile's permissions, a dashboard's
/// Klip definitions, a client's details).
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
pub struct Full {
    #[serde(default)]
    pub full: bool,
}

/// The names of `T`'s fields as serde reads them (renames applied), learnt by asking `T` to
/// deserialize itself from a deserializer that only records what it is asked for. Empty for
/// anything but a struct.
pub fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{Error, Visitor};
    struct Names(Option<&'static [&'static str]>);
    impl<'de> serde::Deserializer<'de> for &mut Names {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(Self::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = Some(fields);
            Err(Self::Error::custom("names read"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut names = Names(None);
    let _ = T::deserialize(&mut names);
    names.0.unwrap_or(&[])
}

/// One query parameter's value, read as the field it fills asks.
struct Raw<'a> {
    name: &'a str,
    raw: &'a str,
}

impl<'de> serde::de::IntoDeserializer<'de, serde::de::value::Error> for Raw<'_> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl Raw<'_> {
    fn whole<N: std::str::FromStr>(&self) -> Result<N, serde::de::value::Error> {
        self.raw.trim().parse().map_err(|_| {
            serde::de::Error::custom(format!(
                "query parameter '{}' must be a whole number, not '{}'",
                self.name, self.raw
            ))
        })
    }
}

impl<'de> serde::Deserializer<'de> for Raw<'_> {
    type Error = serde::de::value::Error;
    fn deserialize_any<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        v.visit_str(self.raw)
    }
    fn deserialize_bool<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        match self.raw {
            "true" | "1" => v.visit_bool(true),
            "false" | "0" => v.visit_bool(false),
            other => Err(serde::de::Error::custom(format!(
                "query parameter '{}' must be true or false, not '{other}'",
                self.name
            ))),
        }
    }
    fn deserialize_u32<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        v.visit_u32(self.whole()?)
    }
    fn deserialize_u64<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        v.visit_u64(self.whole()?)
    }
    fn deserialize_i64<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        v.visit_i64(self.whole()?)
    }
    fn deserialize_option<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        v.visit_some(self)
    }
    serde::forward_to_deserialize_any! {
        i8 i16 i32 i128 u8 u16 u128 f32 f64 char str string bytes byte_buf unit unit_struct
        newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// The query of an endpoint that takes no parameters of its own (only the global
/// `client_id` and `callback`): 400 naming any other, or a repeated one.
#[derive(Debug, Clone, Copy)]
pub struct NoParams;

impl<S: Send + Sync> FromRequestParts<S> for NoParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Params::from_request_parts(parts, state).await?.only(&[])?;
        Ok(NoParams)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let caller_path = parts
            .extensions
            .get::<CallerPath>()
            .map(|p| p.0.clone())
            .unwrap_or_else(|| parts.uri.path().to_owned());
        Ok(Params::from_query(parts.uri.query(), &caller_path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        days: Option<u32>,
    }

    #[test]
    fn text_after_the_json_value_is_invalid_json() {
        assert!(matches!(
            parse_json::<Body>(br#"{"name":"a"}garbage"#),
            Err(ApiError::InvalidJson(_))
        ));
        assert!(parse_json::<Body>(b"{\"name\":\"a\"}  \n").is_ok());
    }

    #[test]
    fn json_errors_name_the_field() {
        match parse_json::<Body>(br#"{"name":"a","days":"x"}"#) {
            Err(ApiError::Validation { details, .. }) => assert_eq!(details[0].field, "days"),
            other => panic!("{other:?}"),
        }
        match parse_json::<Body>(br#"{"name":"a","colour":1}"#) {
            Err(ApiError::Validation { details, .. }) => assert_eq!(details[0].field, "colour"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_json::<Body>(b"{\"name\":"),
            Err(ApiError::InvalidJson(_))
        ));
    }

    #[test]
    fn a_whole_number_written_as_a_float_is_that_number() {
        let body = parse_json::<Body>(br#"{"name":"a","days":914.0}"#).unwrap();
        assert_eq!(body.days, Some(914));
        match parse_json::<Body>(br#"{"name":"a","days":914.5}"#) {
            Err(ApiError::Validation { details, .. }) => assert_eq!(details[0].field, "days"),
            other => panic!("{other:?}"),
        }
        // The second reading keeps the other rules.
        match parse_json::<Body>(br#"{"name":"a","days":1.0,"colour":1}"#) {
            Err(ApiError::Validation { details, .. }) => assert_eq!(details[0].field, "colour"),
            other => panic!("{other:?}"),
        }
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Filters {
        status: Option<String>,
        #[serde(rename = "type")]
        kind: Option<String>,
        full: Option<bool>,
        #[serde(default)]
        force: bool,
        days: Option<u32>,
    }

    fn query(q: &str) -> Params {
        Params::from_query(Some(q), "/api/v1/things")
    }

    #[test]
    fn a_query_struct_names_its_parameters_and_reads_them() {
        assert_eq!(
            field_names::<Filters>(),
            &["status", "type", "full", "force", "days"]
        );
        assert!(field_names::<u32>().is_empty());
        let p = query("status=active&type=bar&full=1&days=7&limit=2&client_id=x");
        p.known::<Filters>(&["limit"]).unwrap();
        assert_eq!(
            p.read::<Filters>().unwrap(),
            Filters {
                status: Some("active".into()),
                kind: Some("bar".into()),
                full: Some(true),
                force: false,
                days: Some(7),
            }
        );
        assert_eq!(
            query("").read::<Filters>().unwrap(),
            Filters {
                status: None,
                kind: None,
                full: None,
                force: false,
                days: None
            }
        );
    }

    #[test]
    fn a_query_struct_refuses_what_it_does_not_name_or_cannot_read() {
        let message = |q: &str| match query(q)
            .known::<Filters>(&[])
            .and_then(|_| query(q).read::<Filters>())
        {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("{q}: {other:?}"),
        };
        assert_eq!(message("colour=red"), "unknown query parameter 'colour'");
        assert_eq!(message("limit=2"), "unknown query parameter 'limit'");
        assert_eq!(
            message("full=1&full=0"),
            "query parameter 'full' is repeated"
        );
        assert_eq!(
            message("force=yes"),
            "query parameter 'force' must be true or false, not 'yes'"
        );
        assert_eq!(
            message("days=seven"),
            "query parameter 'days' must be a whole number, not 'seven'"
        );
    }

    #[test]
    fn media_types() {
        assert!(is_json_media_type("application/json; charset=utf-8"));
        assert!(is_json_media_type(
            "application/vnd.pulseboard.20261122+json"
        ));
        assert!(!is_json_media_type("text/csv"));
    }
}
