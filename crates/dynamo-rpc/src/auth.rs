//! The handshake: before anything else crosses a connection, both sides prove
//! they know the cluster secret (SPEC section 3, "cluster security"), and
//! agree on the protocol version.
//!
//! Mutual HMAC-SHA256 challenge-response, each side contributing a fresh
//! nonce so that no recorded proof can be replayed:
//!
//! ```text
//! client                                      server
//!   Hello{version, client_name, client_nonce}  ->
//!                                           <-  Challenge{version, server_name, server_nonce,
//!                                                 server_proof = MAC("dynamo-rpc server", client_nonce, server_nonce, server_name)}
//!   checks server_proof; on mismatch sends a refusal and stops: an impostor server
//!   never gets our proof nor any request
//!   Proof{MAC("dynamo-rpc client", server_nonce, client_nonce, client_name)}  ->
//!                                           <-  Welcome (or a refusal, then close)
//! ```
//!
//! `MAC(label, n1, n2, name)` is HMAC-SHA256 keyed with the secret over
//! `label | version u16 | n1 | n2 | name length u8 | name`. The two labels
//! differ, so a proof one side produces is never valid in the other role
//! (no reflection); each proof covers the verifier's own fresh nonce (no
//! replay); the length prefix makes the input unambiguous. Proofs are
//! compared in constant time (`verify_slice`).
//!
//! A refusal is an `Error` frame whose `method` field is the reason code
//! (version, authentication, malformed), so the other side reports the right
//! error instead of "connection reset".
//!
//! Not provided: confidentiality or integrity after the handshake (no TLS).
//! Someone on the network path can read traffic or hijack an authenticated
//! connection; run the RPC port on a trusted network.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};

use bytes::{BufMut, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::config::RpcConfig;
use crate::conn::{FrameReader, ReadError, write_frame};
use crate::error::RpcError;
use crate::frame::{Frame, FrameError, Kind};

/// The wire protocol version this build speaks, exchanged in the handshake.
/// Bump it for any change to frames, handshake or method encodings that an
/// older node would misread.
pub const PROTOCOL_VERSION: u16 = 1;
/// Bytes of a handshake nonce.
pub const NONCE_BYTES: usize = 32;
/// Bytes of an HMAC-SHA256 proof.
pub const PROOF_BYTES: usize = 32;
/// Longest node name (its length travels as one byte).
pub const MAX_NODE_NAME_BYTES: usize = 255;
/// Largest handshake frame payload: a challenge with the longest name is
/// 2 + 32 + 32 + 1 + 255 = 322 bytes. Unauthenticated peers cannot make us
/// buffer more than this.
pub const MAX_HANDSHAKE_PAYLOAD_BYTES: usize = 512;

/// Refusal code: protocol versions differ.
const REFUSED_VERSION: u16 = 1;
/// Refusal code: a proof did not verify.
const REFUSED_AUTH: u16 = 2;
/// Refusal code: a handshake message could not be parsed.
const REFUSED_MALFORMED: u16 = 3;

const SERVER_LABEL: &[u8] = b"dynamo-rpc server";
const CLIENT_LABEL: &[u8] = b"dynamo-rpc client";

type HmacSha256 = Hmac<Sha256>;

/// The shared cluster secret. Its `Debug` output never shows the bytes.
#[derive(Clone)]
pub struct ClusterSecret(Vec<u8>);

/// The secret is too short to resist guessing.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error(
    "cluster secret is {0} bytes; at least {min} are required (e.g. `head -c 32 /dev/urandom | base64`)",
    min = ClusterSecret::MIN_BYTES
)]
pub struct SecretTooShort(pub usize);

impl ClusterSecret {
    /// Shortest accepted secret, in bytes (128 bits).
    pub const MIN_BYTES: usize = 16;

