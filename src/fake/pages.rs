//! What the fake shows a browser: its index page (what it is, its users, its app and the
//! config lines that point a proxy at it), the stand-in for DingTalk's OAuth login page (pick
//! a user, approve or deny) and the stand-in for the `dingtalk.open.js` JSAPI script.

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

/// Extra style for the index page: a wider card, tables, copyable config blocks.
const INDEX_STYLE: &str = "main.wide{max-width:760px}.banner{background:#fff7e8;color:#8a5300;\
border-radius:8px;padding:10px 14px;font-size:14px;line-height:1.6}p{line-height:1.6}\
h2{font-size:16px;margin:28px 0 8px}h2 .en{color:#646a73;font-weight:normal;font-size:14px}\
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;font-size:14px}\
th,td{text-align:left;padding:8px 10px;border-top:1px solid #eee;vertical-align:top}\
thead th{border-top:0;color:#646a73;font-weight:normal;font-size:13px;white-space:nowrap}\
tbody th{font-weight:normal;color:#646a73;white-space:nowrap;width:1%}\
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,'Noto Sans Mono CJK SC',monospace;\
font-size:13px}#app td code{overflow-wrap:anywhere}#users td{white-space:nowrap}pre{background:#f5f6f7;border-radius:8px;\
padding:12px 14px;margin:8px 0;overflow-x:auto;line-height:1.7;user-select:all}\
.tag{display:inline-block;padding:0 8px;border-radius:10px;font-size:12px;line-height:20px;\
white-space:nowrap;background:#e8f7ee;color:#2ea121}.tag.off{background:#fdecea;color:#d83931}\
.none{color:#8f959e}@media (max-width:600px){body{padding:12px}main{padding:18px 16px}\
#users thead{display:none}#users,#users tbody,#users tr{display:block}#users tr{padding:6px 0;\
border-top:1px solid #eee}#users td{display:inline-block;border:0;padding:2px 10px 2px 0}}";

/// `value` as one shell word: bare when it is plainly safe, else in single quotes.
fn shell_word(value: &str) -> String {
    let safe = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:/@%+,=".contains(c));
    if safe {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', "'\\''"))
    }
}

/// The `export DAP_DINGTALK__…=…` lines that point a proxy at this fake (the values the demo
/// configures its proxy with).
fn config_lines(state: &State) -> String {
    let base = &state.base_url;
    let jsapi = format!("{base}/dingtalk.open.js");
    [
        ("DAP_DINGTALK__APP_KEY", state.app_key.as_str()),
        ("DAP_DINGTALK__APP_SECRET", state.app_secret.as_str()),
        ("DAP_DINGTALK__CORP_ID", state.corp_id.as_str()),
        ("DAP_DINGTALK__API_BASE", base.as_str()),
        ("DAP_DINGTALK__NEW_API_BASE", base.as_str()),
        ("DAP_DINGTALK__LOGIN_BASE", base.as_str()),
        ("DAP_DINGTALK__JSAPI_URL", jsapi.as_str()),
    ]
    .iter()
    .map(|(k, v)| format!("export {k}={}\n", shell_word(v)))
    .collect()
}

