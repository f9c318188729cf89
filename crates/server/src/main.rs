//! `chat-server`: the local dev server. `chat-server --help` lists the flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chat_appsync::{Authenticator, Registry};
use chat_domain::{
    AppToken, ChatService, ChatStore, Role, ServerKey, SystemClock, Throttle, ThrottleConfig,
};
use chat_embedded::SqliteStore;
use chat_server::metrics::MetricsAccess;
use chat_server::shutdown::Shutdown;
use chat_server::{console, http, keys, schema, search, tls};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// mimalloc rather than the system allocator: a request allocates and frees many small
/// objects on several threads (the GraphQL document, the resolver event's JSON, rows,
/// the response), where glibc's malloc spent a fifth of the server's CPU (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "chat-server",
    version,
    about = "Customer-support chat backend: the local dev server"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "CHAT_LISTEN", default_value = "127.0.0.1:4000")]
    listen: SocketAddr,
    /// A PEM certificate (chain) for TLS, e.g. from mkcert: the port then also answers
    /// https:// and wss://, which Amplify uses for subscriptions. Plain http:// and ws://
    /// keep working on the same port.
    #[arg(long, env = "CHAT_TLS_CERT", requires = "tls_key", value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "CHAT_TLS_KEY", requires = "tls_cert", value_name = "PEM")]
    tls_key: Option<PathBuf>,
    /// Where the database and keys live.
    #[arg(long, env = "CHAT_DATA_DIR", default_value = "./.chat-data")]
    data_dir: PathBuf,
    /// Keep everything in memory: a throwaway run, nothing written to disk.
    #[arg(long)]
    memory: bool,
    /// The admin key for createApplication/updateApplication. Unset: the one kept in the
    /// data dir (generated at first start), printed at start-up.
    #[arg(long, env = "CHAT_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    /// Where chats live: `embedded` (SQLite in the data dir) or `dynamodb` (a DynamoDB
    /// table; region and credentials from the standard AWS environment; the keys stay in
    /// the data dir; search is off).
    #[arg(long, env = "CHAT_STORE", value_enum, default_value_t = StoreKind::Embedded)]
    store: StoreKind,
    /// The DynamoDB table (with --store dynamodb).
    #[arg(long, env = "CHAT_DYNAMODB_TABLE", required_if_eq("store", "dynamodb"))]
    table: Option<String>,
    /// The DynamoDB endpoint, e.g. a local emulator (default: AWS's, or
    /// AWS_ENDPOINT_URL_DYNAMODB).
    #[arg(long)]
    dynamodb_endpoint: Option<String>,
    /// Create the DynamoDB table, from the definition the deployment uses, if it does not
    /// exist.
    #[arg(long)]
    create_table: bool,
    /// Refuse GraphQL introspection (`__schema`, `__type`), as production should. It is on by
    /// default because GraphiQL and code generators need it.
    #[arg(long)]
    no_introspection: bool,
    /// Introspection on or off: the environment's way to say --no-introspection
    /// (CHAT_INTROSPECTION=false).
    #[arg(long, env = "CHAT_INTROSPECTION", value_name = "BOOL", default_value_t = true,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    introspection: bool,
    /// sendMessage + createChat per user (application and user id), sustained: N/s, N/min
    /// or N/h; 0 turns the limit off [default: 1000/s]. Refusals are Throttled with
    /// extensions.retryAfterMs.
    #[arg(long, env = "CHAT_SEND_RATE_PER_USER", value_name = "RATE")]
    send_rate_per_user: Option<String>,
    /// The burst a user may send at once on top of its rate [default: 2000; with only
    /// --send-rate-per-user given, two seconds' worth of it].
    #[arg(long, env = "CHAT_SEND_BURST_PER_USER", value_name = "N")]
    send_burst_per_user: Option<u32>,
    /// sendMessage + createChat per application, all its users together; 0 turns the limit
    /// off [default: 10000/s].
    #[arg(long, env = "CHAT_SEND_RATE_PER_APP", value_name = "RATE")]
    send_rate_per_app: Option<String>,
    /// The burst of an application [default: 20000; with only --send-rate-per-app given,
    /// two seconds' worth of it].
    #[arg(long, env = "CHAT_SEND_BURST_PER_APP", value_name = "N")]
    send_burst_per_app: Option<u32>,
    /// More places the web console at `/` may send requests to (its Content-Security-Policy
    /// `connect-src`), e.g. an AppSync URL the console is opened with (`/?endpoint=URL`).
    /// Comma-separated http(s) or ws(s) URLs.
    #[arg(long, env = "CHAT_CONSOLE_CONNECT_SRC", value_delimiter = ',')]
    console_connect_src: Vec<String>,
    /// The longest a user token may live, in seconds: exp minus iat (or minus now, for a
    /// token without iat). Longer ones are refused as invalid.
    #[arg(long, env = "CHAT_MAX_TOKEN_LIFETIME_SECS", value_name = "SECS",
          default_value_t = chat_domain::limits::TOKEN_LIFETIME_MAX_SECS)]
    max_token_lifetime_secs: u64,
    /// Serve GraphiQL at GET /graphql in a browser [default: on when --listen is a loopback
    /// address, i.e. development; off otherwise].
    #[arg(long, env = "CHAT_GRAPHIQL", value_name = "BOOL",
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    graphiql: Option<bool>,
    /// Create a demo application (once; its token is kept in the data dir) and print
    /// sign-in links for an agent and a customer in the banner, so a newcomer reaches the
    /// console without curl [default: on when --listen is a loopback address and the store
    /// is the embedded one, i.e. development; refused otherwise].
    #[arg(long, env = "CHAT_DEMO", value_name = "BOOL",
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    demo: Option<bool>,
    /// Let webhook endpoints point to loopback addresses (http or https), for a receiver
    /// on this machine [default: off: https to public addresses only].
    #[arg(long, env = "CHAT_WEBHOOKS_ALLOW_LOOPBACK")]
    webhooks_allow_loopback: bool,
    /// How long message.unseen waits for its receiver to read or come back, in ms.
    #[arg(
        long,
        env = "CHAT_UNSEEN_GRACE_MS",
        value_name = "MS",
        default_value_t = 30_000
    )]
    unseen_grace_ms: u64,
    /// One webhook attempt's timeout, in ms.
    #[arg(
        long,
        env = "CHAT_WEBHOOK_TIMEOUT_MS",
        value_name = "MS",
        default_value_t = 10_000
    )]
    webhook_timeout_ms: u64,
    /// Scales the webhook retry schedule (tests shorten it).
    #[arg(long, hide = true, default_value_t = 1.0)]
    webhook_retry_scale: f64,
    /// Failed attempts in a row, over at least --webhook-disable-after-secs, that disable
    /// an endpoint.
    #[arg(long, hide = true, default_value_t = 50)]
    webhook_disable_after_failures: u32,
    #[arg(long, hide = true, default_value_t = 86_400)]
    webhook_disable_after_secs: u64,
    /// Prometheus metrics at GET /metrics: for clients on a loopback address (`loopback`),
    /// for `Authorization: Bearer <admin key>` from anywhere (`admin-key`), or not at all,
    /// nothing recorded (`off`). docs/metrics.md lists them.
    #[arg(long, env = "CHAT_METRICS", value_enum, value_name = "ACCESS",
          default_value_t = MetricsAccess::Loopback)]
    metrics: MetricsAccess,
    /// The URL clients reach this server at, for the signed upload and download URLs of
    /// attachments (behind a proxy, or when listening on 0.0.0.0 for phones on the LAN).
    /// Unset: the address it listens on (0.0.0.0 and :: as 127.0.0.1 and ::1).
    #[arg(long, env = "CHAT_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreKind {
    Embedded,
    Dynamodb,
}