    /// Wraps the secret bytes, refusing short ones.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, SecretTooShort> {
        let bytes = bytes.into();
        if bytes.len() < Self::MIN_BYTES {
            return Err(SecretTooShort(bytes.len()));
        }
        Ok(ClusterSecret(bytes))
    }

    fn mac(
        &self,
        label: &[u8],
        first_nonce: &[u8; NONCE_BYTES],
        second_nonce: &[u8; NONCE_BYTES],
        name: &str,
    ) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(label);
        mac.update(&PROTOCOL_VERSION.to_be_bytes());
        mac.update(first_nonce);
        mac.update(second_nonce);
        mac.update(&[name.len() as u8]);
        mac.update(name.as_bytes());
        mac
    }

    fn server_mac(&self, client_nonce: &[u8; NONCE_BYTES], server_nonce: &[u8; NONCE_BYTES], name: &str) -> HmacSha256 {
        self.mac(SERVER_LABEL, client_nonce, server_nonce, name)
    }

    fn client_mac(&self, server_nonce: &[u8; NONCE_BYTES], client_nonce: &[u8; NONCE_BYTES], name: &str) -> HmacSha256 {
        self.mac(CLIENT_LABEL, server_nonce, client_nonce, name)
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

fn proof_of(mac: HmacSha256) -> [u8; PROOF_BYTES] {
    mac.finalize().into_bytes().into()
}

/// Where handshake nonces come from. Injected so that the simulation can
/// pass a seeded source and replay a run exactly.
pub trait NonceSource: Send + Sync + 'static {
    /// A fresh nonce; must not repeat (in production: random).
    fn nonce(&self) -> [u8; NONCE_BYTES];
}

/// Nonces from the operating system's random device (`/dev/urandom`),
/// opened for each nonce: handshakes are rare (one per connection), and a
/// stateless source is trivially shared.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsNonce;

impl OsNonce {
    /// Checks that the random device can be read, so that a node can fail
    /// at startup instead of at its first handshake.
    pub fn check() -> io::Result<()> {
        read_urandom().map(|_| ())
    }
}

fn read_urandom() -> io::Result<[u8; NONCE_BYTES]> {
    let mut nonce = [0u8; NONCE_BYTES];
    File::open("/dev/urandom")?.read_exact(&mut nonce)?;
    Ok(nonce)
}

impl NonceSource for OsNonce {
    /// # Panics
    /// If `/dev/urandom` cannot be read (see [`OsNonce::check`]):
    /// continuing with a predictable nonce would allow replays. The panic
    /// ends only the connection being opened.
    fn nonce(&self) -> [u8; NONCE_BYTES] {
        match read_urandom() {
            Ok(nonce) => nonce,
            Err(e) => panic!("cannot read /dev/urandom for a handshake nonce: {e}"),
        }
    }
}

/// Why a handshake failed.
#[derive(Debug, Error)]
pub enum HandshakeError {
    /// Reading or writing the connection failed.
    #[error("i/o error during the handshake: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection before the handshake finished.
    #[error("the peer closed the connection during the handshake")]
    Closed,
    /// The peer's bytes are not frames of this protocol.
    #[error("{0}")]
    Frame(#[from] FrameError),
    /// A valid frame, but not the step of the handshake we are at.
    #[error("expected a {expected:?} frame in the handshake, got {got:?}")]
    Unexpected {
        /// The step we are at.
        expected: Kind,
        /// What arrived.
        got: Kind,
    },
    /// A handshake message that does not parse.
    #[error("malformed {what} message: {detail}")]
    Malformed {
        /// Which message.
        what: &'static str,
        /// What is wrong.
        detail: &'static str,
    },
    /// The peer speaks another protocol version.
    #[error("the peer speaks protocol version {theirs}, this node speaks {ours}; upgrade the older node")]
    Version {
        /// [`PROTOCOL_VERSION`].
        ours: u16,
        /// The peer's.
        theirs: u16,
    },
    /// The peer's proof does not verify with our secret.
    #[error("the peer's proof does not match our cluster secret")]
    BadProof,
    /// The peer refused us, saying why.
    #[error("the peer refused the connection: {message}")]
    Refused {
        /// Refusal code (version, authentication, malformed).
        code: u16,
        /// The peer's explanation.
        message: String,
    },
}

impl HandshakeError {
    /// Whether this is an authentication failure (either side's proof), as
    /// opposed to a broken or foreign peer.
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, HandshakeError::BadProof | HandshakeError::Refused { code: REFUSED_AUTH, .. })
    }

    /// The client's view of this failure when talking to `addr`.
    pub(crate) fn into_rpc_error(self, addr: &str) -> RpcError {
        match self {
            e if e.is_auth_failure() => RpcError::Auth { addr: addr.to_owned(), reason: e.to_string() },
            HandshakeError::Io(e) => RpcError::closed(addr, format!("handshake failed: {e}")),
            HandshakeError::Closed => RpcError::closed(
                addr,
                "the server closed the connection during the handshake (busy, or not a dynamo RPC port?)",
            ),
            other => RpcError::protocol(addr, other),
        }
    }
}

