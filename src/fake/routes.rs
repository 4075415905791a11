//! The fake's HTTP surface: DingTalk's oapi (`errcode` answers, HTTP 200), the new API
//! (HTTP status + `{"code","message","requestid"}`), the OAuth login page and the JSAPI script.

use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Frame, Incoming};
use serde_json::{json, Map, Value};

use super::pages;
use super::state::{random, Owner, State, TokenProblem};
use super::{Failure, FakeUser, Peer, Permission, ResetOnClose};
use crate::response::{self, Body, BoxError};

/// Request parameters from the query string, a JSON body or a form body, merged.
pub struct Params(HashMap<String, Value>);

impl Params {
    pub fn str(&self, key: &str) -> Option<String> {
        match self.0.get(key)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// Handles one request.
pub async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    // Some SDKs join their base URL and a path that starts with `/` into `//path`.
    let path = format!("/{}", req.uri().path().trim_start_matches('/'));
    state.count(&path);
    let method = req.method().clone();
    let user_token = req
        .headers()
        .get("x-acs-dingtalk-access-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let user_agent = req
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let reset = req.extensions().get::<ResetOnClose>().cloned();
    let peer = req.extensions().get::<Peer>().map(|p| p.0);
    let (in_query, in_body) = match read_params(req).await {
        Some(p) => p,
        None => return oapi(json!({"errcode": 400002, "errmsg": "无效的参数"})),
    };
    let mut all = in_body.0.clone();
    for (k, v) in &in_query.0 {
        all.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let params = Params(all);

    // Truncated and Reset break the real answer; the others replace it.
    let mut cut = None;
    if let Some(failure) = state.take_failure(&path) {
        match failure {
            Failure::Slow(d) => tokio::time::sleep(d).await,
            Failure::Truncated => cut = Some(Cut::Close),
            Failure::Reset => cut = Some(Cut::Reset),
            other => return injected(&path, other),
        }
    }

    // The app's server IP whitelist guards every call made with the app's credentials.
    if let Some(ip) = peer.filter(|ip| !state.ip_allowed(*ip)) {
        if path == "/gettoken" || is_oapi(&path) {
            let mut v = json!({"errcode": 60020, "errmsg": ip_message(ip, &state.app_key)});
            if path.starts_with("/topapi/") {
                v["request_id"] = json!(request_id());
            }
            return oapi(v);
        }
        if path == "/v1.0/oauth2/accessToken" {
            return new_api_error(
                403,
                "Forbidden.AccessDenied.IpNotInWhiteList",
                &ip_message(ip, &state.app_key),
            );
        }
    }

    let resp = match (&method, path.as_str()) {
        (&Method::GET, "/gettoken") => gettoken(state, &in_query),
        (&Method::POST, "/v1.0/oauth2/accessToken") => new_access_token(state, &params),
        (&Method::POST, "/v1.0/oauth2/userAccessToken") => user_access_token(state, &params),
        (&Method::GET, p) if p.starts_with("/v1.0/contact/users/") => users_me(
            state,
            &p["/v1.0/contact/users/".len()..],
            user_token.as_deref(),
        ),
        (&Method::GET | &Method::HEAD, "/") => pages::index(state),
        (_, "/oauth2/auth") => pages::oauth_page(state, &params),
        (&Method::POST, "/oauth2/approve") => approve(state, &params),
        (_, "/dingtalk.open.js") => pages::jsapi(state, params.str("userid"), &user_agent),
        (_, "/_fake/mint") => match params.str("userid").and_then(|u| state.mint_code(&u)) {
            Some(code) => response::text_owned(StatusCode::OK, code),
            None => response::text(StatusCode::NOT_FOUND, "no such user\n"),
        },
        (_, p) if is_oapi(p) => {
            let topapi = p.starts_with("/topapi/");
            let token = params.str("access_token").unwrap_or_default();
            match state.check_token(&token) {
                Ok(Owner::App) => match needed_permission(p).filter(|n| !state.has(*n)) {
                    Some(missing) => permission_denied(state, topapi, missing),
                    None => oapi_call(state, &method, p, &params),
                },
                Ok(Owner::User(_)) | Err(TokenProblem::Unknown) => {
                    token_error(topapi, 40014, "不合法的access_token")
                }
                Err(TokenProblem::Expired) => token_error(topapi, 42001, "access_token超时"),
            }
        }
        _ => {
            let _ = query;
            response::text(StatusCode::NOT_FOUND, "not found\n")
        }
    };
    match cut {
        None => resp,
        Some(cut) => {
            if cut == Cut::Reset {
                if let Some(reset) = &reset {
                    reset.arm();
                }
            }
            cut_short(resp, cut).await
        }
    }
}

/// How a broken answer ends after half its body.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// The body just stops: hyper sees it end before its `Content-Length` and closes.
    Close,
    /// The body fails: hyper aborts the connection, which is armed to send a RST.
    Reset,
}

/// `resp` with its full `Content-Length` but only the first half of its body, then `cut`.
async fn cut_short(resp: Response<Body>, cut: Cut) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    let half = bytes.slice(..bytes.len().div_ceil(2));
    let body = HalfBody {
        head: Some(half),
        flushed: false,
        cut,
    };
    Response::from_parts(parts, BodyExt::boxed(body))
}

/// Sends `head`, lets hyper flush it to the socket (one `Pending`), then ends or fails.
struct HalfBody {
    head: Option<Bytes>,
    flushed: bool,
    cut: Cut,
}

impl hyper::body::Body for HalfBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        if !self.flushed {
            // hyper polls the body again before flushing; pausing once gets the head and
            // the half body onto the wire before the connection is broken.
            self.flushed = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        match self.cut {
            Cut::Close => Poll::Ready(None),
            Cut::Reset => Poll::Ready(Some(Err("fake DingTalk: connection reset".into()))),
        }
    }
}