/// `GET /`: what this is (a stand-in for DingTalk, not DingTalk), its users, its app key,
/// secret and corp id, and the config lines that point your own proxy at it.
pub fn index(state: &State) -> Response<Body> {
    let mut users = String::new();
    for u in state.users() {
        let mobile = match &u.mobile {
            Some(m) => format!("<code>{}</code>", text(m)),
            None => "<span class=\"none\">无 / none</span>".to_string(),
        };
        let active = if u.active {
            "<span class=\"tag\">已激活 active</span>"
        } else {
            "<span class=\"tag off\">未激活 inactive</span>"
        };
        users.push_str(&format!(
            "<tr id=\"user-{id}\"><td><code>{uid}</code></td><td>{name}</td><td>{mobile}</td><td>{active}</td></tr>",
            id = attr(&u.userid),
            uid = text(&u.userid),
            name = text(&u.name),
        ));
    }
    let jsapi_user = match state.jsapi_user() {
        Some(u) => format!("<code>{}</code>", text(&u)),
        None => "<span class=\"none\">无（取消）/ none (cancels)</span>".to_string(),
    };
    let body = format!(
        "<h1>模拟钉钉 · Fake DingTalk</h1>\
<p class=\"banner\">这不是钉钉。这是给测试和演示用的钉钉替身：它实现了 dingtalk-auth-proxy 用到的钉钉接口\
（同样的路径、字段和错误码）、扫码登录页和 JSAPI（<code>dingtalk.open.js</code>）的替身。<br>\
This is not DingTalk. It is a stand-in for DingTalk, for tests and the demo: the DingTalk APIs \
dingtalk-auth-proxy uses (same paths, fields and errcodes), the QR login page and the JSAPI \
(<code>dingtalk.open.js</code>).</p>\
<h2>应用 <span class=\"en\">App</span></h2><div class=\"scroll\"><table id=\"app\"><tbody>\
<tr><th>app key</th><td><code id=\"app-key\">{key}</code></td></tr>\
<tr><th>app secret</th><td><code id=\"app-secret\">{secret}</code></td></tr>\
<tr><th>corp id</th><td><code id=\"corp-id\">{corp}</code></td></tr>\
<tr><th>免登用户 <span class=\"en\">in-app user</span></th><td>{jsapi_user}</td></tr>\
</tbody></table></div>\
<h2>用户 <span class=\"en\">Users</span></h2><div class=\"scroll\"><table id=\"users\">\
<thead><tr><th>userid</th><th>姓名 name</th><th>手机 mobile</th><th>状态 status</th></tr></thead>\
<tbody>{users}</tbody></table></div>\
<p class=\"note\">浏览器登录时在登录页选择用户并同意；在钉钉客户端内（User-Agent 含 DingTalk），JSAPI \
直接以免登用户登录。未激活用户无法登录。<br>In a browser you pick a user on the login page and approve; \
inside the DingTalk client (User-Agent containing DingTalk) the JSAPI logs the in-app user in without \
a click. Inactive users cannot log in.</p>\
<h2>用你自己的配置试用 <span class=\"en\">Try your own config</span></h2>\
<p>把这些环境变量交给你自己的 dingtalk-auth-proxy（缺少 <code>DAP_DINGTALK__JSAPI_URL</code> 时，\
钉钉内免登会加载真正的 JSAPI，无法登录）：<br><span class=\"note\">Give your own dingtalk-auth-proxy \
these (without <code>DAP_DINGTALK__JSAPI_URL</code> the in-app flow loads DingTalk's real JSAPI and \
cannot log in):</span></p>\
<pre id=\"config\">{config}</pre>\
<p>再加上会话密钥和你的应用，然后启动代理：<br><span class=\"note\">plus a session secret and your app, \
then start the proxy:</span></p>\
<pre>export DAP_SESSION__SECRET=\"$(head -c 32 /dev/urandom | base64)\"\n\
export DAP_UPSTREAM=http://127.0.0.1:3000\ncargo run    # or: target/release/dingtalk-auth-proxy\n</pre>",
        key = text(&state.app_key),
        secret = text(&state.app_secret),
        corp = text(&state.corp_id),
        config = text(&config_lines(state)),
    );
    page_in(
        StatusCode::OK,
        "模拟钉钉 · Fake DingTalk",
        "wide",
        INDEX_STYLE,
        &body,
    )
}

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
    page_in(status, title, "", "", body)
}

/// A page whose `<main>` has `class` (none when empty) and `extra_style` after the common one.
fn page_in(
    status: StatusCode,
    title: &str,
    class: &str,
    extra_style: &str,
    body: &str,
) -> Response<Body> {
    let class = if class.is_empty() {
        String::new()
    } else {
        format!(" class=\"{}\"", attr(class))
    };
    let html = format!(
        "<!DOCTYPE html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{}</title>\
<style>{STYLE}{extra_style}</style></head><body><main{class}>{body}</main></body></html>",
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