impl From<ReadError> for HandshakeError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Io(e) => HandshakeError::Io(e),
            ReadError::Frame(e) => HandshakeError::Frame(e),
            ReadError::EofMidFrame => HandshakeError::Closed,
        }
    }
}

/// Reads a handshake message field by field, refusing short or long input.
struct Fields<'a> {
    what: &'static str,
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn malformed(&self, detail: &'static str) -> HandshakeError {
        HandshakeError::Malformed { what: self.what, detail }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], HandshakeError> {
        if self.rest.len() < n {
            return Err(self.malformed("truncated"));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn array(&mut self) -> Result<[u8; 32], HandshakeError> {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.take(32)?);
        Ok(out)
    }

    /// The version comes first and is checked before anything else, so a
    /// peer of another version gets a version error, not a parse error.
    fn version(&mut self) -> Result<u16, HandshakeError> {
        let bytes = self.take(2)?;
        let theirs = u16::from_be_bytes([bytes[0], bytes[1]]);
        if theirs != PROTOCOL_VERSION {
            return Err(HandshakeError::Version { ours: PROTOCOL_VERSION, theirs });
        }
        Ok(theirs)
    }

    fn name(&mut self) -> Result<String, HandshakeError> {
        let len = usize::from(self.take(1)?[0]);
        let bytes = self.take(len)?;
        if bytes.is_empty() {
            return Err(self.malformed("empty node name"));
        }
        String::from_utf8(bytes.to_vec()).map_err(|_| self.malformed("node name is not UTF-8"))
    }

    fn finish(self) -> Result<(), HandshakeError> {
        if !self.rest.is_empty() {
            return Err(self.malformed("trailing bytes"));
        }
        Ok(())
    }
}

fn put_name(buf: &mut BytesMut, name: &str) {
    assert!(!name.is_empty() && name.len() <= MAX_NODE_NAME_BYTES, "node names are validated by RpcConfig");
    buf.put_u8(name.len() as u8);
    buf.put_slice(name.as_bytes());
}

/// First handshake message, client to server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The client's node name (1 to 255 bytes of UTF-8).
    pub node_name: String,
    /// Fresh nonce the server's proof must cover.
    pub client_nonce: [u8; NONCE_BYTES],
}

impl Hello {
    /// Payload: `version u16 | client_nonce [32] | name_len u8 | name`.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(2 + NONCE_BYTES + 1 + self.node_name.len());
        buf.put_u16(PROTOCOL_VERSION);
        buf.put_slice(&self.client_nonce);
        put_name(&mut buf, &self.node_name);
        buf.freeze()
    }

    /// Parses a payload; a version other than ours is refused first.
    pub fn decode(payload: &[u8]) -> Result<Self, HandshakeError> {
        let mut fields = Fields { what: "hello", rest: payload };
        fields.version()?;
        let client_nonce = fields.array()?;
        let node_name = fields.name()?;
        fields.finish()?;
        Ok(Hello { node_name, client_nonce })
    }
}