fn is_oapi(path: &str) -> bool {
    matches!(
        path,
        "/user/getuserinfo"
            | "/user/get"
            | "/topapi/v2/user/getuserinfo"
            | "/topapi/v2/user/get"
            | "/topapi/user/getbyunionid"
    )
}

async fn read_params(req: Request<Incoming>) -> Option<(Params, Params)> {
    let query: HashMap<String, Value> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect()
        })
        .unwrap_or_default();
    let body: Bytes = Limited::new(req.into_body(), 1 << 20)
        .collect()
        .await
        .ok()?
        .to_bytes();
    let mut from_body = HashMap::new();
    if !body.is_empty() {
        if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&body) {
            from_body.extend(map);
        } else {
            from_body.extend(
                url::form_urlencoded::parse(&body)
                    .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned()))),
            );
        }
    }
    Some((Params(query), Params(from_body)))
}

fn oapi(v: Value) -> Response<Body> {
    response::json(StatusCode::OK, &v)
}

fn request_id() -> String {
    random(12).to_lowercase()
}

/// A token error, wrapped in errcode 88 on the `/topapi` gateway as DingTalk does.
fn token_error(topapi: bool, errcode: i64, errmsg: &str) -> Response<Body> {
    if topapi {
        oapi(json!({
            "errcode": 88,
            "sub_code": errcode.to_string(),
            "sub_msg": errmsg,
            "errmsg": format!("ding talk error[subcode={errcode},submsg={errmsg}]"),
            "request_id": request_id(),
        }))
    } else {
        oapi(json!({"errcode": errcode, "errmsg": errmsg}))
    }
}

fn new_api_error(status: u16, code: &str, message: &str) -> Response<Body> {
    let mut r = response::json(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        &json!({"requestid": request_id(), "code": code, "message": message}),
    );
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    r
}

