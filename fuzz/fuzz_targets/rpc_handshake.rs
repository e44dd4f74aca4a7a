//! Fuzzes the node-to-node authentication handshake (`dynamo_rpc::auth`),
//! both sides of it, as they run on a fresh connection: the server side
//! reads a Hello and a Proof from a peer that has not authenticated yet; the
//! client side reads the Challenge and the Welcome of a server that has not
//! proved itself yet. The node runs `dynamo_rpc::fuzzing::{server,client}_handshake`
//! over an in-memory duplex on a current-thread runtime with paused time;
//! the fuzz input is everything the peer sends, after which the peer closes
//! its side and reads the node's replies until the node closes.
//!
//! Checks, beyond "never panics":
//! - Terminates: the handshake finishes once the peer's bytes run out (an
//!   hour of paused time would pass otherwise, and that fails the run).
//! - Never accepts a peer that did not prove the secret: the server
//!   accepts exactly when the peer's first frame is a valid Hello and its
//!   second a Proof equal to HMAC-SHA256 over the documented input,
//!   computed here independently; the client accepts exactly when the
//!   first frame is a valid Challenge whose server proof is right and the
//!   second a Welcome. The accepted name is the one the peer proved.
//! - The replies: the server sends a Challenge (with a correct proof over
//!   the peer's nonce) only after a valid Hello and a Welcome only on
//!   success, and a refusal carries the documented code (1 version, 2
//!   authentication, 3 malformed). The client sends its Hello first and
//!   its Proof only to a server whose proof verified: an impostor never
//!   gets it. Every reply frame has request id 0.
//! - Hello, Challenge and Proof payloads that decode re-encode to the same
//!   bytes (tried on the peer's frames and on the raw input).
//!
//! Input: byte 0 is the mode. Bit 0 picks the side the node plays: 0
//! server, 1 client. Bit 1 set: the harness repairs the proof in the peer's
//! bytes (the Proof frame after a valid Hello, or the server proof in a
//! valid Challenge) so that it is the correct one, and the fuzzer also
//! explores acceptance and what follows it. The rest is the peer's bytes.

#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use dynamo_rpc::auth::{
    Challenge, HandshakeError, Hello, MAX_HANDSHAKE_PAYLOAD_BYTES, NONCE_BYTES, PROOF_BYTES, Proof,
};
use dynamo_rpc::frame::{Frame, Kind, MAX_FRAME_BYTES, decode};
use dynamo_rpc::{ClusterSecret, NonceSource, PROTOCOL_VERSION, RpcConfig};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

/// The cluster secret of the node under test (the seeds are made with it).
const SECRET: &[u8] = b"dynamo-fuzz-cluster-secret";
/// The node's name when it plays the server.
const SERVER_NAME: &str = "fuzz-server";
/// The node's name when it plays the client.
const CLIENT_NAME: &str = "fuzz-client";
/// The node's nonce when it plays the server: fixed, so a seed can carry
/// the right client proof.
const SERVER_NONCE: [u8; NONCE_BYTES] = [0x5e; NONCE_BYTES];
/// The node's nonce when it plays the client.
const CLIENT_NONCE: [u8; NONCE_BYTES] = [0xc1; NONCE_BYTES];
/// Refusal codes on the wire (the `method` field of an `Error` frame).
const REFUSED_VERSION: u16 = 1;
const REFUSED_AUTH: u16 = 2;
const REFUSED_MALFORMED: u16 = 3;
/// Bytes in flight in each direction of the duplex.
const DUPLEX_BYTES: usize = 64 * 1024;
/// Paused time after which a handshake counts as hung.
const HANG: Duration = Duration::from_secs(3600);

/// Always the same nonce: the node's side of the transcript is fixed.
struct FixedNonce([u8; NONCE_BYTES]);

impl NonceSource for FixedNonce {
    fn nonce(&self) -> [u8; NONCE_BYTES] {
        self.0
    }
}

fn config(name: &str, nonce: [u8; NONCE_BYTES]) -> RpcConfig {
    let secret = ClusterSecret::new(SECRET).expect("long enough");
    RpcConfig::new(name, secret, Arc::new(FixedNonce(nonce))).expect("valid name")
}

/// One runtime for all runs: current-thread, time paused, so a hang turns
/// into an immediate timeout instead of a stuck fuzzer.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("runtime")
    })
}

/// HMAC-SHA256 keyed with the secret over
/// `label | version u16 | n1 | n2 | name length u8 | name` (the `auth`
/// module doc), written independently of the crate.
fn mac(label: &[u8], n1: &[u8; NONCE_BYTES], n2: &[u8; NONCE_BYTES], name: &str) -> [u8; PROOF_BYTES] {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).expect("any key length");
    mac.update(label);
    mac.update(&PROTOCOL_VERSION.to_be_bytes());
    mac.update(n1);
    mac.update(n2);
    mac.update(&[u8::try_from(name.len()).expect("names fit a byte")]);
    mac.update(name.as_bytes());
    mac.finalize().into_bytes().into()
}

