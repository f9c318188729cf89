//! `chat-deploy search status|reindex --domain NAME`: the deployed search index, operated
//! from an operator's machine with the AWS credentials of the environment.
//!
//! The domain's endpoint is found by the domain's name (`DescribeDomain`, the Amazon
//! OpenSearch Service configuration API), so nobody copies URLs out of the console. Before
//! touching indexes both commands wait until the domain is not applying a change: while a
//! configuration change or an upgrade is in progress (`Processing`, `UpgradeProcessing`) the
//! service runs a blue/green deployment, moving shards to new nodes, and a reindex started
//! then competes with it for the same nodes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chat_opensearch::{AliasState, Auth, ClientTransport, Config, OpenSearchIndex};

/// What `DescribeDomain` says of a domain, as far as these commands need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainState {
    /// `https://...`: the public endpoint, or the VPC one.
    pub endpoint: String,
    /// A configuration change or an upgrade is in progress.
    pub busy: bool,
    /// The service's status word when it gives one (`Active`, `Modifying`, ...).
    pub status: Option<String>,
}

/// The domain `name`'s endpoint and whether it is busy.
pub async fn describe(
    client: &aws_sdk_opensearch::Client,
    name: &str,
) -> Result<DomainState, String> {
    let answer = client
        .describe_domain()
        .domain_name(name)
        .send()
        .await
        .map_err(|e| {
            format!(
                "cannot describe the search domain {name}: {}",
                aws_sdk_opensearch::error::DisplayErrorContext(e)
            )
        })?;
    let domain = answer
        .domain_status()
        .ok_or_else(|| format!("the search domain {name} has no status"))?;
    let host = domain
        .endpoint()
        .or_else(|| {
            domain
                .endpoints()
                .and_then(|e| e.get("vpc"))
                .map(String::as_str)
        })
        .ok_or_else(|| {
            format!("the search domain {name} has no endpoint yet (is it still being created?)")
        })?;
    Ok(DomainState {
        endpoint: format!("https://{host}"),
        busy: domain.processing().unwrap_or(false) || domain.upgrade_processing().unwrap_or(false),
        status: domain
            .domain_processing_status()
            .map(|s| s.as_str().to_owned()),
    })
}

/// Asks `describe` every `poll` until the domain is not busy, for at most `limit`; says
/// why it waits (`note`) each time it does.
pub async fn until_settled<F, Fut>(
    mut describe: F,
    poll: Duration,
    limit: Duration,
    mut note: impl FnMut(&DomainState),
) -> Result<DomainState, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<DomainState, String>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let state = describe().await?;
        if !state.busy {
            return Ok(state);
        }
        if tokio::time::Instant::now() + poll > deadline {
            return Err(format!(
                "the search domain is still applying a change ({}) after {} s: try again later",
                state.status.as_deref().unwrap_or("processing"),
                limit.as_secs()
            ));
        }
        note(&state);
        tokio::time::sleep(poll).await;
    }
}

/// The command line's options.
#[derive(Debug)]
pub struct Options {
    pub domain: String,
    pub index: String,
    pub wait: Duration,
    pub poll: Duration,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut options = Options {
            domain: String::new(),
            index: Config::default().index,
            wait: Duration::from_secs(1800),
            poll: Duration::from_secs(15),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .cloned()
                    .ok_or_else(|| format!("{arg} needs a value"))
            };
            match arg.as_str() {
                "--domain" => options.domain = value()?,
                "--index" => options.index = value()?,
                "--wait-secs" => {
                    let secs = value()?;
                    options.wait =
                        Duration::from_secs(secs.parse().map_err(|_| {
                            format!("--wait-secs: not a number of seconds: {secs}")
                        })?);
                }
                other => return Err(format!("unknown option {other}")),
            }
        }
        if options.domain.is_empty() {
            return Err(
                "--domain NAME is required (the stack's search domain: chat-<stage>)".into(),
            );
        }
        Ok(options)
    }
}

