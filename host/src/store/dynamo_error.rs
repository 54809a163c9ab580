//! The DynamoDB store's errors: one variant per operation, each keeping the
//! SDK's error as its `#[source]` with its [`AwsErrorClass`], and the helpers
//! that turn SDK results into store results (a failed condition is an answer,
//! not an error).

use aws_sdk_dynamodb::error::{BuildError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::{
    create_table::CreateTableError, describe_table::DescribeTableError, get_item::GetItemError,
    put_item::PutItemError, query::QueryError, scan::ScanError,
    transact_write_items::TransactWriteItemsError, update_item::UpdateItemError,
    update_time_to_live::UpdateTimeToLiveError,
};

use super::StoreError;
use crate::aws::{AwsErrorClass, classify};

/// A failed DynamoDB call, named by operation. The SDK's error is the
/// `#[source]`, with its [`AwsErrorClass`] (throttled, timed out, access
/// denied, …) computed once, when the call failed.
#[derive(Debug, thiserror::Error)]
pub enum DynamoError {
    /// `CreateTable` failed (`healer store init`).
    #[error("dynamodb CreateTable ({class}): {}", DisplayErrorContext(.source))]
    CreateTable {
        /// What the error means for a retry.
        class: AwsErrorClass,
        /// The SDK's error.
        #[source]
        source: Box<SdkError<CreateTableError>>,
    },
    /// `DescribeTable` failed (`healer store init`).
    #[error("dynamodb DescribeTable ({class}): {}", DisplayErrorContext(.source))]
    DescribeTable {
        /// What the error means for a retry.
        class: AwsErrorClass,
        /// The SDK's error.
        #[source]
        source: Box<SdkError<DescribeTableError>>,
    },
    /// `UpdateTimeToLive` failed (`healer store init`).
    #[error("dynamodb UpdateTimeToLive ({class}): {}", DisplayErrorContext(.source))]
    UpdateTimeToLive {
        /// What the error means for a retry.
        class: AwsErrorClass,
        /// The SDK's error.
        #[source]
        source: Box<SdkError<UpdateTimeToLiveError>>,
    },
    /// `GetItem` failed.
    #[error("dynamodb GetItem ({class}): {}", DisplayErrorContext(.source))]
    GetItem {
        /// What the error means for a retry.
        class: AwsErrorClass,
        /// The SDK's error.
        #[source]
        source: Box<SdkError<GetItemError>>,
    },
    /// `PutItem` failed (other than by its condition).
    #[error("dynamodb PutItem ({class}): {}", DisplayErrorContext(.source))]
    PutItem {
        /// What the error means for a retry.
        class: AwsErrorClass,
        /// The SDK's error.
        #[source]
        source: Box<SdkError<PutItemError>>,
    },
    /// `TransactWriteItems` failed (other than by a condition: another
    /// writer won, and the reservation is read again).
    #[error("dynamodb TransactWriteItems ({class}): {}", DisplayErrorContext(.source))]
    TransactWriteItems {
        /// What the error means for a retry.
        class: AwsErrorClass,
        /// The SDK's error.
        #[source]
        source: Box<SdkError<TransactWriteItemsError>>,
    },
    /// `UpdateItem` failed (other than by its condition).
    #[error("dynamodb UpdateItem ({class}): {}", DisplayErrorContext(.source))]
    UpdateItem {
        /// What the error means for a retry.
        class: AwsErrorClass,
        /// The SDK's error.
        #[source]
        source: Box<SdkError<UpdateItemError>>,
    },
    /// `Query` failed.
    #[error("dynamodb Query ({class}): {}", DisplayErrorContext(.source))]
    Query {
        /// What the error means for a retry.
        class: AwsErrorClass,
        /// The SDK's error.
        #[source]
        source: Box<SdkError<QueryError>>,
    },
    /// `Scan` failed.
    #[error("dynamodb Scan ({class}): {}", DisplayErrorContext(.source))]
    Scan {
        /// What the error means for a retry.
        class: AwsErrorClass,
        /// The SDK's error.
        #[source]
        source: Box<SdkError<ScanError>>,
    },
    /// A request of `op` could not be built (a required field missing).
    #[error("dynamodb {op}: invalid request: {source}")]
    Build {
        /// The operation.
        op: &'static str,
        /// The SDK's builder error.
        #[source]
        source: BuildError,
    },
    /// A created table did not become `ACTIVE` in time (`healer store init`).
    #[error("dynamodb DescribeTable: table {table} did not become ACTIVE")]
    NotActive {
        /// The table.
        table: String,
    },
}

impl DynamoError {
    /// What the error means for a retry. A request that could not be built is
    /// `Permanent`; a table still not active is `Retryable` (it may become so).
    pub fn class(&self) -> AwsErrorClass {
        match self {
            DynamoError::CreateTable { class, .. }
            | DynamoError::DescribeTable { class, .. }
            | DynamoError::UpdateTimeToLive { class, .. }
            | DynamoError::GetItem { class, .. }
            | DynamoError::PutItem { class, .. }
            | DynamoError::UpdateItem { class, .. }
            | DynamoError::TransactWriteItems { class, .. }
            | DynamoError::Query { class, .. }
            | DynamoError::Scan { class, .. } => *class,
            DynamoError::Build { .. } => AwsErrorClass::Permanent,
            DynamoError::NotActive { .. } => AwsErrorClass::Retryable,
        }
    }

    /// Whether retrying the call later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.class().is_retryable()
    }
}

/// `From` each operation's `SdkError`: classified, then boxed.
macro_rules! from_sdk_error {
    ($($op:ident($err:ty)),* $(,)?) => {$(
        impl From<SdkError<$err>> for DynamoError {
            fn from(e: SdkError<$err>) -> Self {
                DynamoError::$op {
                    class: classify(&e),
                    source: Box::new(e),
                }
            }
        }
    )*};
}

from_sdk_error!(
    CreateTable(CreateTableError),
    DescribeTable(DescribeTableError),
    UpdateTimeToLive(UpdateTimeToLiveError),
    GetItem(GetItemError),
    PutItem(PutItemError),
    UpdateItem(UpdateItemError),
    TransactWriteItems(TransactWriteItemsError),
    Query(QueryError),
    Scan(ScanError),
);

/// The store error of a failed SDK call.
pub(super) fn err<E>(e: SdkError<E>) -> StoreError
where
    DynamoError: From<SdkError<E>>,
{
    StoreError::Dynamo(DynamoError::from(e))
}

/// `Ok(true)` if the write happened, `Ok(false)` if its condition failed (another
/// writer won), the error otherwise.
pub(super) fn condition_met<O, E>(res: Result<O, SdkError<E>>) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata,
    DynamoError: From<SdkError<E>>,
{
    match res {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error().and_then(|se| se.code())
                == Some("ConditionalCheckFailedException") =>
        {
            Ok(false)
        }
        Err(e) => Err(err(e)),
    }
}

pub(super) fn build_err(op: &'static str) -> impl FnOnce(BuildError) -> StoreError {
    move |source| StoreError::Dynamo(DynamoError::Build { op, source })
}
