//! The DingTalk server-API client: app token (`gettoken` or `/v1.0/oauth2/accessToken`),
//! the in-app code exchange (`getuserinfo` → user details, legacy GET or `topapi/v2` POST),
//! the browser OAuth exchange (`userAccessToken` → `users/me` → `getbyunionid` → details),
//! with token refetch on token errors, bounded retries on "busy", and typed errors.
//!
//! One `reqwest::Client` (rustls) and one token cache per [`DingTalk`] value; clone it freely.

mod error;
mod token;
mod user;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

pub use error::DingTalkError;
pub use user::User;

use crate::config::{DingTalkConfig, TokenApi, UserApi};
use crate::metrics::Metrics;
use error::{from_errcode, from_new_api, is_token_errcode};
use token::TokenCache;
use user::{str_field, LegacyUser, V2User};

/// How often "system busy" (-1) is retried before giving up.
const BUSY_RETRIES: u32 = 2;

/// The DingTalk client. Cheap to clone; the token cache is shared by the clones.
#[derive(Clone)]
pub struct DingTalk {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    app_key: String,
    app_secret: String,
    corp_id: String,
    api_base: String,
    new_api_base: String,
    login_base: url::Url,
    user_api: UserApi,
    token_api: TokenApi,
    token: TokenCache,
    metrics: Option<Arc<Metrics>>,
}