/// `status` or `reindex`, on the domain the options name.
pub async fn run(command: &str, options: &Options) -> Result<(), String> {
    // The OpenSearch client's HTTPS: rustls on ring, as in the functions.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sdk = chat_functions::aws_config().await;
    let client = aws_sdk_opensearch::Client::new(&sdk);
    let state = until_settled(
        || describe(&client, &options.domain),
        options.poll,
        options.wait,
        |state| {
            eprintln!(
                "{}: {} (a change is being applied); waiting",
                options.domain,
                state.status.as_deref().unwrap_or("processing")
            );
        },
    )
    .await?;
    eprintln!("{}: {}", options.domain, state.endpoint);
    let credentials = chat_opensearch::opensearch::auth::Credentials::try_from(&sdk)
        .map_err(|e| format!("AWS credentials for SigV4: {e}"))?;
    let transport = ClientTransport::connect(
        &state.endpoint,
        Auth::Credentials(credentials),
        "es",
        Duration::from_secs(30),
    )
    .map_err(|e| format!("cannot reach {}: {e}", state.endpoint))?;
    let index = OpenSearchIndex::new(
        Arc::new(transport),
        Config {
            index: options.index.clone(),
            ..Config::default()
        },
    );
    match command {
        "status" => {
            let alias = index.alias_state().await.map_err(|e| e.to_string())?;
            println!("{}", describe_alias(&options.index, &alias));
            Ok(())
        }
        "reindex" => {
            let report = index
                .reindex(Duration::from_secs(5))
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "reindexed {} into {}: {} documents copied, {} more caught up; the old \
                 indexes stay until you delete them",
                if report.from.is_empty() {
                    "nothing".to_owned()
                } else {
                    report.from.join(", ")
                },
                report.to,
                report.copied,
                report.caught_up
            );
            Ok(())
        }
        other => Err(format!("unknown search command {other}: status or reindex")),
    }
}

/// One line on what the alias stands for.
pub fn describe_alias(alias: &str, state: &AliasState) -> String {
    match state {
        AliasState::Missing => {
            format!("{alias}: no index yet (the indexer creates it at its first start)")
        }
        AliasState::Index => format!(
            "{alias}: a plain index, not an alias (created before versioned indexes, or by a \
             write before the indexer ensured the template): it is in the way of the alias; \
             delete it, and the indexer creates {alias}-v* behind the alias at its next batch"
        ),
        AliasState::Alias(indexes) => format!("{alias} -> {}", indexes.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    fn state(busy: bool) -> DomainState {
        DomainState {
            endpoint: "https://search-chat-dev.example".into(),
            busy,
            status: Some(if busy { "Modifying" } else { "Active" }.into()),
        }
    }

    #[tokio::test]
    async fn waits_while_the_domain_applies_a_change_then_goes_on() {
        let answers = Mutex::new(VecDeque::from([state(true), state(true), state(false)]));
        let mut waited = 0;
        let settled = until_settled(
            || async { Ok(answers.lock().unwrap().pop_front().unwrap()) },
            Duration::from_millis(1),
            Duration::from_secs(60),
            |_| waited += 1,
        )
        .await
        .unwrap();
        assert!(!settled.busy);
        assert_eq!(waited, 2);
    }

    #[tokio::test]
    async fn gives_up_after_the_limit_saying_why() {
        let error = until_settled(
            || async { Ok(state(true)) },
            Duration::from_millis(20),
            Duration::from_millis(100),
            |_| {},
        )
        .await
        .unwrap_err();
        assert!(
            error.contains("Modifying") && error.contains("after 0 s"),
            "{error}"
        );
    }

    #[test]
    fn options_need_a_domain_and_read_the_rest() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(Options::parse(&args(&[])).unwrap_err().contains("--domain"));
        let options = Options::parse(&args(&["--domain", "chat-dev", "--wait-secs", "5"])).unwrap();
        assert_eq!(options.domain, "chat-dev");
        assert_eq!(options.index, "chat-messages");
        assert_eq!(options.wait, Duration::from_secs(5));
        assert!(Options::parse(&args(&["--domain", "x", "--wait-secs", "soon"])).is_err());
        assert!(Options::parse(&args(&["--domain"])).is_err());
    }
}
