//! `chat-bench-bare`: the ceiling for the load tests. A bare axum endpoint that answers
//! `POST /graphql` with a fixed GraphQL response, on the same runtime settings as the dev
//! server: no authentication, no GraphQL, no store. `scripts/loadtest` drives it with the
//! same k6 client as the dev server and states every figure as a ratio of its throughput.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use clap::Parser;

#[derive(Parser)]
#[command(about = "A bare axum endpoint: the HTTP ceiling of this machine")]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

/// What every `POST /graphql` answers, the size of a small GraphQL response.
const RESPONSE: &str = r#"{"data":{"__typename":"Query"}}"#;

async fn graphql(body: Bytes) -> impl IntoResponse {
    // The body is read in full, as the dev server reads it.
    std::hint::black_box(body.len());
    ([(header::CONTENT_TYPE, "application/json")], RESPONSE)
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let app = Router::new()
        .route("/graphql", post(graphql))
        .route("/health", get(|| async { r#"{"status":"ok"}"# }));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // The same first line as chat-server's banner, for scripts.
    println!("chat-bench-bare listening on http://{addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())
}