fn injected(path: &str, failure: Failure) -> Response<Body> {
    match failure {
        Failure::Errcode { errcode, errmsg } => {
            let token = matches!(errcode, 40014 | 42001 | 40001 | 33001);
            if token {
                token_error(path.starts_with("/topapi/"), errcode, &errmsg)
            } else {
                let mut v = json!({"errcode": errcode, "errmsg": errmsg});
                if path.starts_with("/topapi/") {
                    v["request_id"] = json!(request_id());
                }
                oapi(v)
            }
        }
        Failure::NewApi {
            status,
            code,
            message,
        } => new_api_error(status, &code, &message),
        Failure::Status(status) => {
            let mut r = response::text(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "<html><body><h1>error</h1></body></html>\n",
            );
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
            r
        }
        Failure::Garbage => response::text(StatusCode::OK, "<html>this is not json {\"errcode\":0"),
        Failure::Html => {
            let mut r = response::text(StatusCode::OK, CAPTIVE_PORTAL);
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        // Handled in `handle`: they delay or break the real answer.
        Failure::Slow(_) | Failure::Truncated | Failure::Reset => {
            response::status(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

/// What a captive portal (hotel Wi-Fi, a corporate web gateway) answers for any URL.
const CAPTIVE_PORTAL: &str = "<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
<title>上网认证 · Network login</title></head><body><h1>请先登录网络</h1>\
<p>Please sign in to the network before browsing.</p>\
<form method=\"post\" action=\"/portal/login\"><input name=\"user\"><input name=\"password\" type=\"password\">\
<button>登录 / Sign in</button></form></body></html>\n";

fn gettoken(state: &State, query: &Params) -> Response<Body> {
    // appkey/appsecret must be in the query string; a form body gets 40035.
    let (Some(key), Some(secret)) = (query.str("appkey"), query.str("appsecret")) else {
        return oapi(json!({"errcode": 40035, "errmsg": "缺少参数"}));
    };
    if key != state.app_key || secret != state.app_secret {
        return oapi(json!({"errcode": 40096, "errmsg": "不合法的appKey或appSecret"}));
    }
    oapi(json!({
        "errcode": 0,
        "errmsg": "ok",
        "access_token": state.app_token(),
        "expires_in": state.token_ttl().as_secs(),
    }))
}

fn new_access_token(state: &State, p: &Params) -> Response<Body> {
    if p.str("appKey").as_deref() != Some(&state.app_key)
        || p.str("appSecret").as_deref() != Some(&state.app_secret)
    {
        return new_api_error(
            400,
            "invalidClientIdOrSecret",
            "无效的clientId或者clientSecret",
        );
    }
    response::json(
        StatusCode::OK,
        &json!({"accessToken": state.app_token(), "expireIn": state.token_ttl().as_secs()}),
    )
}

fn user_access_token(state: &State, p: &Params) -> Response<Body> {
    if p.str("clientId").as_deref() != Some(&state.app_key)
        || p.str("clientSecret").as_deref() != Some(&state.app_secret)
    {
        return new_api_error(
            400,
            "invalidClientIdOrSecret",
            "无效的clientId或者clientSecret",
        );
    }
    let Some(userid) = p.str("code").and_then(|c| state.redeem_code(&c)) else {
        return new_api_error(400, "invalidCode", "不合法的临时授权码");
    };
    response::json(
        StatusCode::OK,
        &json!({
            "accessToken": state.user_token(&userid),
            "refreshToken": random(32),
            "expireIn": state.token_ttl().as_secs(),
            "corpId": state.corp_id,
        }),
    )
}

fn users_me(state: &State, who: &str, token: Option<&str>) -> Response<Body> {
    let Some(token) = token else {
        return new_api_error(
            400,
            "AuthenticationFailed.MissingParameter",
            "缺少x-acs-dingtalk-access-token参数",
        );
    };
    let Ok(Owner::User(userid)) = state.check_token(token) else {
        return new_api_error(400, "InvalidAuthentication", "不合法的access_token");
    };
    if who != "me" {
        return new_api_error(403, "Forbidden.AccessDenied", "只能查询当前用户");
    }
    if !state.has(Permission::ContactUserRead) {
        return new_api_error(
            403,
            "Forbidden.AccessDenied.AccessTokenPermissionDenied",
            &format!(
                "没有调用该接口的权限，接口权限申请参考：https://open.dingtalk.com/document/orgapp/add-api-permission [{}]",
                Permission::ContactUserRead.code()
            ),
        );
    }
    let Some(u) = state.user(&userid) else {
        return new_api_error(404, "invalidParameter.user.notFound", "用户不存在");
    };
    let mut v = json!({
        "nick": u.name,
        "openId": format!("open-{}", u.userid),
        "stateCode": "86",
        "avatarUrl": u.avatar.clone().unwrap_or_default(),
    });
    if !u.unionid.is_empty() {
        v["unionId"] = json!(u.unionid);
    }
    if let Some(m) = u.mobile.as_ref().filter(|_| state.has(Permission::Mobile)) {
        v["mobile"] = json!(m);
    }
    if let Some(e) = &u.email {
        v["email"] = json!(e);
    }
    response::json(StatusCode::OK, &v)
}

fn approve(state: &State, p: &Params) -> Response<Body> {
    let Some(redirect) = p
        .str("redirect_uri")
        .and_then(|r| url::Url::parse(&r).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"))
    else {
        return response::text(
            StatusCode::BAD_REQUEST,
            "redirect_uri is missing or invalid\n",
        );
    };
    let state_param = p.str("state").unwrap_or_default();
    let mut target = redirect;
    if p.str("deny").is_some() {
        target
            .query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("state", &state_param);
    } else {
        let Some(code) = p.str("userid").and_then(|u| state.mint_code(&u)) else {
            return response::text(StatusCode::BAD_REQUEST, "no such user\n");
        };
        target
            .query_pairs_mut()
            .append_pair("authCode", &code)
            .append_pair("state", &state_param);
    }
    let mut r = response::status(StatusCode::FOUND);
    if let Ok(v) = HeaderValue::from_str(target.as_str()) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

/// The oapi calls that need a valid app token.
fn oapi_call(state: &State, method: &Method, path: &str, p: &Params) -> Response<Body> {
    match (method, path) {
        (&Method::GET, "/user/getuserinfo") => {
            let Some(userid) = p.str("code").and_then(|c| state.redeem_code(&c)) else {
                return oapi(json!({"errcode": 40078, "errmsg": "不存在的临时授权码"}));
            };
            let name = state.user(&userid).map(|u| u.name).unwrap_or_default();
            oapi(json!({
                "errcode": 0, "errmsg": "ok", "userid": userid, "name": name,
                "deviceId": "12drtfxxxxx", "is_sys": false, "sys_level": 0,
            }))
        }
        (&Method::GET, "/user/get") => {
            let Some(userid) = p.str("userid") else {
                return oapi(json!({"errcode": 40035, "errmsg": "缺少参数 userid"}));
            };
            match state.user(&userid) {
                Some(u) => oapi(legacy_user(&shown(state, u))),
                None => oapi(json!({"errcode": 60121, "errmsg": "找不到该用户"})),
            }
        }
        (&Method::POST, "/topapi/v2/user/getuserinfo") => {
            let Some(userid) = p.str("code").and_then(|c| state.redeem_code(&c)) else {
                return oapi(
                    json!({"errcode": 40078, "errmsg": "不存在的临时授权码", "request_id": request_id()}),
                );
            };
            let Some(u) = state.user(&userid) else {
                return oapi(json!({"errcode": 60121, "errmsg": "找不到该用户"}));
            };
            let mut result = json!({
                "userid": u.userid, "associated_unionid": "",
                "device_id": "12drtfxxxxx", "name": u.name, "sys": false, "sys_level": 0,
            });
            if !u.unionid.is_empty() {
                result["unionid"] = json!(u.unionid);
            }
            oapi(json!({
                "errcode": 0, "errmsg": "ok", "request_id": request_id(), "result": result,
            }))
        }
        (&Method::POST, "/topapi/v2/user/get") => {
            let Some(userid) = p.str("userid") else {
                return oapi(
                    json!({"errcode": 400002, "errmsg": "无效的参数", "request_id": request_id()}),
                );
            };
            match state.user(&userid) {
                Some(u) => oapi(json!({
                    "errcode": 0, "errmsg": "ok", "request_id": request_id(),
                    "result": v2_user(&shown(state, u)),
                })),
                None => oapi(
                    json!({"errcode": 60121, "errmsg": "找不到该用户", "request_id": request_id()}),
                ),
            }
        }
        (&Method::POST, "/topapi/user/getbyunionid") => {
            let Some(unionid) = p.str("unionid") else {
                return oapi(
                    json!({"errcode": 400002, "errmsg": "无效的参数", "request_id": request_id()}),
                );
            };
            match state.user_by_unionid(&unionid) {
                Some(u) => oapi(json!({
                    "errcode": 0, "errmsg": "ok", "request_id": request_id(),
                    "result": {"contact_type": 0, "userid": u.userid},
                })),
                None => oapi(
                    json!({"errcode": 60121, "errmsg": "找不到该用户", "request_id": request_id()}),
                ),
            }
        }
        _ => oapi(json!({"errcode": 22, "errmsg": "不支持的请求方法"})),
    }
}

/// The API permission an oapi path needs beyond a valid app token.
fn needed_permission(path: &str) -> Option<Permission> {
    match path {
        "/user/get" | "/topapi/v2/user/get" | "/topapi/user/getbyunionid" => {
            Some(Permission::MemberRead)
        }
        _ => None,
    }
}

/// 60011, worded as DingTalk does: the missing permission's code and where to apply for it.
fn permission_denied(state: &State, topapi: bool, missing: Permission) -> Response<Body> {
    let code = missing.code();
    let mut v = json!({
        "errcode": 60011,
        "errmsg": format!(
            "应用尚未开通所需的权限：[{code}]，点击链接申请并开通即可：https://open-dev.dingtalk.com/appscope/apply?content={}%23{code}",
            state.app_key
        ),
    });
    if topapi {
        v["request_id"] = json!(request_id());
    }
    oapi(v)
}

/// DingTalk's 60020 message, with the address it saw and the app key.
fn ip_message(ip: std::net::IpAddr, app_key: &str) -> String {
    format!(
        "访问ip不在白名单之中，请参考FAQ：https://open.dingtalk.com/document/org-faq/app-faq,request ip={ip} appKey({app_key})"
    )
}

/// The user as the app may see them: without the 手机号 permission, no mobile.
fn shown(state: &State, mut u: FakeUser) -> FakeUser {
    if !state.has(Permission::Mobile) {
        u.mobile = None;
    }
    u
}

/// `user/get` (legacy): flat camelCase, optional fields omitted.
fn legacy_user(u: &FakeUser) -> Value {
    let mut m = Map::new();
    m.insert("errcode".into(), json!(0));
    m.insert("errmsg".into(), json!("ok"));
    m.insert("userid".into(), json!(u.userid));
    if !u.unionid.is_empty() {
        m.insert("unionid".into(), json!(u.unionid));
    }
    m.insert("name".into(), json!(u.name));
    m.insert("stateCode".into(), json!("86"));
    m.insert("department".into(), json!(u.dept_ids));
    m.insert("active".into(), json!(u.active));
    m.insert("isAdmin".into(), json!(false));
    m.insert("isBoss".into(), json!(false));
    m.insert("isSenior".into(), json!(false));
    m.insert("isHide".into(), json!(false));
    m.insert("extattr".into(), json!({}));
    let order: Vec<String> = u.dept_ids.iter().map(|d| format!("{d}:176116")).collect();
    m.insert(
        "orderInDepts".into(),
        json!(format!("{{{}}}", order.join(","))),
    );
    let leader: Vec<String> = u.dept_ids.iter().map(|d| format!("{d}:false")).collect();
    m.insert(
        "isLeaderInDepts".into(),
        json!(format!("{{{}}}", leader.join(","))),
    );
    for (k, v) in [
        ("mobile", &u.mobile),
        ("email", &u.email),
        ("jobnumber", &u.job_number),
        ("position", &u.title),
        ("avatar", &u.avatar),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    }
    Value::Object(m)
}

/// `topapi/v2/user/get`'s result: snake_case, optional fields omitted.
fn v2_user(u: &FakeUser) -> Value {
    let mut m = Map::new();
    m.insert("userid".into(), json!(u.userid));
    if !u.unionid.is_empty() {
        m.insert("unionid".into(), json!(u.unionid));
    }
    m.insert("name".into(), json!(u.name));
    m.insert("state_code".into(), json!("86"));
    m.insert("hide_mobile".into(), json!(false));
    m.insert("dept_id_list".into(), json!(u.dept_ids));
    let order: Vec<Value> = u
        .dept_ids
        .iter()
        .map(|d| json!({"dept_id": d, "order": 176116}))
        .collect();
    m.insert("dept_order_list".into(), json!(order));
    let leader: Vec<Value> = u
        .dept_ids
        .iter()
        .map(|d| json!({"dept_id": d, "leader": false}))
        .collect();
    m.insert("leader_in_dept".into(), json!(leader));
    m.insert(
        "role_list".into(),
        json!([{"id": 1, "name": "员工", "group_name": "默认"}]),
    );
    m.insert("active".into(), json!(u.active));
    m.insert("admin".into(), json!(false));
    m.insert("boss".into(), json!(false));
    m.insert("senior".into(), json!(false));
    m.insert("real_authed".into(), json!(true));
    m.insert("exclusive_account".into(), json!(false));
    for (k, v) in [
        ("mobile", &u.mobile),
        ("email", &u.email),
        ("job_number", &u.job_number),
        ("title", &u.title),
        ("avatar", &u.avatar),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    }
    Value::Object(m)
}