/// Second handshake message, server to client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The server's node name.
    pub server_name: String,
    /// Fresh nonce the client's proof must cover.
    pub server_nonce: [u8; NONCE_BYTES],
    /// The server's proof of the secret, over the client's nonce.
    pub server_proof: [u8; PROOF_BYTES],
}

impl Challenge {
    /// Payload: `version u16 | server_nonce [32] | server_proof [32] | name_len u8 | name`.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(2 + NONCE_BYTES + PROOF_BYTES + 1 + self.server_name.len());
        buf.put_u16(PROTOCOL_VERSION);
        buf.put_slice(&self.server_nonce);
        buf.put_slice(&self.server_proof);
        put_name(&mut buf, &self.server_name);
        buf.freeze()
    }

    /// Parses a payload.
    pub fn decode(payload: &[u8]) -> Result<Self, HandshakeError> {
        let mut fields = Fields { what: "challenge", rest: payload };
        fields.version()?;
        let server_nonce = fields.array()?;
        let server_proof = fields.array()?;
        let server_name = fields.name()?;
        fields.finish()?;
        Ok(Challenge { server_name, server_nonce, server_proof })
    }
}

/// Third handshake message, client to server: the client's proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    /// The client's proof of the secret, over the server's nonce.
    pub client_proof: [u8; PROOF_BYTES],
}

impl Proof {
    /// Payload: the 32 proof bytes.
    pub fn encode(&self) -> Bytes {
        Bytes::copy_from_slice(&self.client_proof)
    }

    /// Parses a payload.
    pub fn decode(payload: &[u8]) -> Result<Self, HandshakeError> {
        let mut fields = Fields { what: "proof", rest: payload };
        let client_proof = fields.array()?;
        fields.finish()?;
        Ok(Proof { client_proof })
    }
}

async fn send<S: AsyncWrite + Unpin>(stream: &mut S, kind: Kind, code: u16, payload: Bytes) -> io::Result<()> {
    write_frame(stream, &Frame { kind, more: false, request_id: 0, method: code, payload }).await?;
    stream.flush().await
}

/// Tells the peer why we give up. Best effort: we are closing anyway.
async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, code: u16, message: &str) {
    let _ = send(stream, Kind::Error, code, Bytes::copy_from_slice(message.as_bytes())).await;
}

/// Reads the next handshake frame, which must be of kind `expected`.
async fn expect<S: AsyncRead + Unpin>(reader: &mut FrameReader<S>, expected: Kind) -> Result<Bytes, HandshakeError> {
    let frame = reader.read_frame(MAX_HANDSHAKE_PAYLOAD_BYTES).await?.ok_or(HandshakeError::Closed)?;
    match frame.kind {
        kind if kind == expected => Ok(frame.payload),
        Kind::Error => Err(HandshakeError::Refused { code: frame.method, message: printable(&frame.payload) }),
        got => Err(HandshakeError::Unexpected { expected, got }),
    }
}

/// Most characters of a peer's refusal text kept for errors and logs.
const MAX_REFUSAL_CHARS: usize = 200;

/// A refusal's text as it may go into our errors and logs: it comes from a
/// peer that has not authenticated, so control characters (a newline could
/// forge a log line) are escaped and the length is capped.
fn printable(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    let mut out = String::new();
    for (count, c) in text.chars().enumerate() {
        if count == MAX_REFUSAL_CHARS {
            out.push_str("...");
            break;
        }
        if c.is_control() { out.extend(c.escape_default()) } else { out.push(c) }
    }
    out
}

