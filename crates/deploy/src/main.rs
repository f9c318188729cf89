//! `chat-deploy generate` rewrites the generated parts of template.yaml and the resolver
//! binaries; `chat-deploy check` exits 1 when they are stale; `chat-deploy search
//! status|reindex --domain NAME` operates a deployed search index (docs/deploy.md).

use std::process::ExitCode;

fn main() -> ExitCode {
    let root = chat_deploy::workspace_root();
    match std::env::args().nth(1).as_deref() {
        Some("generate") => match chat_deploy::write(&root) {
            Ok(changed) if changed.is_empty() => {
                println!("up to date");
                ExitCode::SUCCESS
            }
            Ok(changed) => {
                for path in changed {
                    println!("wrote {}", path.display());
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("chat-deploy: {error}");
                ExitCode::FAILURE
            }
        },
        Some("check") => match chat_deploy::check(&root) {
            Ok(stale) if stale.is_empty() => {
                println!(
                    "template.yaml, the resolver binaries and functions/Cargo.toml are up to date"
                );
                ExitCode::SUCCESS
            }
            Ok(stale) => {
                for path in stale {
                    eprintln!("stale: {}", path.display());
                }
                eprintln!("run: cargo run -p chat-deploy -- generate");
                ExitCode::FAILURE
            }
            Err(error) => {
                eprintln!("chat-deploy: {error}");
                ExitCode::FAILURE
            }
        },
        Some("search") => search(&std::env::args().skip(2).collect::<Vec<_>>()),
        _ => {
            eprintln!(
                "usage: chat-deploy generate | check | search status|reindex --domain NAME \
                 [--index chat-messages] [--wait-secs 1800]"
            );
            ExitCode::from(2)
        }
    }
}

fn search(args: &[String]) -> ExitCode {
    let Some((command, rest)) = args.split_first() else {
        eprintln!("usage: chat-deploy search status|reindex --domain NAME");
        return ExitCode::from(2);
    };
    let options = match chat_deploy::search::Options::parse(rest) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("chat-deploy search: {error}");
            return ExitCode::from(2);
        }
    };
    let ran = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
        .and_then(|rt| rt.block_on(chat_deploy::search::run(command, &options)));
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chat-deploy search: {error}");
            ExitCode::FAILURE
        }
    }
}
