//! A worker's link to its node: one kept-alive connection, reopened lazily
//! after a failure that leaves it unusable (connect error, timeout, broken
//! HTTP exchange). A server error status (503, 400, ...) keeps it: the
//! exchange completed and HTTP/1.1 keep-alive still holds.

use bytes::Bytes;
use dynamo_client::{ClientError, Connection, GetResult, WriteOptions, connect};

/// One node address and, when open, the connection to it.
pub struct Link {
    /// `host:port` of the node.
    node: String,
    /// The open connection; `None` until first use and after a failure.
    connection: Option<Connection>,
}

impl Link {
    /// A link to `node`, connected on first use.
    pub fn new(node: String) -> Link {
        Link { node, connection: None }
    }

    /// Reads a key (opening the connection first if needed).
    pub async fn get(
        &mut self,
        bucket: &str,
        key: &[u8],
        query: &[(String, String)],
    ) -> Result<GetResult, ClientError> {
        let connection = self.connection().await?;
        let result = connection.get(bucket, key, query).await;
        self.forget_if_broken(&result);
        result
    }

    /// Writes a key (opening the connection first if needed); returns the
    /// new context.
    pub async fn put(
        &mut self,
        bucket: &str,
        key: &[u8],
        value: Bytes,
        options: &WriteOptions,
    ) -> Result<Option<String>, ClientError> {
        let connection = self.connection().await?;
        let result = connection.put(bucket, key, value, options).await;
        self.forget_if_broken(&result);
        result
    }

    async fn connection(&mut self) -> Result<&mut Connection, ClientError> {
        let connection = match self.connection.take() {
            Some(connection) => connection,
            None => connect(&self.node).await?,
        };
        Ok(self.connection.insert(connection))
    }

    fn forget_if_broken<T>(&mut self, result: &Result<T, ClientError>) {
        if let Err(error) = result
            && is_broken(error)
        {
            self.connection = None;
        }
    }
}

/// Whether `error` leaves the connection unusable (the next request must
/// open a new one, after a short pause so a dead node is not hammered).
pub fn is_broken(error: &ClientError) -> bool {
    matches!(error, ClientError::Connect { .. } | ClientError::Timeout { .. } | ClientError::Http { .. })
}