/// Runs the client side on a fresh connection; returns the server's name.
pub(crate) async fn client_handshake<S>(
    reader: &mut FrameReader<S>,
    config: &RpcConfig,
) -> Result<String, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let client_nonce = config.nonce();
    let hello = Hello { node_name: config.local_name().to_owned(), client_nonce };
    send(reader.get_mut(), Kind::Hello, 0, hello.encode()).await?;
    let challenge = Challenge::decode(&expect(reader, Kind::Challenge).await?)?;
    let server_mac = config.secret().server_mac(&client_nonce, &challenge.server_nonce, &challenge.server_name);
    if server_mac.verify_slice(&challenge.server_proof).is_err() {
        refuse(reader.get_mut(), REFUSED_AUTH, "authentication failed: your proof does not match my cluster secret")
            .await;
        return Err(HandshakeError::BadProof);
    }
    let client_mac = config.secret().client_mac(&challenge.server_nonce, &client_nonce, config.local_name());
    let proof = Proof { client_proof: proof_of(client_mac) };
    send(reader.get_mut(), Kind::Proof, 0, proof.encode()).await?;
    expect(reader, Kind::Welcome).await?;
    Ok(challenge.server_name)
}

/// Runs the server side on an accepted connection; returns the client's
/// authenticated name. Refusals are sent to the peer; logging is the
/// caller's (it knows the peer address).
pub(crate) async fn server_handshake<S>(
    reader: &mut FrameReader<S>,
    config: &RpcConfig,
) -> Result<String, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let hello = match Hello::decode(&expect(reader, Kind::Hello).await?) {
        Ok(hello) => hello,
        Err(e) => return Err(refuse_bad_hello(reader.get_mut(), e).await),
    };
    let server_nonce = config.nonce();
    let server_mac = config.secret().server_mac(&hello.client_nonce, &server_nonce, config.local_name());
    let challenge =
        Challenge { server_name: config.local_name().to_owned(), server_nonce, server_proof: proof_of(server_mac) };
    send(reader.get_mut(), Kind::Challenge, 0, challenge.encode()).await?;
    let proof = Proof::decode(&expect(reader, Kind::Proof).await?)?;
    let client_mac = config.secret().client_mac(&server_nonce, &hello.client_nonce, &hello.node_name);
    if client_mac.verify_slice(&proof.client_proof).is_err() {
        refuse(reader.get_mut(), REFUSED_AUTH, "authentication failed: your proof does not match my cluster secret")
            .await;
        return Err(HandshakeError::BadProof);
    }
    send(reader.get_mut(), Kind::Welcome, 0, Bytes::new()).await?;
    Ok(hello.node_name)
}

async fn refuse_bad_hello<S: AsyncWrite + Unpin>(stream: &mut S, e: HandshakeError) -> HandshakeError {
    let code = match e {
        HandshakeError::Version { .. } => REFUSED_VERSION,
        _ => REFUSED_MALFORMED,
    };
    refuse(stream, code, &e.to_string()).await;
    e
}

