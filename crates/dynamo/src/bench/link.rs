//! A worker's link to its node: one kept-alive connection, reopened lazily
//! after a failure that leaves it unusable (connect error, timeout, broken
//! HTTP exchange). A server error status (503, 400, ...) keeps it: the
//! exchange completed and HTTP/1.1 keep-alive still holds.

use bytes::Bytes;
use dynamo_client::{ClientError, Connection, GetResult, WriteOptions, connect};
use hyper::Method;

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

    /// Reads a data-type value; returns the HTTP status (200 or 404 on
    /// success; anything else is an error with the node's reason).
    pub async fn datatype_get(&mut self, path: &str) -> Result<u16, ClientError> {
        self.datatype_request(Method::GET, path, Bytes::new()).await
    }

    /// Applies a JSON data-type operation; returns the HTTP status.
    pub async fn datatype_update(&mut self, path: &str, op: String) -> Result<u16, ClientError> {
        self.datatype_request(Method::POST, path, Bytes::from(op)).await
    }

    async fn datatype_request(&mut self, method: Method, path: &str, body: Bytes) -> Result<u16, ClientError> {
        let connection = self.connection().await?;
        let result = connection.request(method, path, &[], body).await;
        self.forget_if_broken(&result);
        let response = result?;
        match response.status {
            200 | 204 | 404 => Ok(response.status),
            status => Err(ClientError::Status {
                addr: self.node.clone(),
                status,
                body: String::from_utf8_lossy(&response.body).into_owned(),
            }),
        }
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
