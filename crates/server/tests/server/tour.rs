//! The README's five-minute tour (scripts/tour) runs against a started server as written.

use crate::common;

use common::*;

#[test]
fn the_readme_tour_runs_against_a_dev_server() {
    let server = TestServer::start();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let output = std::process::Command::new("bash")
        .arg(format!("{root}/scripts/tour"))
        .args([server.url.as_str(), ADMIN_KEY])
        .env("CHAT_SERVER_BIN", env!("CARGO_BIN_EXE_chat-server"))
        .output()
        .expect("run scripts/tour");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The retry with the same clientMessageId returned number 1 again, the agent's reply is 2.
    assert_eq!(
        stdout
            .matches("\"number\": 1,\n            \"senderRole\": \"CUSTOMER\"")
            .count(),
        2,
        "{stdout}"
    );
    assert!(
        stdout.contains("\"number\": 2,\n            \"senderRole\": \"AGENT\""),
        "{stdout}"
    );
    assert!(stdout.contains("\"code\": \"NotFound\""), "{stdout}");
}
