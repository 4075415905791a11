//! Everything that can go wrong talking to DingTalk, as one enum whose messages say what
//! happened and, for the operator's mistakes, what to fix. Also the errcode → error mapping.

use std::time::Duration;

/// A failed DingTalk call. Messages never contain secrets (tokens, app secret, codes).
#[derive(Clone, Debug, thiserror::Error)]
pub enum DingTalkError {
    /// 40078 / `invalidCode`: the login code is unknown, expired or used.
    #[error("the DingTalk login code is invalid, expired or already used; log in again")]
    InvalidCode,
    /// 60121, an external contact, or no userid: not a member of this corp.
    #[error("this DingTalk account is not a member of the organisation")]
    NotInCorp,
    /// 40096/40089/`invalidClientIdOrSecret`: the configured app key or secret is wrong.
    #[error("DingTalk rejected the app credentials ({errmsg}); check dingtalk.app_key and dingtalk.app_secret")]
    BadCredentials {
        /// DingTalk's message.
        errmsg: String,
    },
    /// 60011: the app lacks an API permission.
    #[error("the DingTalk app lacks an API permission ({errmsg}); add it in the DingTalk developer console (通讯录 / 手机号 permissions)")]
    MissingPermission {
        /// DingTalk's message.
        errmsg: String,
    },
    /// 60020: this server's IP is not whitelisted for the app.
    #[error("this server's IP address is not in the DingTalk app's whitelist ({errmsg}); add it in the developer console")]
    IpNotWhitelisted {
        /// DingTalk's message.
        errmsg: String,
    },
    /// 90018, 90002, 9000x bans, 90020, 429, or the IP-ban page.
    #[error("DingTalk is rate-limiting this app; retry in {} s", retry_after.as_secs().max(1))]
    RateLimited {
        /// How long to wait.
        retry_after: Duration,
    },
    /// -1 (系统繁忙) after retries, or a 5xx.
    #[error("DingTalk is busy; try again shortly")]
    Busy,
    /// The app token was still rejected after fetching a new one.
    #[error("DingTalk rejected the app access token even after fetching a new one")]
    TokenRejected,
    /// Any other oapi errcode.
    #[error("DingTalk error {errcode}: {errmsg}")]
    Api {
        /// The errcode.
        errcode: i64,
        /// DingTalk's message.
        errmsg: String,
    },
    /// Any other new-API error.
    #[error("DingTalk error (HTTP {status}, {code}): {message}")]
    NewApi {
        /// HTTP status.
        status: u16,
        /// The `code` field.
        code: String,
        /// The `message` field.
        message: String,
    },
    /// No answer within `dingtalk.timeout`.
    #[error("DingTalk did not answer in time")]
    Timeout,
    /// Connecting or reading failed.
    #[error("cannot reach DingTalk: {0}")]
    Network(String),
    /// An answer we could not understand (not JSON, wrong shape).
    #[error("unexpected answer from DingTalk: {0}")]
    BadResponse(String),
}

impl DingTalkError {
    /// The errcode for metrics: DingTalk's own when the error has one, else a short word.
    pub fn errcode_label(&self) -> String {
        match self {
            DingTalkError::Api { errcode, .. } => errcode.to_string(),
            DingTalkError::NewApi { code, .. } if !code.is_empty() => {
                code.chars().take(48).collect()
            }
            DingTalkError::NewApi { status, .. } => format!("http_{status}"),
            DingTalkError::InvalidCode => "invalid_code".into(),
            DingTalkError::NotInCorp => "not_in_corp".into(),
            DingTalkError::BadCredentials { .. } => "bad_credentials".into(),
            DingTalkError::MissingPermission { .. } => "60011".into(),
            DingTalkError::IpNotWhitelisted { .. } => "60020".into(),
            DingTalkError::RateLimited { .. } => "rate_limited".into(),
            DingTalkError::Busy => "busy".into(),
            DingTalkError::TokenRejected => "token_rejected".into(),
            DingTalkError::Timeout => "timeout".into(),
            DingTalkError::Network(_) => "network".into(),
            DingTalkError::BadResponse(_) => "bad_response".into(),
        }
    }

    /// DingTalk's own words for the error (`errmsg`, or the new API's `message`), when the
    /// answer carried them: what `doctor` shows and searches for the IP or permission named.
    pub fn dingtalk_message(&self) -> Option<&str> {
        match self {
            DingTalkError::BadCredentials { errmsg }
            | DingTalkError::MissingPermission { errmsg }
            | DingTalkError::IpNotWhitelisted { errmsg }
            | DingTalkError::Api { errmsg, .. } => Some(errmsg),
            DingTalkError::NewApi { message, .. } => Some(message),
            _ => None,
        }
        .filter(|m| !m.is_empty())
        .map(String::as_str)
    }

