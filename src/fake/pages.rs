//! What the fake shows a browser: the stand-in for DingTalk's OAuth login page (pick a user,
//! approve or deny) and the stand-in for the `dingtalk.open.js` JSAPI script.

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};

use super::routes::Params;
use super::state::State;
use crate::response::{self, Body};

const STYLE: &str = "body{font-family:-apple-system,'PingFang SC','Microsoft YaHei',sans-serif;\
background:#f5f6f7;margin:0;padding:24px;color:#1f2329}main{max-width:440px;margin:0 auto;\
background:#fff;border-radius:12px;padding:24px;box-shadow:0 2px 12px rgba(0,0,0,.08)}\
h1{font-size:20px}.u{display:flex;justify-content:space-between;align-items:center;\
border-top:1px solid #eee;padding:10px 0}button{padding:8px 14px;border:0;border-radius:6px;\
background:#3370ff;color:#fff;cursor:pointer}button.deny{background:#eff0f1;color:#1f2329}\
.note{color:#646a73;font-size:13px}";

/// `GET /oauth2/auth`: the login page where a person picks a fake user and approves.
pub fn oauth_page(state: &State, p: &Params) -> Response<Body> {
    let client_id = p.str("client_id").unwrap_or_default();
    let redirect_uri = p.str("redirect_uri").unwrap_or_default();
    let valid_redirect =
        url::Url::parse(&redirect_uri).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
    if client_id != state.app_key
        || !valid_redirect
        || p.str("response_type").as_deref() != Some("code")
    {
        let body = format!(
            "<h1>钉钉登录 · 参数错误</h1><p>client_id、redirect_uri 或 response_type 无效。</p>\
<p class=\"note\">Invalid client_id, redirect_uri or response_type (client_id: {}).</p>",
            text(&client_id)
        );
        return page(StatusCode::BAD_REQUEST, "钉钉登录 · Error", &body);
    }
    let st = p.str("state").unwrap_or_default();
    let hidden = format!(
        "<input type=\"hidden\" name=\"redirect_uri\" value=\"{}\"><input type=\"hidden\" name=\"state\" value=\"{}\">",
        attr(&redirect_uri),
        attr(&st)
    );
    let mut rows = String::new();
    for u in state.users() {
        rows.push_str(&format!(
            "<form class=\"u\" method=\"post\" action=\"/oauth2/approve\">{hidden}\
<input type=\"hidden\" name=\"userid\" value=\"{id}\"><span>{name} <span class=\"note\">({id}{inactive})</span></span>\
<button type=\"submit\" id=\"approve-{id}\">同意授权 / Approve</button></form>",
            id = attr(&u.userid),
            name = text(&u.name),
            inactive = if u.active { "" } else { ", 未激活 inactive" },
        ));
    }
    let body = format!(
        "<h1>钉钉登录（模拟）</h1><p class=\"note\">Fake DingTalk login — choose who you are and approve. \
A real DingTalk shows a QR code here.</p>{rows}\
<form method=\"post\" action=\"/oauth2/approve\">{hidden}<input type=\"hidden\" name=\"deny\" value=\"1\">\
<p><button class=\"deny\" type=\"submit\" id=\"deny\">拒绝 / Deny</button></p></form>"
    );
    page(StatusCode::OK, "钉钉登录 · DingTalk login (fake)", &body)
}

fn page(status: StatusCode, title: &str, body: &str) -> Response<Body> {
    let html = format!(
        "<!DOCTYPE html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{}</title>\
<style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        text(title)
    );
    // form-action must allow the redirect back to the app's callback (another origin):
    // browsers apply it to the redirects that follow a form submission.
    response::html(
        status,
        html,
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http: https:; \
base-uri 'none'; frame-ancestors 'none'",
    )
}

const JSAPI: &str = r#"(function () {
  var CODE = __CODE__, CORP = __CORP__, USER = __USER__;
  var errorHandlers = [];
  function later(f) { setTimeout(f, 0); }
  function request(opts) {
    opts = opts || {};
    var err = null;
    if (!/dingtalk/i.test(navigator.userAgent)) {
      err = { errorCode: "7", errorMessage: "只能在钉钉客户端内调用 / JSAPI only works inside the DingTalk client" };
    } else if (opts.corpId !== CORP) {
      err = { errorCode: "3", errorMessage: "corpId 不匹配 / corpId does not match this organisation" };
    } else if (!CODE) {
      err = { errorCode: "-1", errorMessage: "用户取消了授权 / the user cancelled" };
    }
    var used = CODE; CODE = null;
    var result = err ? null : { code: used };
    if (typeof opts.onSuccess === "function" || typeof opts.onFail === "function") {
      later(function () {
        if (err) { if (opts.onFail) { opts.onFail(err); } }
        else if (opts.onSuccess) { opts.onSuccess(result); }
      });
      return undefined;
    }
    return new Promise(function (resolve, reject) {
      later(function () { if (err) { reject(err); } else { resolve(result); } });
    });
  }
  window.dd = {
    version: "fake-3.1.0",
    env: { platform: /dingtalk/i.test(navigator.userAgent) ? "android" : "notInDingTalk" },
    ready: function (f) { later(f); },
    error: function (f) { errorHandlers.push(f); },
    requestAuthCode: request,
    runtime: { permission: { requestAuthCode: request } },
    _fakeUser: USER
  };
})();
"#;

/// `GET /dingtalk.open.js`: a JSAPI whose `requestAuthCode` returns a code minted at load
/// time for the current jsapi user (or `?userid=`), and fails like DingTalk when it should.
pub fn jsapi(state: &State, userid: Option<String>, _user_agent: &str) -> Response<Body> {
    let user = userid.or_else(|| state.jsapi_user());
    let code = user.as_deref().and_then(|u| state.mint_code(u));
    let js_str = |s: Option<&str>| -> String {
        s.map(|s| serde_json::Value::String(s.to_string()).to_string())
            .unwrap_or_else(|| "null".into())
    };
    let script = JSAPI
        .replace("__CODE__", &js_str(code.as_deref()))
        .replace("__CORP__", &js_str(Some(&state.corp_id)))
        .replace("__USER__", &js_str(user.as_deref()));
    let mut r = Response::new(response::full(script));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/javascript; charset=utf-8"),
    );
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