/// Test helpers shared by the crate's unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// Distinct, predictable nonces.
    #[derive(Default)]
    pub(crate) struct CountingNonce(AtomicU64);

    impl NonceSource for CountingNonce {
        fn nonce(&self) -> [u8; NONCE_BYTES] {
            let mut nonce = [0u8; NONCE_BYTES];
            nonce[..8].copy_from_slice(&self.0.fetch_add(1, Ordering::Relaxed).to_be_bytes());
            nonce
        }
    }

    pub(crate) fn secret() -> ClusterSecret {
        ClusterSecret::new(*b"0123456789abcdef").expect("16 bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::testing::secret;
    use super::*;

    fn other_secret() -> ClusterSecret {
        ClusterSecret::new(*b"fedcba9876543210").expect("16 bytes")
    }

    const CLIENT_NONCE: [u8; 32] = [1; 32];
    const SERVER_NONCE: [u8; 32] = [2; 32];

    #[test]
    fn a_refusal_text_cannot_forge_log_lines_or_grow_without_bound() {
        let forged = printable(b"bad\nrpc: accepted connection from 10.0.0.1\r\x1b[2J");
        assert!(!forged.contains('\n') && !forged.contains('\r') && !forged.contains('\x1b'), "{forged}");
        assert!(forged.starts_with("bad\\nrpc: accepted"), "{forged}");
        let long = printable(&[b'x'; 512]);
        assert_eq!(long.len(), MAX_REFUSAL_CHARS + 3, "capped, with an ellipsis");
        assert_eq!(printable("naïve".as_bytes()), "naïve", "printable text is kept as it is");
    }

    #[test]
    fn os_nonces_differ() {
        OsNonce::check().expect("/dev/urandom is readable");
        assert_ne!(OsNonce.nonce(), OsNonce.nonce());
    }

    #[test]
    fn short_secret_is_refused() {
        assert_eq!(ClusterSecret::new(vec![0u8; 15]).err(), Some(SecretTooShort(15)));
        assert!(ClusterSecret::new(vec![0u8; 16]).is_ok());
    }

    #[test]
    fn secret_never_appears_in_debug_output() {
        assert_eq!(format!("{:?}", secret()), "ClusterSecret(<redacted>)");
    }

    #[test]
    fn proofs_verify_only_with_the_same_secret() {
        let proof = proof_of(secret().server_mac(&CLIENT_NONCE, &SERVER_NONCE, "a"));
        assert!(secret().server_mac(&CLIENT_NONCE, &SERVER_NONCE, "a").verify_slice(&proof).is_ok());
        assert!(other_secret().server_mac(&CLIENT_NONCE, &SERVER_NONCE, "a").verify_slice(&proof).is_err());
    }

    #[test]
    fn proof_is_bound_to_nonces_name_and_role() {
        let proof = proof_of(secret().server_mac(&CLIENT_NONCE, &SERVER_NONCE, "a"));
        let s = secret();
        assert!(s.server_mac(&SERVER_NONCE, &SERVER_NONCE, "a").verify_slice(&proof).is_err(), "other nonce");
        assert!(s.server_mac(&CLIENT_NONCE, &SERVER_NONCE, "b").verify_slice(&proof).is_err(), "other name");
        assert!(s.client_mac(&CLIENT_NONCE, &SERVER_NONCE, "a").verify_slice(&proof).is_err(), "reflected");
    }

    #[test]
    fn handshake_messages_round_trip() {
        let hello = Hello { node_name: "node-1".into(), client_nonce: CLIENT_NONCE };
        assert_eq!(Hello::decode(&hello.encode()).expect("valid"), hello);
        let challenge = Challenge { server_name: "n".repeat(255), server_nonce: SERVER_NONCE, server_proof: [3; 32] };
        let encoded = challenge.encode();
        assert!(encoded.len() <= MAX_HANDSHAKE_PAYLOAD_BYTES);
        assert_eq!(Challenge::decode(&encoded).expect("valid"), challenge);
        let proof = Proof { client_proof: [4; 32] };
        assert_eq!(Proof::decode(&proof.encode()).expect("valid"), proof);
    }

    #[test]
    fn other_protocol_version_is_refused_before_parsing() {
        let mut payload = vec![0x00, 0x02];
        payload.extend_from_slice(b"anything, in a layout we do not know");
        assert!(matches!(Hello::decode(&payload), Err(HandshakeError::Version { ours: 1, theirs: 2 })));
    }

    #[test]
    fn malformed_handshake_messages_are_refused() {
        let valid = Hello { node_name: "node".into(), client_nonce: CLIENT_NONCE }.encode();
        for cut in 0..valid.len() {
            assert!(Hello::decode(&valid[..cut]).is_err(), "truncated to {cut}");
        }
        let mut trailing = valid.to_vec();
        trailing.push(0);
        assert!(matches!(Hello::decode(&trailing), Err(HandshakeError::Malformed { detail: "trailing bytes", .. })));
        let mut empty_name = valid[..2 + 32].to_vec();
        empty_name.push(0);
        assert!(matches!(Hello::decode(&empty_name), Err(HandshakeError::Malformed { detail: "empty node name", .. })));
        let mut not_utf8 = valid[..2 + 32].to_vec();
        not_utf8.extend_from_slice(&[1, 0xFF]);
        assert!(Hello::decode(&not_utf8).is_err());
        assert!(Proof::decode(&[0; 31]).is_err());
    }
}