    /// The HTTP status the proxy answers with when a login fails with this error.
    pub fn status(&self) -> u16 {
        match self {
            DingTalkError::InvalidCode => 400,
            DingTalkError::NotInCorp => 403,
            DingTalkError::RateLimited { .. } | DingTalkError::Busy => 503,
            DingTalkError::Timeout => 504,
            _ => 502,
        }
    }

    /// `Retry-After` for 503 answers.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DingTalkError::RateLimited { retry_after } => Some(*retry_after),
            DingTalkError::Busy => Some(Duration::from_secs(5)),
            _ => None,
        }
    }

    /// A short message for the user, in Chinese (the English one is the `Display` text).
    pub fn message_zh(&self) -> &'static str {
        match self {
            DingTalkError::InvalidCode => "登录授权码无效、已过期或已被使用，请重新登录。",
            DingTalkError::NotInCorp => "您不是本企业（组织）的成员，无法访问此应用。",
            DingTalkError::BadCredentials { .. } => {
                "钉钉应用凭证（AppKey/AppSecret）无效，请联系管理员检查配置。"
            }
            DingTalkError::MissingPermission { .. } => {
                "钉钉应用缺少接口权限，请联系管理员在开发者后台开通。"
            }
            DingTalkError::IpNotWhitelisted { .. } => {
                "服务器 IP 不在钉钉应用的白名单中，请联系管理员添加。"
            }
            DingTalkError::RateLimited { .. } => "钉钉接口调用过于频繁，请稍后再试。",
            DingTalkError::Busy => "钉钉系统繁忙，请稍后再试。",
            DingTalkError::Timeout => "连接钉钉超时，请稍后再试。",
            _ => "与钉钉通信失败，请稍后再试或联系管理员。",
        }
    }

    /// A reqwest failure, without its URL (the query string carries tokens and secrets).
    pub(crate) fn from_reqwest(e: reqwest::Error) -> DingTalkError {
        if e.is_timeout() {
            DingTalkError::Timeout
        } else if e.is_body() || e.is_decode() {
            // DingTalk was reached; its answer broke off (truncated, connection reset).
            DingTalkError::BadResponse("the answer broke off before it was complete".into())
        } else {
            DingTalkError::Network(e.without_url().to_string())
        }
    }
}

/// The oapi errcodes that mean "the access token is bad": drop it, refetch, retry once.
pub(crate) fn is_token_errcode(errcode: i64) -> bool {
    matches!(errcode, 40014 | 42001 | 40001 | 33001)
}

/// Maps a non-zero oapi errcode to an error (token errors are handled before this).
pub(crate) fn from_errcode(errcode: i64, errmsg: &str) -> DingTalkError {
    let errmsg = errmsg.to_string();
    match errcode {
        40078 => DingTalkError::InvalidCode,
        60121 => DingTalkError::NotInCorp,
        40096 | 40089 => DingTalkError::BadCredentials { errmsg },
        60011 => DingTalkError::MissingPermission { errmsg },
        60020 => DingTalkError::IpNotWhitelisted { errmsg },
        -1 => DingTalkError::Busy,
        90018 | 90002 => DingTalkError::RateLimited {
            retry_after: Duration::from_secs(1),
        },
        90001 | 90003..=90014 => DingTalkError::RateLimited {
            retry_after: Duration::from_secs(300),
        },
        90020 => DingTalkError::RateLimited {
            retry_after: Duration::from_secs(3600),
        },
        _ => DingTalkError::Api { errcode, errmsg },
    }
}

/// Maps a new-API (api.dingtalk.com) error answer.
pub(crate) fn from_new_api(status: u16, code: &str, message: &str) -> DingTalkError {
    match code {
        "invalidClientIdOrSecret" => DingTalkError::BadCredentials {
            errmsg: message.to_string(),
        },
        "invalidCode" => DingTalkError::InvalidCode,
        "invalidParameter.user.notFound" => DingTalkError::NotInCorp,
        c if c.ends_with("AccessTokenPermissionDenied") => DingTalkError::MissingPermission {
            errmsg: message.to_string(),
        },
        c if c.ends_with("IpNotInWhiteList") => DingTalkError::IpNotWhitelisted {
            errmsg: message.to_string(),
        },
        c if c.contains("QpsLimit") || c == "system.busy" || status == 429 => {
            DingTalkError::RateLimited {
                retry_after: Duration::from_secs(1),
            }
        }
        _ if status >= 500 => DingTalkError::Busy,
        _ => DingTalkError::NewApi {
            status,
            code: code.to_string(),
            message: message.to_string(),
        },
    }
}