/// An HTTP method for oapi calls.
#[derive(Clone, Copy)]
enum Call<'a> {
    Get(&'a [(&'a str, &'a str)]),
    Post(&'a Value),
}

impl DingTalk {
    /// Builds the client; no network I/O.
    pub fn new(cfg: &DingTalkConfig) -> Result<DingTalk, DingTalkError> {
        DingTalk::with_metrics(cfg, None)
    }

    /// [`DingTalk::new`], counting every call by endpoint and errcode in `metrics`.
    pub fn with_metrics(
        cfg: &DingTalkConfig,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<DingTalk, DingTalkError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .user_agent(concat!("dingtalk-auth-proxy/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(DingTalkError::from_reqwest)?;
        Ok(DingTalk {
            inner: Arc::new(Inner {
                http,
                app_key: cfg.app_key.clone(),
                app_secret: cfg.app_secret.expose().to_string(),
                corp_id: cfg.corp_id.clone(),
                api_base: cfg.api_base.as_str().trim_end_matches('/').to_string(),
                new_api_base: cfg.new_api_base.as_str().trim_end_matches('/').to_string(),
                login_base: cfg.login_base.clone(),
                user_api: cfg.user_api,
                token_api: cfg.token_api,
                token: TokenCache::default(),
                metrics,
            }),
        })
    }

    /// DingTalk's OAuth (QR) login page for a browser login: back to `redirect_uri` with
    /// `authCode` and this `state`; `corpId` preselects our organisation.
    pub fn oauth_url(&self, redirect_uri: &str, state: &str) -> String {
        let i = &self.inner;
        let mut url = i.login_base.clone();
        let path = format!("{}/oauth2/auth", i.login_base.path().trim_end_matches('/'));
        url.set_path(&path);
        url.query_pairs_mut()
            .clear()
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("response_type", "code")
            .append_pair("client_id", &i.app_key)
            .append_pair("scope", "openid")
            .append_pair("state", state)
            .append_pair("prompt", "consent")
            .append_pair("corpId", &i.corp_id);
        url.into()
    }

    /// The cached app access token, fetched when needed.
    pub async fn app_token(&self) -> Result<String, DingTalkError> {
        Ok(self.token().await?.to_string())
    }

    /// In-app (免登) code → the full user: `getuserinfo` → user details.
    pub async fn user_by_code(&self, code: &str) -> Result<User, DingTalkError> {
        let info = match self.inner.user_api {
            UserApi::V2 => {
                let body = json!({ "code": code });
                let v = self
                    .oapi("/topapi/v2/user/getuserinfo", Call::Post(&body))
                    .await?;
                v.get("result").cloned().unwrap_or(Value::Null)
            }
            UserApi::Legacy => {
                self.oapi("/user/getuserinfo", Call::Get(&[("code", code)]))
                    .await?
            }
        };
        let userid = str_field(&info, "userid")
            .ok_or_else(|| DingTalkError::BadResponse("getuserinfo answer has no userid".into()))?;
        self.user_details(&userid).await
    }

    /// Browser OAuth `authCode` → the full user, via the user's token and their unionId.
    pub async fn user_by_auth_code(&self, auth_code: &str) -> Result<User, DingTalkError> {
        let body = json!({
            "clientId": self.inner.app_key,
            "clientSecret": self.inner.app_secret,
            "code": auth_code,
            "grantType": "authorization_code",
        });
        let tok = self
            .new_api(
                reqwest::Method::POST,
                "/v1.0/oauth2/userAccessToken",
                Some(&body),
                None,
            )
            .await?;
        let user_token = str_field(&tok, "accessToken").ok_or_else(|| {
            DingTalkError::BadResponse("userAccessToken answer has no accessToken".into())
        })?;
        if let Some(corp) = str_field(&tok, "corpId") {
            if !self.inner.corp_id.is_empty() && corp != self.inner.corp_id {
                tracing::info!("browser login from another organisation refused");
                return Err(DingTalkError::NotInCorp);
            }
        }
        let me = self
            .new_api(
                reqwest::Method::GET,
                "/v1.0/contact/users/me",
                None,
                Some(&user_token),
            )
            .await?;
        let unionid = str_field(&me, "unionId")
            .ok_or_else(|| DingTalkError::BadResponse("users/me answer has no unionId".into()))?;
        let userid = self.userid_by_unionid(&unionid).await?;
        let mut user = self.user_details(&userid).await?;
        if user.unionid.is_none() {
            user.unionid = Some(unionid);
        }
        Ok(user)
    }

    /// The userid of the organisation member with this unionid (`topapi/user/getbyunionid`);
    /// an external contact or someone outside the organisation is [`DingTalkError::NotInCorp`].
    pub async fn userid_by_unionid(&self, unionid: &str) -> Result<String, DingTalkError> {
        let body = json!({ "unionid": unionid });
        let v = self
            .oapi("/topapi/user/getbyunionid", Call::Post(&body))
            .await?;
        let result = v.get("result").cloned().unwrap_or(Value::Null);
        if result.get("contact_type").and_then(Value::as_i64) == Some(1) {
            return Err(DingTalkError::NotInCorp);
        }
        str_field(&result, "userid").ok_or(DingTalkError::NotInCorp)
    }

    /// The user's details by userid (`user/get`, legacy or v2).
    pub async fn user_details(&self, userid: &str) -> Result<User, DingTalkError> {
        let user = match self.inner.user_api {
            UserApi::V2 => {
                let body = json!({ "userid": userid, "language": "zh_CN" });
                let v = self.oapi("/topapi/v2/user/get", Call::Post(&body)).await?;
                parse_user(UserApi::V2, v)?
            }
            UserApi::Legacy => {
                let v = self
                    .oapi(
                        "/user/get",
                        Call::Get(&[("userid", userid), ("lang", "zh_CN")]),
                    )
                    .await?;
                parse_user(UserApi::Legacy, v)?
            }
        };
        Ok(user)
    }

    async fn token(&self) -> Result<Arc<str>, DingTalkError> {
        self.inner.token.get(|| self.fetch_token()).await
    }

    /// Asks DingTalk for a new app token: (token, lifetime).
    async fn fetch_token(&self) -> Result<(String, Duration), DingTalkError> {
        let inner = &self.inner;
        tracing::debug!(api = ?inner.token_api, "fetching the app access token");
        let (token, expires) = match inner.token_api {
            TokenApi::Gettoken => {
                let url = format!("{}/gettoken", inner.api_base);
                let req = inner.http.get(url).query(&[
                    ("appkey", inner.app_key.as_str()),
                    ("appsecret", inner.app_secret.as_str()),
                ]);
                let answer = oapi_answer("/gettoken", req).await;
                self.count("/gettoken", &answer);
                let v = answer.map_err(|f| match f {
                    Failure::Token => DingTalkError::TokenRejected,
                    Failure::Error(e) => e,
                })?;
                (
                    str_field(&v, "access_token"),
                    v.get("expires_in").and_then(Value::as_u64),
                )
            }
            TokenApi::V1 => {
                let body = json!({ "appKey": inner.app_key, "appSecret": inner.app_secret });
                let v = self
                    .new_api(
                        reqwest::Method::POST,
                        "/v1.0/oauth2/accessToken",
                        Some(&body),
                        None,
                    )
                    .await?;
                (
                    str_field(&v, "accessToken"),
                    v.get("expireIn").and_then(Value::as_u64),
                )
            }
        };
        let token =
            token.ok_or_else(|| DingTalkError::BadResponse("token answer has no token".into()))?;
        Ok((token, Duration::from_secs(expires.unwrap_or(7200).max(60))))
    }

    /// An oapi call with the app token: refetches the token once on a token error and retries
    /// "system busy" a bounded number of times.
    async fn oapi(&self, path: &str, call: Call<'_>) -> Result<Value, DingTalkError> {
        let url = format!("{}{}", self.inner.api_base, path);
        let mut token_retried = false;
        let mut busy = 0;
        loop {
            let token = self.token().await?;
            let req = match call {
                Call::Get(query) => self
                    .inner
                    .http
                    .get(&url)
                    .query(&[("access_token", &*token)])
                    .query(query),
                Call::Post(body) => self
                    .inner
                    .http
                    .post(&url)
                    .query(&[("access_token", &*token)])
                    .json(body),
            };
            let answer = oapi_answer(path, req).await;
            self.count(path, &answer);
            match answer {
                Err(Failure::Token) if !token_retried => {
                    tracing::info!(path, "DingTalk rejected the app token; fetching a new one");
                    token_retried = true;
                    self.inner.token.invalidate(&token);
                }
                Err(Failure::Token) => return Err(DingTalkError::TokenRejected),
                Err(Failure::Error(DingTalkError::Busy)) if busy < BUSY_RETRIES => {
                    busy += 1;
                    tokio::time::sleep(Duration::from_millis(100 * 2u64.pow(busy))).await;
                }
                Err(Failure::Error(e)) => return Err(e),
                Ok(v) => return Ok(v),
            }
        }
    }

    /// Counts one oapi answer.
    fn count(&self, path: &str, answer: &Result<Value, Failure>) {
        self.count_call(path, || match answer {
            Ok(_) => "0".to_string(),
            Err(Failure::Token) => "token_invalid".to_string(),
            Err(Failure::Error(e)) => e.errcode_label(),
        });
    }

    /// Counts one call to `path` answered with `errcode()` (computed only when counting).
    fn count_call(&self, path: &str, errcode: impl FnOnce() -> String) {
        if let Some(m) = &self.inner.metrics {
            m.dingtalk_call(path, errcode());
        }
    }

    /// A call to the new API (api.dingtalk.com), counted; `user_token` goes in
    /// `x-acs-dingtalk-access-token`.
    async fn new_api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        user_token: Option<&str>,
    ) -> Result<Value, DingTalkError> {
        let answer = self.new_api_call(method, path, body, user_token).await;
        self.count_call(path, || match &answer {
            Ok(_) => "0".to_string(),
            Err(e) => e.errcode_label(),
        });
        answer
    }

    async fn new_api_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        user_token: Option<&str>,
    ) -> Result<Value, DingTalkError> {
        let url = format!("{}{}", self.inner.new_api_base, path);
        let mut req = self.inner.http.request(method, url);
        if let Some(body) = body {
            req = req.json(body);
        }
        if let Some(t) = user_token {
            req = req.header("x-acs-dingtalk-access-token", t);
        }
        let resp = req.send().await.map_err(DingTalkError::from_reqwest)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(DingTalkError::from_reqwest)?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| {
            if status == 429 || status >= 500 {
                from_new_api(status, "", "")
            } else {
                DingTalkError::BadResponse(format!("{path}: HTTP {status}, not JSON"))
            }
        })?;
        if (200..300).contains(&status) {
            return Ok(v);
        }
        let code = str_field(&v, "code").unwrap_or_default();
        let message = str_field(&v, "message").unwrap_or_default();
        let requestid = str_field(&v, "requestid").unwrap_or_default();
        tracing::warn!(path, status, %code, %requestid, "DingTalk error");
        Err(from_new_api(status, &code, &message))
    }
}

