//! Query parameters of API requests, decoded as Go's `url.ParseQuery` and
//! `strconv.ParseBool` do (clients send `watch=1`, `watch=true`, `watch=True`).

use std::collections::HashMap;

use super::status::ApiError;

/// The decoded query string; the first value of a repeated key wins.
#[derive(Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut values = HashMap::new();
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            values
                .entry(percent_decode(key)?)
                .or_insert(percent_decode(value)?);
        }
        Ok(Self(values))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A boolean parameter; absent is false.
    pub fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None => Ok(false),
            Some(value) => parse_bool(value)
                .ok_or_else(|| ApiError::bad_request(format!("invalid {key} value {value:?}"))),
        }
    }

    /// A non-negative integer parameter.
    pub fn number(&self, key: &str) -> Result<Option<u64>, ApiError> {
        self.get(key)
            .map(|value| {
                value
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid {key} value {value:?}")))
            })
            .transpose()
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn percent_decode(text: &str) -> Result<String, ApiError> {
    let bad = || ApiError::bad_request(format!("invalid query encoding in {text:?}"));
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(index + 1..index + 3).ok_or_else(bad)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                index += 2;
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8(out).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_like_go() {
        let query = Query::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+%28a%29&watch=True&limit=5&x",
        ))
        .unwrap();
        assert_eq!(query.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(query.flag("watch").unwrap());
        assert!(!query.flag("x").unwrap());
        assert_eq!(query.number("limit").unwrap(), Some(5));
        assert!(Query::parse(Some("a=%zz")).is_err());
        assert!(
            Query::parse(Some("watch=yes"))
                .unwrap()
                .flag("watch")
                .is_err()
        );
        assert_eq!(parse_bool("t"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
    }
}
