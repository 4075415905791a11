//! dingtalk-auth-proxy: DingTalk (钉钉) login in front of any intranet web app.

pub mod config;
#[cfg(feature = "fake")]
pub mod fake;
