//! The CLI's side of the API: one authenticated request at a time, errors as one clear line.

use anyhow::{anyhow, Result};
use reqwest::Method;
use serde_json::Value;

pub struct Client {
    http: reqwest::Client,
    base: String,
    auth: String,
}

impl Client {
    pub fn new(api_url: &str, token_id: &str, token: &str) -> Result<Client> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("strata-cli/", env!("CARGO_PKG_VERSION")))
            .timeout(std::time::Duration::from_secs(120))
            .build()?;
        Ok(Client {
            http,
            base: api_url.trim_end_matches('/').to_string(),
            auth: format!("{token_id}:{token}"),
        })
    }

    /// Calls `METHOD /v1/<path>`; returns the JSON body (None for 204).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Option<Value>> {
        let url = format!("{}/v1/{}", self.base, path.trim_start_matches('/'));
        let mut req = self
            .http
            .request(method, &url)
            .header("Authorization", &self.auth)
            .header("Accept", "application/json");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.map_err(|e| {
            if e.is_connect() {
                anyhow!(
                    "cannot reach the Strata API at {}: is `strata up` running?",
                    self.base
                )
            } else if e.is_timeout() {
                anyhow!("the Strata API at {} did not answer in time", self.base)
            } else {
                anyhow!("request to {url} failed: {e}")
            }
        })?;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(None);
            }
            return serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| anyhow!("the API answered with invalid JSON: {e}"));
        }
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| format!("{status}: {}", text.trim()));
        Err(anyhow!("{message}"))
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call(Method::GET, path, None)
            .await?
            .ok_or_else(|| anyhow!("the API answered with an empty body"))
    }

    /// Every item of a paginated list, following `next_page`.
    pub async fn list(&self, path: &str) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut page = 1;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let v = self
                .get(&format!("{path}{sep}page={page}&per_page=100"))
                .await?;
            if let Some(items) = v.get("data").and_then(Value::as_array) {
                out.extend(items.iter().cloned());
            }
            match v.get("next_page").and_then(Value::as_u64) {
                Some(n) if n as usize > page => page = n as usize,
                _ => break,
            }
        }
        Ok(out)
    }

    pub async fn send(&self, method: Method, path: &str, body: Value) -> Result<Value> {
        self.call(method, path, Some(body))
            .await?
            .ok_or_else(|| anyhow!("the API answered with an empty body"))
    }

    pub async fn post(&self, path: &str) -> Result<Value> {
        self.call(Method::POST, path, None)
            .await?
            .ok_or_else(|| anyhow!("the API answered with an empty body"))
    }

    pub async fn delete(&self, path: &str) -> Result<()> {
        self.call(Method::DELETE, path, None).await.map(|_| ())
    }
}