/// The user in a successful `user/get` answer of either generation (fuzzed: never panics).
pub fn parse_user(api: UserApi, answer: Value) -> Result<User, DingTalkError> {
    let user = match api {
        UserApi::V2 => {
            let result = answer.get("result").cloned().unwrap_or(Value::Null);
            serde_json::from_value::<V2User>(result)
                .map_err(|e| DingTalkError::BadResponse(format!("user/get: {e}")))?
                .into_user()
        }
        UserApi::Legacy => serde_json::from_value::<LegacyUser>(answer)
            .map_err(|e| DingTalkError::BadResponse(format!("user/get: {e}")))?
            .into_user(),
    };
    user.ok_or_else(|| DingTalkError::BadResponse("user/get answer has no userid".into()))
}

/// What an oapi answer amounted to, before retries.
enum Failure {
    /// The app token was rejected (plain or wrapped in errcode 88).
    Token,
    /// Anything else.
    Error(DingTalkError),
}

impl From<DingTalkError> for Failure {
    fn from(e: DingTalkError) -> Self {
        Failure::Error(e)
    }
}

/// Sends an oapi request and reads its answer (see [`parse_oapi`]).
async fn oapi_answer(path: &str, req: reqwest::RequestBuilder) -> Result<Value, Failure> {
    let resp = req.send().await.map_err(DingTalkError::from_reqwest)?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(DingTalkError::from_reqwest)?;
    match parse_oapi(path, status, &bytes) {
        Ok(v) => Ok(v),
        Err(OapiFailure::TokenRejected) => Err(Failure::Token),
        Err(OapiFailure::Error(e)) => Err(Failure::Error(e)),
    }
}

