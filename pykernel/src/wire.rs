//! Jupyter's wire protocol over ZeroMQ (messaging 5.3): a message is the
//! routing identities, the `<IDS|MSG>` delimiter, an HMAC-SHA256 signature
//! of the four JSON parts, the header, parent header, metadata and content,
//! then binary buffers. Every message from the kernel is checked against
//! the kernel's key; one with a wrong signature is dropped.

use bytes::Bytes;
use serde_json::{json, Value};
use zeromq::ZmqMessage;

use crate::Error;

const DELIMITER: &[u8] = b"<IDS|MSG>";

/// One Jupyter message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `header` (msg_id, msg_type, session, username, date, version).
    pub header: Value,
    /// The header of the message this answers, or `{}`.
    pub parent_header: Value,
    /// Free-form metadata.
    pub metadata: Value,
    /// The message's content.
    pub content: Value,
    /// Binary buffers (widgets, arrays).
    pub buffers: Vec<Bytes>,
}

impl Message {
    /// `header.msg_type`.
    pub fn msg_type(&self) -> &str {
        self.header
            .get("msg_type")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// `header.msg_id`.
    pub fn msg_id(&self) -> &str {
        self.header
            .get("msg_id")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// A new message of `msg_type` in `session`, answering `parent`.
    pub fn new(msg_type: &str, session: &str, parent: Value, content: Value) -> Message {
        Message {
            header: json!({
                "msg_id": uuid::Uuid::new_v4().to_string(),
                "msg_type": msg_type,
                "username": "tarn",
                "session": session,
                "date": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                "version": "5.3",
            }),
            parent_header: parent,
            metadata: json!({}),
            content,
            buffers: Vec::new(),
        }
    }
}

/// The key messages are signed with (an empty key: unsigned).
#[derive(Clone)]
pub struct Key(Option<ring::hmac::Key>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(…)")
    }
}

impl Key {
    /// The kernel's `key` from its connection file (hmac-sha256).
    pub fn new(key: &str) -> Key {
        Key((!key.is_empty())
            .then(|| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes())))
    }

    fn sign(&self, parts: &[&[u8]]) -> String {
        let Some(key) = &self.0 else {
            return String::new();
        };
        let mut ctx = ring::hmac::Context::with_key(key);
        for p in parts {
            ctx.update(p);
        }
        hex(ctx.sign().as_ref())
    }

    fn verify(&self, signature: &[u8], parts: &[&[u8]]) -> bool {
        let Some(key) = &self.0 else {
            return true;
        };
        let Some(sig) = unhex(signature) else {
            return false;
        };
        let joined: Vec<u8> = parts.concat();
        ring::hmac::verify(key, &joined, &sig).is_ok()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok())
        .collect()
}

/// The frames of `msg`, signed with `key`, after `identities`.
pub fn encode(key: &Key, identities: &[Bytes], msg: &Message) -> ZmqMessage {
    let parts: [Vec<u8>; 4] = [
        serde_json::to_vec(&msg.header).unwrap_or_default(),
        serde_json::to_vec(&msg.parent_header).unwrap_or_default(),
        serde_json::to_vec(&msg.metadata).unwrap_or_default(),
        serde_json::to_vec(&msg.content).unwrap_or_default(),
    ];
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let signature = key.sign(&refs);
    let mut frames: Vec<Bytes> = identities.to_vec();
    frames.push(Bytes::from_static(DELIMITER));
    frames.push(Bytes::from(signature));
    frames.extend(parts.into_iter().map(Bytes::from));
    frames.extend(msg.buffers.iter().cloned());
    ZmqMessage::try_from(frames).expect("a message has frames")
}

/// The message in `frames`, its signature checked with `key`.
pub fn decode(key: &Key, frames: ZmqMessage) -> Result<(Vec<Bytes>, Message), Error> {
    let frames = frames.into_vec();
    let at = frames
        .iter()
        .position(|f| f.as_ref() == DELIMITER)
        .ok_or_else(|| Error::Wire("no <IDS|MSG> delimiter".into()))?;
    let (ids, rest) = frames.split_at(at);
    if rest.len() < 6 {
        return Err(Error::Wire(format!(
            "{} frames after the delimiter",
            rest.len()
        )));
    }
    let parts: Vec<&[u8]> = rest[2..6].iter().map(|b| b.as_ref()).collect();
    if !key.verify(&rest[1], &parts) {
        return Err(Error::Wire("bad signature".into()));
    }
    let json = |b: &[u8]| -> Result<Value, Error> {
        serde_json::from_slice(b).map_err(|e| Error::Wire(format!("a part is not JSON: {e}")))
    };
    Ok((
        ids.to_vec(),
        Message {
            header: json(parts[0])?,
            parent_header: json(parts[1])?,
            metadata: json(parts[2])?,
            content: json(parts[3])?,
            buffers: rest[6..].to_vec(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_forgeries_are_refused() {
        let key = Key::new("s3cret");
        let msg = Message::new("execute_request", "s", json!({}), json!({"code": "1+1"}));
        let frames = encode(&key, &[Bytes::from_static(b"id")], &msg);
        let (ids, back) = decode(&key, frames.clone()).unwrap();
        assert_eq!(ids, vec![Bytes::from_static(b"id")]);
        assert_eq!(back, msg);
        // The same frames checked with another key are refused.
        assert!(decode(&Key::new("other"), frames.clone()).is_err());
        // As is a message whose content was changed after signing.
        let mut v = frames.into_vec();
        let n = v.len();
        v[n - 1] = Bytes::from_static(br#"{"code":"import os"}"#);
        assert!(decode(&key, ZmqMessage::try_from(v).unwrap()).is_err());
    }

    #[test]
    fn the_signature_is_the_one_jupyter_computes() {
        // hmac-sha256 over header|parent|metadata|content, hex: the value
        // Python's hmac.new(b"k", b"{}{}{}{}", sha256).hexdigest() gives.
        let key = Key::new("k");
        let sig = key.sign(&[b"{}", b"{}", b"{}", b"{}"]);
        assert_eq!(
            sig,
            "6f7c3dea506a2fb840fc9377d65462646f8e8df4acfafa710cf0c50bb2db8de2"
        );
    }
}
