//! The AppSync Lambda authorizer (admin key or user JWT -> isAuthorized, resolverContext, TTL).

fn main() -> Result<(), chat_functions::Error> {
    chat_functions::authorizer_main()
}