fn server_proof(client_nonce: &[u8; NONCE_BYTES], server_nonce: &[u8; NONCE_BYTES], server: &str) -> [u8; PROOF_BYTES] {
    mac(b"dynamo-rpc server", client_nonce, server_nonce, server)
}

fn client_proof(server_nonce: &[u8; NONCE_BYTES], client_nonce: &[u8; NONCE_BYTES], client: &str) -> [u8; PROOF_BYTES] {
    mac(b"dynamo-rpc client", server_nonce, client_nonce, client)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, peer_bytes)) = data.split_first() else {
        return;
    };
    round_trips(peer_bytes);
    let as_client = mode & 1 == 1;
    let repair = mode & 2 == 2;
    let sent = match (as_client, repair) {
        (false, true) => repair_client_proof(peer_bytes),
        (true, true) => repair_server_proof(peer_bytes),
        (_, false) => peer_bytes.to_vec(),
    };
    let (peer_frames, _) = frames(&sent, MAX_HANDSHAKE_PAYLOAD_BYTES);
    for frame in &peer_frames {
        round_trips(&frame.payload);
    }
    let (result, reply_bytes) = run(as_client, sent);
    let (replies, reply_frame_bytes) = frames(&reply_bytes, MAX_FRAME_BYTES);
    assert_eq!(reply_frame_bytes, reply_bytes.len(), "the node sends whole, valid frames");
    assert!(replies.iter().all(|f| f.request_id == 0 && !f.more), "handshake frames have id 0 and one frame");
    if as_client {
        check_client(&peer_frames, &result, &replies);
    } else {
        check_server(&peer_frames, &result, &replies);
    }
});

/// Runs the node's side against a peer that sends `sent`, closes its
/// writing side and reads until the node closes. Returns the node's result
/// and every byte it sent.
fn run(as_client: bool, sent: Vec<u8>) -> (Result<String, HandshakeError>, Vec<u8>) {
    runtime().block_on(async move {
        let (node_end, mut peer_end) = tokio::io::duplex(DUPLEX_BYTES);
        let node = async {
            if as_client {
                dynamo_rpc::fuzzing::client_handshake(node_end, &config(CLIENT_NAME, CLIENT_NONCE)).await
            } else {
                dynamo_rpc::fuzzing::server_handshake(node_end, &config(SERVER_NAME, SERVER_NONCE)).await
            }
        };
        let peer = async {
            // The node may close first (it refused us); what it sent is
            // still read below.
            let _ = peer_end.write_all(&sent).await;
            let _ = peer_end.shutdown().await;
            let mut replies = Vec::new();
            let _ = peer_end.read_to_end(&mut replies).await;
            replies
        };
        let (result, replies) =
            tokio::time::timeout(HANG, async { tokio::join!(node, peer) }).await.expect("the handshake terminates");
        (result, replies)
    })
}

/// The frames at the front of `bytes`, up to the first that does not
/// decode (as the node's reader would see them, one after another), and
/// how many bytes they take.
fn frames(bytes: &[u8], limit: usize) -> (Vec<Frame>, usize) {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Ok(Some(frame)) = decode(&mut buf, limit) {
        out.push(frame);
    }
    (out, bytes.len() - buf.len())
}

/// `frames` encoded, then `tail`.
fn encode(frames: &[Frame], tail: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for frame in frames {
        frame.encode(&mut out);
    }
    out.extend_from_slice(tail);
    out.to_vec()
}

/// Server side: if the peer starts with a valid Hello and then a Proof
/// frame, gives the Proof the right payload for that Hello.
fn repair_client_proof(bytes: &[u8]) -> Vec<u8> {
    let (mut frames, consumed) = frames(bytes, MAX_HANDSHAKE_PAYLOAD_BYTES);
    if let [hello, proof, ..] = &mut frames[..]
        && hello.kind == Kind::Hello
        && proof.kind == Kind::Proof
        && let Ok(hello) = Hello::decode(&hello.payload)
    {
        let right = client_proof(&SERVER_NONCE, &hello.client_nonce, &hello.node_name);
        proof.payload = Bytes::copy_from_slice(&right);
        return encode(&frames, &bytes[consumed..]);
    }
    bytes.to_vec()
}

/// Client side: if the peer starts with a valid Challenge, gives it the
/// right server proof for our nonce.
fn repair_server_proof(bytes: &[u8]) -> Vec<u8> {
    let (mut frames, consumed) = frames(bytes, MAX_HANDSHAKE_PAYLOAD_BYTES);
    if let [first, ..] = &mut frames[..]
        && first.kind == Kind::Challenge
        && let Ok(mut challenge) = Challenge::decode(&first.payload)
    {
        challenge.server_proof = server_proof(&CLIENT_NONCE, &challenge.server_nonce, &challenge.server_name);
        first.payload = challenge.encode();
        return encode(&frames, &bytes[consumed..]);
    }
    bytes.to_vec()
}

/// Whatever decodes as a handshake message re-encodes to the same bytes.
fn round_trips(payload: &[u8]) {
    if let Ok(hello) = Hello::decode(payload) {
        assert_eq!(&hello.encode()[..], payload, "hello round trip");
    }
    if let Ok(challenge) = Challenge::decode(payload) {
        assert_eq!(&challenge.encode()[..], payload, "challenge round trip");
    }
    if let Ok(proof) = Proof::decode(payload) {
        assert_eq!(&proof.encode()[..], payload, "proof round trip");
    }
}