/// Why an oapi answer was not a success.
#[derive(Debug)]
pub enum OapiFailure {
    /// The app token was rejected (plain or wrapped in errcode 88): fetch a new one.
    TokenRejected,
    /// Anything else, typed.
    Error(DingTalkError),
}

/// Reads an oapi answer (HTTP `status`, raw `bytes`) from `path`: `errcode` 0 → the JSON;
/// anything else — other errcodes, HTML instead of JSON, the gateway's rate-limit shape — a
/// typed failure. Never panics, whatever the bytes (fuzzed).
pub fn parse_oapi(path: &str, status: u16, bytes: &[u8]) -> Result<Value, OapiFailure> {
    use OapiFailure as Failure;
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
        // The 5-minute IP ban answers with an HTML page; 5xx is DingTalk trouble.
        tracing::warn!(
            path,
            status,
            "DingTalk answered with something that is not JSON"
        );
        return Err(Failure::Error(if status >= 500 {
            DingTalkError::Busy
        } else if status == 200 || status == 403 || status == 429 {
            if bytes.is_empty() || status != 200 {
                DingTalkError::RateLimited {
                    retry_after: Duration::from_secs(300),
                }
            } else {
                DingTalkError::BadResponse(format!("{path}: not JSON"))
            }
        } else {
            DingTalkError::BadResponse(format!("{path}: HTTP {status}, not JSON"))
        }));
    };
    if v.get("status").and_then(Value::as_i64) == Some(1111) {
        let wait = v.get("wait").and_then(Value::as_u64).unwrap_or(5);
        return Err(Failure::Error(DingTalkError::RateLimited {
            retry_after: Duration::from_secs(wait.max(1) * 60),
        }));
    }
    let errcode = match v.get("errcode") {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(-2),
        Some(Value::String(s)) => s.parse().unwrap_or(-2),
        None if status >= 500 => return Err(Failure::Error(DingTalkError::Busy)),
        None => {
            return Err(Failure::Error(DingTalkError::BadResponse(format!(
                "{path}: answer has no errcode"
            ))))
        }
        Some(_) => -2,
    };
    if errcode == 0 {
        return Ok(v);
    }
    let errmsg = str_field(&v, "errmsg").unwrap_or_default();
    let sub_code = str_field(&v, "sub_code").and_then(|s| s.parse::<i64>().ok());
    let request_id = str_field(&v, "request_id").unwrap_or_default();
    let sub = sub_code.map(|c| c.to_string()).unwrap_or_default();
    tracing::warn!(path, errcode, sub_code = %sub, %errmsg, %request_id, "DingTalk error");
    if is_token_errcode(errcode) || (errcode == 88 && sub_code.is_some_and(is_token_errcode)) {
        return Err(Failure::TokenRejected);
    }
    if errcode == 88 {
        if let Some(sub) = sub_code {
            let submsg = str_field(&v, "sub_msg").unwrap_or(errmsg);
            return Err(Failure::Error(from_errcode(sub, &submsg)));
        }
    }
    Err(Failure::Error(from_errcode(errcode, &errmsg)))
}