enum OpenedStore {
    Embedded(SqliteStore),
    Dynamodb(chat_dynamodb::DynamoStore),
}

#[derive(Subcommand)]
enum Command {
    /// Sign a user token (JWT HS256) with an application's secret, as the application's
    /// backend would. For trying the API; production backends use any JWT library.
    MintToken {
        /// The application token (`app_...`).
        #[arg(long)]
        app: String,
        /// The application secret returned by createApplication (`sk_...`).
        #[arg(long, env = "CHAT_APP_SECRET", hide_env_values = true)]
        secret: String,
        /// The user id (`sub`).
        #[arg(long)]
        user: String,
        /// AGENT or CUSTOMER.
        #[arg(long, value_parser = ["AGENT", "CUSTOMER"])]
        role: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Rebuild the search index from the store: the whole index, an application's or a
    /// chat's. Queues the messages for the indexer; a running server indexes them within a
    /// second without stopping writes, a stopped one at its next start.
    Reindex {
        /// Where the database lives.
        #[arg(long, env = "CHAT_DATA_DIR", default_value = "./.chat-data")]
        data_dir: PathBuf,
        /// Only this application (`app_...`).
        #[arg(long)]
        app: Option<String>,
        /// Only this chat of the application.
        #[arg(long, requires = "app")]
        chat: Option<i64>,
    },
}

fn main() -> std::process::ExitCode {
    tune_malloc();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // A log line that cannot be written (stderr to a file on a full disk) is dropped.
        // By default tracing reports that with eprintln!, which panics when stderr fails,
        // and the panic would take the request (or the store's writer thread) with it.
        .log_internal_errors(false)
        .init();
    let result = match cli.command {
        Some(Command::MintToken {
            app,
            secret,
            user,
            role,
            ttl,
        }) => mint_token(&app, &secret, &user, &role, ttl),
        Some(Command::Reindex {
            data_dir,
            app,
            chat,
        }) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))
            .and_then(|rt| {
                let db = data_dir.join("chat.sqlite3");
                let queued = rt.block_on(search::reindex(&db, app.as_deref(), chat))?;
                println!("queued {queued} messages for indexing");
                Ok(())
            }),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))
            .and_then(|rt| rt.block_on(serve(cli.serve))),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("chat-server: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Two settings of glibc's malloc, made before any other thread exists; each was a step in
/// resident memory under a steady load (docs/loadtest.md, "What the memory was").
///
/// - Arenas: glibc gives threads their own malloc arenas, up to 8 per core, and keeps what
///   each one grew to. The server's threads (Tokio workers, the blocking pool running SQLite
///   reads, the writer, the indexer) spread allocations over them. `scripts/loadtest --ci`
///   (2 minutes at 50 requests/s, one run after the other): 192 -> 209 MiB with glibc's
///   default, 56 -> 58 MiB with the arenas capped at the core count.
/// - Large blocks: glibc serves a block of 128 KiB or more with its own mmap and returns it
///   on free, but raises that threshold (up to 32 MiB) each time such a block is freed. From
///   then on the search index's per-commit tables (megabytes, several times a second, see
///   chat-search-tantivy) came from the arenas, which kept them: RSS rose by steps of
///   megabytes over an 8-minute soak. A fixed threshold of 1 MiB keeps every block that
///   large in its own mapping, returned to the system on free.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = i32::try_from(cores.max(2)).unwrap_or(i32::MAX);
        // SAFETY: mallopt only sets tuning parameters; it is called before any other
        // thread exists. A refusal (0) leaves glibc's default, which is also correct.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
        }
    }
}

