//! One behaviour suite for every [`ChatStore`]: written once against `Arc<dyn ChatStore>`,
//! run by each implementation's tests through [`conformance_tests!`].
//!
//! ```ignore
//! async fn memory() -> chat_store_conformance::StoreUnderTest {
//!     StoreUnderTest::new(Arc::new(MyStore::new()))
//! }
//! mod memory_store {
//!     chat_store_conformance::conformance_tests!(super::memory());
//! }
//! ```
//!
//! The macro expands to one `#[tokio::test]` per behaviour (named after the function in
//! [`behaviours`]), so the calling crate needs `tokio` with the multi-threaded runtime.
//! Each test gets a fresh store from the expression.

use std::any::Any;
use std::sync::Arc;

use chat_domain::ChatStore;

pub mod assignment;
pub mod attachments;
pub mod behaviours;
pub mod fixtures;
pub mod presence;
pub mod routing;
pub mod unread;
pub mod webhooks;

/// A store for one test, with whatever must outlive it (a temporary directory ...).
pub struct StoreUnderTest {
    pub store: Arc<dyn ChatStore>,
    // Declared after `store`: dropped after it.
    _guard: Option<Box<dyn Any + Send>>,
}

impl StoreUnderTest {
    pub fn new(store: Arc<dyn ChatStore>) -> Self {
        StoreUnderTest {
            store,
            _guard: None,
        }
    }

    /// `guard` is dropped after the store, e.g. a `tempfile::TempDir` holding its file.
    pub fn with_guard(store: Arc<dyn ChatStore>, guard: impl Any + Send) -> Self {
        StoreUnderTest {
            store,
            _guard: Some(Box::new(guard)),
        }
    }
}

/// Calls `$callback!($($args)* ; name, name, ...)` with every behaviour of the suite:
/// the one list of behaviours.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_behaviours {
    ($callback:ident!($($args:tt)*)) => {
        $crate::$callback! {$($args)*;
            applications_are_created_read_and_renamed,
            secret_rotations_each_take_a_generation,
            sent_message_moves_chat_activity,
            message_times_never_go_backwards_along_the_numbers,
            concurrent_sends_get_dense_numbers,
            concurrent_chat_creation_gets_dense_numbers,
            concurrent_retries_with_one_client_message_id_create_one_message,
            idempotent_retry_returns_the_first_message,
            failed_writes_consume_no_number,
            failed_writes_in_a_busy_batch_consume_no_number,
            chat_pages_return_every_chat_once_in_inbox_order,
            chats_filter_by_status_and_customer,
            message_pages_ascending_after_and_descending_before,
            absent_chats_are_absent_everywhere,
            customer_scope_hides_other_customers_chats,
            applications_are_isolated,
            edit_rules,
            delete_rules,
            update_chat_sets_and_clears_subject_and_status,
            unread_follows_watermarks,
            mark_all_read_clears_what_the_reader_sees,
            unread_counters_equal_a_recount_after_random_interleavings,
            agents_assign_take_transfer_and_unassign,
            inbox_filters_page_every_chat_once_in_inbox_order,
            my_unread_follows_sends_reads_and_assignment,
            concurrent_assignments_sends_and_reads_keep_my_unread_exact,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_test_fns {
    ($make:expr; $($behaviour:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $behaviour() {
                let under_test: $crate::StoreUnderTest = $make.await;
                $crate::behaviours::$behaviour(::std::sync::Arc::clone(&under_test.store)).await;
            }
        )+
    };
}

/// Expands to one `#[tokio::test]` per behaviour of [`behaviours`]; `$make` is an
/// expression evaluated afresh in each test, a future of a [`StoreUnderTest`].
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::__with_behaviours!(__conformance_test_fns!($make));
    };
}
