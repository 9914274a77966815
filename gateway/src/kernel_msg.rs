//! Decoding a Jupyter message (messaging 5.3) from a websocket text frame.
//!
//! Whatever a client sends, the answer is a decoded message or a coded
//! error to show it (TARN-2805), never a panic: the frame comes from the
//! network, and one bad frame must not cost the kernel.

use serde_json::{json, Value};
use tarn_common::{ErrorCode, TarnError};

/// A message the kernel can act on.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The whole message (replies name its header as their parent).
    pub msg: Value,
    /// `header.msg_type`, never empty.
    pub msg_type: String,
    /// `channel`, `shell` when absent.
    pub channel: String,
    /// `content`, `{}` when absent.
    pub content: Value,
}

/// A frame that is not a usable message: the error to send, and the
/// parent to send it under (the message itself when it parsed).
#[derive(Debug, Clone)]
pub struct Refused {
    /// What is wrong (always INVALID_ARGUMENT).
    pub error: TarnError,
    /// The message as parsed, or `{}`.
    pub parent: Value,
}

fn refuse(message: &str, parent: Value) -> Refused {
    Refused {
        error: TarnError::new(ErrorCode::InvalidArgument, message.to_string()).with_fix(
            "send Jupyter messages (header, parent_header, metadata, content, channel) as JSON",
        ),
        parent,
    }
}

/// Decodes one text frame.
pub fn decode(text: &str) -> Result<Decoded, Refused> {
    let msg = match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) | Err(_) => {
            return Err(refuse(
                "a websocket frame is not a JSON Jupyter message",
                json!({}),
            ))
        }
    };
    // A header that is not an object cannot be a reply's parent header.
    let msg_type = match msg.get("header") {
        Some(Value::Object(h)) => h.get("msg_type").and_then(Value::as_str).unwrap_or(""),
        Some(_) => return Err(refuse("the message's header is not an object", json!({}))),
        None => "",
    }
    .to_string();
    if msg_type.is_empty() {
        return Err(refuse("the message has no header.msg_type", msg));
    }
    let channel = match msg.get("channel") {
        None | Some(Value::Null) => "shell".to_string(),
        Some(Value::String(c)) => c.clone(),
        Some(_) => return Err(refuse("the message's channel is not a string", msg)),
    };
    let content = match msg.get("content") {
        None | Some(Value::Null) => json!({}),
        Some(c @ Value::Object(_)) => c.clone(),
        Some(_) => return Err(refuse("the message's content is not an object", msg)),
    };
    Ok(Decoded {
        msg,
        msg_type,
        channel,
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn message(msg_type: &str, content: Value) -> String {
        json!({
            "header": {"msg_id": "1", "msg_type": msg_type, "session": "s",
                       "username": "u", "date": "", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "content": content,
            "channel": "shell", "buffers": [],
        })
        .to_string()
    }

    #[test]
    fn a_jupyter_message_decodes_and_bad_ones_are_coded() {
        let d = decode(&message("execute_request", json!({"code": "SELECT 1"}))).unwrap();
        assert_eq!(d.msg_type, "execute_request");
        assert_eq!(d.channel, "shell");
        assert_eq!(d.content["code"], "SELECT 1");
        for bad in [
            "",
            "not json",
            "[]",
            "42",
            r#"{"header": 5}"#,
            r#"{"header": {}}"#,
            r#"{"header": {"msg_type": 7}}"#,
            r#"{"header": {"msg_type": "x"}, "channel": 1}"#,
            r#"{"header": {"msg_type": "x"}, "content": "code"}"#,
        ] {
            let e = decode(bad).unwrap_err();
            assert_eq!(e.error.code, ErrorCode::InvalidArgument, "{bad}");
        }
    }

    /// Values of any JSON shape, a few levels deep.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(".{0,8}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,200}") {
            if let Err(e) = decode(&text) {
                prop_assert_eq!(e.error.code, ErrorCode::InvalidArgument);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let text = String::from_utf8_lossy(&bytes);
            if let Err(e) = decode(&text) {
                prop_assert_eq!(e.error.code, ErrorCode::InvalidArgument);
            }
        }

        /// Real messages with one part replaced by anything: either a
        /// usable message or a coded refusal.
        #[test]
        fn near_valid_messages_decode_or_are_coded(
            part in prop_oneof![Just("header"), Just("content"), Just("channel"),
                                Just("msg_type"), Just("parent_header")],
            value in any_json(),
            msg_type in "[a-z_]{0,20}",
        ) {
            let mut m: Value = serde_json::from_str(&message(&msg_type, json!({"code": "SELECT 1"}))).unwrap();
            if part == "msg_type" {
                m["header"]["msg_type"] = value;
            } else {
                m[part] = value;
            }
            match decode(&m.to_string()) {
                Ok(d) => {
                    prop_assert!(!d.msg_type.is_empty());
                    prop_assert!(d.content.is_object());
                }
                Err(e) => prop_assert_eq!(e.error.code, ErrorCode::InvalidArgument),
            }
        }
    }
}