fn mint_token(app: &str, secret: &str, user: &str, role: &str, ttl: u64) -> Result<(), String> {
    let role = Role::parse(role).map_err(|e| e.to_string())?;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs()
        + ttl;
    let token = chat_appsync::auth::mint_user_token(secret, app, user, role, exp)
        .map_err(|e| e.to_string())?;
    println!("{token}");
    Ok(())
}

/// The DynamoDB store on `--table`, which must exist unless `--create-table` creates it.
async fn open_dynamodb(args: &ServeArgs) -> Result<(OpenedStore, String), String> {
    let table = args
        .table
        .clone()
        .ok_or("--store dynamodb needs --table NAME")?;
    let client = chat_dynamodb::client_from_environment(args.dynamodb_endpoint.as_deref(), None)
        .await
        .map_err(|e| format!("cannot configure DynamoDB: {e}"))?;
    if args.create_table {
        let created = chat_dynamodb::create_table_if_missing(&client, &table)
            .await
            .map_err(|e| format!("cannot create the DynamoDB table {table}: {e}"))?;
        if created {
            tracing::info!(table, "created the DynamoDB table");
        }
    } else if !chat_dynamodb::table_exists(&client, &table)
        .await
        .map_err(|e| format!("cannot reach the DynamoDB table {table}: {e}"))?
    {
        return Err(format!(
            "the DynamoDB table {table} does not exist (--create-table creates it)"
        ));
    }
    let where_ = match &args.dynamodb_endpoint {
        Some(endpoint) => format!("DynamoDB table {table} at {endpoint}"),
        None => format!("DynamoDB table {table}"),
    };
    let store = chat_dynamodb::DynamoStore::new(client, table);
    Ok((OpenedStore::Dynamodb(store), where_))
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let limits = ThrottleConfig::from_settings(
        args.send_rate_per_user.as_deref(),
        args.send_burst_per_user,
        args.send_rate_per_app.as_deref(),
        args.send_burst_per_app,
    )?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::load_config(cert, key).map_err(|e| e.to_string())?),
        _ => None,
    };
    let console_policy =
        console::ConsolePolicy::new(&args.console_connect_src).map_err(|e| e.to_string())?;
    let (store, server_key, admin_key, where_) = if args.memory {
        if args.store == StoreKind::Dynamodb {
            return Err("--memory is for the embedded store, not --store dynamodb".into());
        }
        let store = SqliteStore::open_in_memory()
            .map_err(|e| format!("cannot open the in-memory store: {e}"))?;
        let store = OpenedStore::Embedded(store);
        let admin = args
            .admin_key
            .clone()
            .unwrap_or_else(keys::generate_admin_key);
        (
            store,
            ServerKey::generate(),
            admin,
            "memory (nothing is kept)".to_owned(),
        )
    } else {
        std::fs::create_dir_all(&args.data_dir).map_err(|e| {
            format!(
                "cannot create the data dir {}: {e}",
                args.data_dir.display()
            )
        })?;
        let server_key = keys::load_or_create_server_key(&args.data_dir.join("server.key"))
            .map_err(|e| e.to_string())?;
        let admin = match args.admin_key.clone() {
            Some(key) => key,
            None => keys::load_or_create_admin_key(&args.data_dir.join("admin.key"))
                .map_err(|e| e.to_string())?,
        };
        let (store, where_) = match args.store {
            StoreKind::Embedded => {
                let db = args.data_dir.join("chat.sqlite3");
                let store = SqliteStore::open(&db)
                    .map_err(|e| format!("cannot open {}: {e}", db.display()))?;
                (OpenedStore::Embedded(store), db.display().to_string())
            }
            StoreKind::Dynamodb => open_dynamodb(&args).await?,
        };
        (store, server_key, admin, where_)
    };
    if admin_key.len() < 16 {
        return Err("the admin key needs at least 16 characters".into());
    }
    // Presence leases: in memory beside the embedded store (chat_embedded::MemoryPresence
    // says why), in the table with DynamoDB.
    let presence: Arc<dyn chat_domain::PresenceStore> = match &store {
        OpenedStore::Embedded(_) => Arc::new(chat_embedded::MemoryPresence::new()),
        OpenedStore::Dynamodb(store) => Arc::new(store.clone()),
    };
    let (store, search, embedded): (Arc<dyn ChatStore>, _, _) = match store {
        OpenedStore::Embedded(store) => {
            let store = Arc::new(store);
            let search_dir = (!args.memory).then(|| args.data_dir.join("search"));
            let search = search::Search::start(store.clone(), search_dir.as_deref()).await?;
            (store.clone(), Some(search), Some(store))
        }
        OpenedStore::Dynamodb(store) => {
            // Indexing DynamoDB's stream is the stream indexer's job (a Lambda on AWS).
            tracing::warn!("search is off with --store dynamodb");
            (Arc::new(store), None, None)
        }
    };
    let mut service = ChatService::new(store, server_key.clone(), Arc::new(SystemClock));
    let webhooks = webhook_config(&args);
    let webhook_store = embedded.clone();
    if let Some(store) = &webhook_store {
        service = service.with_webhooks(store.clone(), webhooks.targets);
    }
    let presence_for_webhooks = presence.clone();
    // Attachments: files under the data dir (a temporary one with --memory), beside the
    // embedded store's upload records.
    let files = match &embedded {
        Some(store) => {
            let dir = if args.memory {
                std::env::temp_dir().join(format!("chat-server-uploads-{}", std::process::id()))
            } else {
                args.data_dir.join("uploads")
            };
            let files = chat_server::files::LocalFiles::open(&dir, server_key.clone())
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let files = Arc::new(files);
            service = service.with_attachments(chat_domain::attachments::Attachments {
                uploads: store.clone(),
                files: files.clone(),
            });
            Some((files, dir))
        }
        None => {
            tracing::warn!("attachments are off with --store dynamodb");
            None
        }
    };
    if let Some(search) = &search {
        service = service.with_search(search.index());
    }
    tracing::info!(%limits, "send rate limits");
    service = service.with_throttle(Throttle::new(limits));
    service = service.with_presence(presence);
    let service = Arc::new(service);
    let sweep_service = files.is_some().then(|| service.clone());
    let files_state = files
        .as_ref()
        .map(|(files, _)| chat_server::files::FilesState::new(files.clone(), service.clone()));
    let auth = Arc::new(
        Authenticator::new(admin_key.clone(), service.clone())
            .with_max_token_lifetime(args.max_token_lifetime_secs),
    );
    let development = args.listen.ip().is_loopback() && args.store == StoreKind::Embedded;
    let demo = match args.demo {
        Some(true) if !development => {
            return Err(
                "--demo is for development: a loopback --listen address and the \
                        embedded store"
                    .into(),
            );
        }
        Some(on) => on,
        None => development,
    };
    let demo = if demo {
        let kept = (!args.memory).then(|| args.data_dir.join(DEMO_APP_FILE));
        Some(demo_application(&service, &server_key, kept.as_deref()).await?)
    } else {
        None
    };
    let registry = Arc::new(Registry::new(service));
    let api = schema::build_with(
        registry.clone(),
        schema::SchemaOptions {
            introspection: args.introspection && !args.no_introspection,
            metrics: args.metrics != MetricsAccess::Off,
        },
    )
    .map_err(|e| e.to_string())?;
    if let (Some(metrics), Some(store)) = (&api.metrics, embedded) {
        metrics.watch_store(store);
    }
    let shutdown = Shutdown::default();
    if let Some(store) = webhook_store {
        let chats: Arc<dyn ChatStore> = store.clone();
        chat_server::webhooks::Sender::new(
            store,
            chats,
            presence_for_webhooks,
            server_key.clone(),
            Arc::new(SystemClock),
            webhooks,
        )?
        .spawn(shutdown.clone());
    }
    chat_server::presence_sweep::spawn(registry, api.clone(), shutdown.clone());
    if let Some(service) = sweep_service {
        chat_server::attachment_sweep::spawn(service, shutdown.clone());
    }
    let graphiql = args.graphiql.unwrap_or(args.listen.ip().is_loopback());
    let app = http::router(http::AppState {
        api,
        auth,
        shutdown: shutdown.clone(),
        authority_recheck: chat_server::realtime::authority::AUTHORITY_RECHECK,
        graphiql,
        admin_guard: Default::default(),
        metrics_access: args.metrics,
    })
    .merge(
        files_state
            .map(chat_server::files::router)
            .unwrap_or_default(),
    )
    .layer(axum::Extension(console_policy));

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    if let Some((files, _)) = &files {
        files.set_base_url(&public_url(&args, addr));
    }
    print_banner(
        addr,
        &admin_key,
        &where_,
        args.tls_cert.as_deref(),
        graphiql,
    );
    if let Some(demo) = &demo {
        print_demo(&public_url(&args, addr), demo);
    }
    // On SIGTERM or Ctrl-C: the listener closes, in-flight requests finish, and every
    // WebSocket session gets a close frame (they left hyper's bookkeeping at their upgrade,
    // so `shutdown` tracks them).
    let signalled = {
        let shutdown = shutdown.clone();
        async move {
            shutdown_signal().await;
            shutdown.begin();
        }
    };
    let served = match tls {
        Some(config) => {
            let listener = tls::DualListener::new(listener, config).map_err(|e| e.to_string())?;
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<http::Peer>(),
            )
            .with_graceful_shutdown(signalled)
            .await
        }
        None => {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<http::Peer>(),
            )
            .with_graceful_shutdown(signalled)
            .await
        }
    };
    served.map_err(|e| format!("server error: {e}"))?;
    if !shutdown.sessions_ended(SESSIONS_CLOSE_TIMEOUT).await {
        tracing::warn!(
            open = shutdown.live_sessions(),
            "WebSocket sessions still open after the shutdown timeout"
        );
    }
    if let Some(search) = search {
        search.stop().await;
    }
    if args.memory
        && let Some((_, dir)) = &files
    {
        let _ = std::fs::remove_dir_all(dir);
    }
    tracing::info!("stopped");
    Ok(())
}

