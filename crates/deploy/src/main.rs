//! `chat-deploy generate` rewrites the generated parts of template.yaml and the resolver
//! binaries; `chat-deploy check` exits 1 when they are stale.

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
                println!("template.yaml and the resolver binaries are up to date");
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
        _ => {
            eprintln!("usage: chat-deploy generate | check");
            ExitCode::from(2)
        }
    }
}
