//! Request extractors whose failures are PlanetScale-shaped errors.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

/// How long a request body may take to arrive.
const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// A JSON body; an empty body means the type's default (so `POST …/passwords` with no body works).
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // A body sent slowly would hold its connection (and a descriptor) for ever.
        let bytes = tokio::time::timeout(BODY_DEADLINE, Bytes::from_request(req, state))
            .await
            .map_err(|_| {
                ApiError::bad_request(format!(
                    "the request body did not arrive within {} s",
                    BODY_DEADLINE.as_secs()
                ))
            })?
            .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            None => return Ok(Body(T::default())),
            // serde would also read a struct from an array of its fields in order.
            Some(b'{') => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "the request body must be a JSON object",
                ))
            }
        }
        serde_json::from_slice(&bytes).map(Body).map_err(|e| {
            ApiError::bad_request(format!(
                "the request body is not valid JSON for this call: {e}"
            ))
        })
    }
}

/// `page` and `per_page` (PlanetScale: page from 1, per_page 1–100, default 25).
#[derive(Debug, serde::Deserialize, Default)]
pub struct PageQuery {
    pub page: Option<String>,
    pub per_page: Option<String>,
}

impl PageQuery {
    pub fn parse(&self) -> Result<(usize, usize), ApiError> {
        let num = |v: &Option<String>,
                   name: &str,
                   default: usize,
                   max: usize|
         -> Result<usize, ApiError> {
            match v {
                None => Ok(default),
                Some(s) => match s.parse::<usize>() {
                    Ok(n) if n >= 1 && n <= max => Ok(n),
                    _ => Err(ApiError::invalid(format!(
                        "{name} must be a whole number from 1 to {max}"
                    ))),
                },
            }
        };
        Ok((
            num(&self.page, "page", 1, usize::MAX)?,
            num(&self.per_page, "per_page", 25, 100)?,
        ))
    }
}
