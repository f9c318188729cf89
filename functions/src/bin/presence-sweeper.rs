//! Every minute (an EventBridge schedule): ends the expired presence leases and publishes
//! their ends through AppSync with IAM.

fn main() -> Result<(), chat_functions::Error> {
    chat_functions::presence_sweeper_main()
}