fn kinds(frames: &[Frame]) -> Vec<Kind> {
    frames.iter().map(|f| f.kind).collect()
}

fn refusal_code(replies: &[Frame]) -> Option<u16> {
    replies.last().filter(|f| f.kind == Kind::Error).map(|f| f.method)
}

/// The node played the server; `peer` is what the unauthenticated client
/// sent, `replies` what the node answered.
fn check_server(peer: &[Frame], result: &Result<String, HandshakeError>, replies: &[Frame]) {
    let hello = peer.first().filter(|f| f.kind == Kind::Hello).and_then(|f| Hello::decode(&f.payload).ok());
    let proved = match (&hello, peer.get(1)) {
        (Some(hello), Some(proof)) => {
            proof.kind == Kind::Proof
                && proof.payload[..] == client_proof(&SERVER_NONCE, &hello.client_nonce, &hello.node_name)
        }
        _ => false,
    };
    match result {
        Ok(name) => {
            assert!(proved, "accepted a client that did not prove the secret");
            assert_eq!(Some(name), hello.as_ref().map(|h| &h.node_name), "accepted under the proved name");
            assert_eq!(kinds(replies), [Kind::Challenge, Kind::Welcome]);
        }
        Err(e) => {
            assert!(!proved, "refused a client that proved the secret: {e}");
            assert!(!matches!(e, HandshakeError::Io(_)), "the duplex does not fail: {e}");
            assert!(!kinds(replies).contains(&Kind::Welcome), "welcomed a refused client");
        }
    }
    match (&hello, replies.first()) {
        (Some(hello), Some(first)) if first.kind == Kind::Challenge => {
            let challenge = Challenge::decode(&first.payload).expect("our challenge decodes");
            assert_eq!(challenge.server_name, SERVER_NAME);
            assert_eq!(challenge.server_nonce, SERVER_NONCE);
            assert_eq!(challenge.server_proof, server_proof(&hello.client_nonce, &SERVER_NONCE, SERVER_NAME));
        }
        (None, Some(first)) => assert_ne!(first.kind, Kind::Challenge, "challenged a client without a valid hello"),
        _ => {}
    }
    match result {
        Err(HandshakeError::BadProof) => assert_eq!(refusal_code(replies), Some(REFUSED_AUTH)),
        Err(HandshakeError::Version { .. }) => assert_eq!(refusal_code(replies), Some(REFUSED_VERSION)),
        Err(HandshakeError::Malformed { what: "hello", .. }) => {
            assert_eq!(refusal_code(replies), Some(REFUSED_MALFORMED))
        }
        _ => {}
    }
}

/// The node played the client; `peer` is what the unauthenticated server
/// sent, `replies` what the node sent it.
fn check_client(peer: &[Frame], result: &Result<String, HandshakeError>, replies: &[Frame]) {
    let first = replies.first().expect("the client always sends its hello");
    assert_eq!(first.kind, Kind::Hello);
    let hello = Hello::decode(&first.payload).expect("our hello decodes");
    assert_eq!((hello.node_name.as_str(), hello.client_nonce), (CLIENT_NAME, CLIENT_NONCE));
    let challenge = peer.first().filter(|f| f.kind == Kind::Challenge).and_then(|f| Challenge::decode(&f.payload).ok());
    let server_proved = challenge
        .as_ref()
        .is_some_and(|c| c.server_proof == server_proof(&CLIENT_NONCE, &c.server_nonce, &c.server_name));
    let welcomed = peer.get(1).is_some_and(|f| f.kind == Kind::Welcome);
    match result {
        Ok(name) => {
            assert!(server_proved && welcomed, "accepted a server that did not prove the secret");
            assert_eq!(Some(name), challenge.as_ref().map(|c| &c.server_name), "accepted under the proved name");
        }
        Err(e) => {
            assert!(!(server_proved && welcomed), "refused a server that proved the secret: {e}");
            assert!(!matches!(e, HandshakeError::Io(_)), "the duplex does not fail: {e}");
        }
    }
    match replies.get(1) {
        Some(proof) if proof.kind == Kind::Proof => {
            assert!(server_proved, "sent our proof to a server that did not prove the secret");
            let challenge = challenge.as_ref().expect("proved");
            assert_eq!(proof.payload[..], client_proof(&challenge.server_nonce, &CLIENT_NONCE, CLIENT_NAME));
            assert_eq!(replies.len(), 2, "nothing after the proof");
        }
        Some(other) => {
            assert_eq!(other.kind, Kind::Error, "after the hello, a proof or a refusal");
            assert!(!server_proved, "refused a server that proved the secret");
            assert_eq!(other.method, REFUSED_AUTH);
            assert_eq!(replies.len(), 2);
        }
        None => assert!(!server_proved, "no proof sent to a server that proved the secret"),
    }
    if matches!(result, Err(HandshakeError::BadProof)) {
        assert_eq!(refusal_code(replies), Some(REFUSED_AUTH));
    }
}
