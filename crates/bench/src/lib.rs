//! What both load generators share: a GraphQL call over HTTP and a fresh application with
//! tokens for its users.

use chat_domain::Role;
use serde_json::{Value, json};

/// A client for the benchmarks. In a workspace-wide build reqwest has rustls without a
/// crypto provider (chat-opensearch asks for that), so the ring provider goes in first.
pub fn http_client(max_idle_per_host: usize) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .pool_max_idle_per_host(max_idle_per_host)
        .build()
        .expect("an HTTP client")
}

/// POSTs a GraphQL request to `graphql_url`; any error (HTTP or GraphQL) is an `Err`.
pub async fn gql(
    client: &reqwest::Client,
    graphql_url: &str,
    token: &str,
    query: &str,
    variables: Value,
) -> Result<Value, String> {
    let response = client
        .post(graphql_url)
        .header("Authorization", token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() || body.get("errors").is_some() {
        return Err(format!("{status}: {body}"));
    }
    Ok(body["data"].clone())
}

/// An application created for a benchmark run, able to mint user tokens.
pub struct BenchApp {
    pub token: String,
    secret: String,
    expires_at: u64,
}

impl BenchApp {
    pub async fn create(
        client: &reqwest::Client,
        graphql_url: &str,
        admin_key: &str,
        name: &str,
    ) -> Result<BenchApp, String> {
        let created = gql(
            client,
            graphql_url,
            admin_key,
            "mutation($n: String!) { createApplication(name: $n) { application { token } secret } }",
            json!({ "n": name }),
        )
        .await?;
        let field = |v: &Value| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("unexpected answer: {created}"))
        };
        let expires_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs()
            + 3600;
        Ok(BenchApp {
            token: field(&created["createApplication"]["application"]["token"])?,
            secret: field(&created["createApplication"]["secret"])?,
            expires_at,
        })
    }

    pub fn user(&self, sub: &str, role: Role) -> String {
        chat_appsync::auth::mint_user_token(&self.secret, &self.token, sub, role, self.expires_at)
            .expect("HS256 signing does not fail")
    }
}
