//! DingTalk answers: first 2 bytes are the HTTP status (mod 600), the rest the body.
//! `parse_oapi` and `parse_user` (both APIs) must never panic, whatever the bytes.
#![no_main]

use dingtalk_auth_proxy::config::UserApi;
use dingtalk_auth_proxy::dingtalk::{parse_oapi, parse_user};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((head, body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let status = u16::from_be_bytes(*head) % 600;

    if let Ok(value) = parse_oapi("/topapi/v2/user/get", status, body) {
        let _ = parse_user(UserApi::V2, value.clone());
        let _ = parse_user(UserApi::Legacy, value);
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let _ = parse_user(UserApi::V2, value.clone());
        let _ = parse_user(UserApi::Legacy, value);
    }
});