/// Where clients reach the server: `--public-url`, or the address it listens on.
fn public_url(args: &ServeArgs, addr: SocketAddr) -> String {
    if let Some(url) = &args.public_url {
        return url.clone();
    }
    let scheme = if args.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}

fn webhook_config(args: &ServeArgs) -> chat_server::webhooks::WebhookConfig {
    use std::time::Duration;
    chat_server::webhooks::WebhookConfig {
        targets: chat_domain::webhooks::TargetPolicy {
            allow_loopback: args.webhooks_allow_loopback,
        },
        unseen_grace: Duration::from_millis(args.unseen_grace_ms),
        timeout: Duration::from_millis(args.webhook_timeout_ms),
        disable: chat_domain::webhooks::DisablePolicy {
            after_failures: args.webhook_disable_after_failures,
            min_failing_ms: i64::try_from(args.webhook_disable_after_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
        },
        retry_scale: args.webhook_retry_scale,
        ..Default::default()
    }
}

fn print_banner(
    addr: SocketAddr,
    admin_key: &str,
    data: &str,
    tls_cert: Option<&Path>,
    graphiql: bool,
) {
    use std::io::Write;
    // Tests and scripts read the first line; keep its shape. A closed stdout is not an
    // error worth dying for, so write errors are ignored.
    let realtime = match tls_cert {
        Some(cert) => format!(
            "wss://{addr}/graphql/realtime (AppSync's protocol: Amplify), wss:// or ws://{addr}/graphql (graphql-transport-ws); TLS with {}",
            cert.display()
        ),
        None => format!(
            "ws://{addr}/graphql (graphql-transport-ws), ws://{addr}/graphql/realtime (AppSync's protocol; Amplify needs wss://: add --tls-cert/--tls-key)"
        ),
    };
    let graphiql = if graphiql {
        "GraphiQL: open it in a browser"
    } else {
        "GraphiQL off: --graphiql true"
    };
    let banner = format!(
        "chat-server listening on http://{addr}\n  \
         GraphQL:   POST http://{addr}/graphql   ({graphiql})\n  \
         real time: {realtime}\n  \
         console:   http://{addr}/   (agents; customers: /customer.html)\n  \
         data:      {data}\n  \
         admin key: {admin_key}\n  \
         try:\n    curl -s http://{addr}/graphql -H 'Authorization: {admin_key}' -H 'Content-Type: application/json' \\\n      \
         -d '{{\"query\":\"mutation {{ createApplication(name: \\\"Acme\\\") {{ application {{ token }} secret }} }}\"}}'\n"
    );
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(banner.as_bytes());
    let _ = out.flush();
}

/// The file in the data dir that keeps the demo application's token.
const DEMO_APP_FILE: &str = "demo-app";
/// How long the demo sign-in links' tokens live.
const DEMO_TOKEN_SECS: u64 = 12 * 3600;

/// The demo application of a development server, and the tokens of its sign-in links.
struct Demo {
    app: AppToken,
    agent: String,
    customer: String,
}

/// The demo application: the one whose token `kept` holds, or a new one (written there).
/// Its secret is derived from the server key, so the links are minted here.
async fn demo_application(
    service: &ChatService,
    key: &ServerKey,
    kept: Option<&Path>,
) -> Result<Demo, String> {
    let admin = chat_domain::Caller::Admin;
    let existing = match kept.map(std::fs::read_to_string) {
        Some(Ok(text)) => match AppToken::parse(text.trim()) {
            Ok(token) => service
                .application(&admin, &token)
                .await
                .map_err(|e| format!("cannot read the demo application: {e}"))?,
            Err(_) => None,
        },
        _ => None,
    };
    let application = match existing {
        Some(application) => application,
        None => {
            let name = chat_domain::AppName::parse("Demo").map_err(|e| e.to_string())?;
            let created = service
                .create_application(&admin, name)
                .await
                .map_err(|e| format!("cannot create the demo application: {e}"))?;
            if let Some(path) = kept {
                std::fs::write(path, created.application.token.as_str())
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
            created.application
        }
    };
    let secret = key.app_secret(&application.token, application.secret_generation);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs()
        + DEMO_TOKEN_SECS;
    let mint = |user: &str, role: Role| {
        chat_appsync::auth::mint_user_token(
            secret.expose(),
            application.token.as_str(),
            user,
            role,
            exp,
        )
        .map_err(|e| e.to_string())
    };
    Ok(Demo {
        agent: mint("demo-agent", Role::Agent)?,
        customer: mint("demo-customer", Role::Customer)?,
        app: application.token,
    })
}

fn print_demo(base: &str, demo: &Demo) {
    use std::io::Write;
    let text = format!(
        "  demo:      application {app} (development only; --demo false turns it off)\n    \
         agent console:   {base}/#token={agent}\n    \
         customer widget: {base}/customer.html#token={customer}\n",
        app = demo.app,
        agent = demo.agent,
        customer = demo.customer,
    );
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// How long a stopping server waits for its WebSocket sessions to send their close frames.
const SESSIONS_CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
