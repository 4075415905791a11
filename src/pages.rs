//! The few HTML pages the proxy shows itself: the in-app (免登) login page, error pages, the
//! signed-out page and the plain page for DingTalk's link-preview crawler.
//!
//! 中文 first, English second; no framework and no external assets except the JSAPI script.
//! Everything echoed is HTML-escaped; the one inline script runs under a CSP nonce.

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use http::{Response, StatusCode};

use crate::response::{self, Body};

const STYLE: &str = "body{font-family:-apple-system,BlinkMacSystemFont,'PingFang SC','Microsoft YaHei',\
'Segoe UI',sans-serif;background:#f5f6f7;color:#1f2329;margin:0;display:flex;min-height:100vh;\
align-items:center;justify-content:center}main{background:#fff;border-radius:12px;\
box-shadow:0 2px 12px rgba(0,0,0,.08);padding:32px 28px;max-width:420px;width:calc(100% - 32px);\
box-sizing:border-box;text-align:center}h1{font-size:20px;margin:0 0 4px}p{line-height:1.6;margin:8px 0}\
.en{color:#646a73;font-size:14px}.btn{display:inline-block;margin:12px 6px 0;padding:10px 20px;\
border-radius:6px;background:#3370ff;color:#fff;text-decoration:none;border:0;font-size:15px;cursor:pointer}\
.btn.secondary{background:#eff0f1;color:#1f2329}.err{color:#d83931}.detail{font-size:12px;color:#8f959e;\
word-break:break-all}.spinner{width:28px;height:28px;border:3px solid #dee0e3;border-top-color:#3370ff;\
border-radius:50%;margin:8px auto 16px;animation:s 1s linear infinite}@keyframes s{to{transform:rotate(360deg)}}\
[hidden]{display:none}";

/// CSP for pages without scripts.
pub const CSP_STATIC: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn layout(title: &str, body: &str, head_extra: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{title}</title><style>{STYLE}</style>{head_extra}</head><body><main>{body}</main></body></html>\n",
        title = text(title),
    )
}

/// Everything the in-app login page needs to know.
pub struct InAppLogin<'a> {
    /// The JSAPI script URL (`dingtalk.jsapi_url`).
    pub jsapi_url: &'a str,
    /// The corp id passed to `requestAuthCode`.
    pub corp_id: &'a str,
    /// The app key, passed as `clientId`.
    pub client_id: &'a str,
    /// Absolute path of our callback.
    pub callback: &'a str,
    /// The `state` bound to the state cookie.
    pub state: &'a str,
    /// Where the "log in with QR code instead" link goes.
    pub qr_login: &'a str,
    /// A fresh CSP nonce for the inline script.
    pub nonce: &'a str,
}

const INAPP_SCRIPT: &str = r#"(function(){
var cfg=JSON.parse(document.getElementById('cfg').textContent);
var done=false;
function $(id){return document.getElementById(id);}
function go(code){done=true;location.replace(cfg.callback+'?code='+encodeURIComponent(code)+'&state='+encodeURIComponent(cfg.state));}
function fail(err){
  if(done){return;} done=true;
  $('wait').hidden=true; $('failed').hidden=false;
  var msg=''; try{msg=(err&&(err.errorMessage||err.message||err.errorCode))||JSON.stringify(err);}catch(e){msg=String(err);}
  $('detail').textContent=String(msg||'unknown error');
}
function ok(r){ if(r&&r.code){go(r.code);}else{fail({errorMessage:'no auth code returned'});} }
if(typeof dd==='undefined'){fail({errorMessage:'DingTalk JSAPI (dingtalk.open.js) did not load'});return;}
try{ if(dd.error){dd.error(fail);} }catch(e){}
dd.ready(function(){
  try{
    if(typeof dd.requestAuthCode==='function'){
      dd.requestAuthCode({corpId:cfg.corpId,clientId:cfg.clientId,onSuccess:ok,onFail:fail});
    }else{
      dd.runtime.permission.requestAuthCode({corpId:cfg.corpId,onSuccess:ok,onFail:fail});
    }
  }catch(e){fail({errorMessage:String(e)});}
});
setTimeout(function(){fail({errorMessage:'timed out waiting for DingTalk'});},15000);
})();"#;

/// The 免登 page: loads the JSAPI, asks for an auth code, goes to the callback.
pub fn in_app_login(p: &InAppLogin<'_>) -> Response<Body> {
    let cfg = serde_json::json!({
        "corpId": p.corp_id,
        "clientId": p.client_id,
        "callback": p.callback,
        "state": p.state,
    });
    // JSON inside <script type=application/json>: escape `<` so `</script>` cannot appear.
    let cfg = cfg.to_string().replace('<', "\\u003c");
    let body = format!(
        "<div id=\"wait\"><div class=\"spinner\"></div><h1>正在通过钉钉登录…</h1>\
<p class=\"en\">Signing you in with DingTalk…</p></div>\
<div id=\"failed\" hidden><h1 class=\"err\">钉钉免登失败</h1><p class=\"en\">DingTalk sign-in failed.</p>\
<p class=\"detail\" id=\"detail\"></p>\
<a class=\"btn\" id=\"retry\" href=\"\">重试 / Retry</a>\
<a class=\"btn secondary\" id=\"qr\" href=\"{qr}\">扫码登录 / Log in with QR code</a></div>\
<script type=\"application/json\" id=\"cfg\">{cfg}</script>\
<script src=\"{jsapi}\"></script>\
<script nonce=\"{nonce}\">{INAPP_SCRIPT}</script>",
        qr = attr(p.qr_login),
        jsapi = attr(p.jsapi_url),
        nonce = attr(p.nonce),
    );
    let jsapi_origin = url::Url::parse(p.jsapi_url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    // DingTalk's JSAPI talks to the native client through bridges (iframes with custom
    // schemes, prompt()), so this page restricts scripts, plugins and framing only.
    let csp = format!(
        "script-src 'nonce-{}' {}; object-src 'none'; base-uri 'none'; form-action 'self'; \
frame-ancestors 'none'",
        p.nonce, jsapi_origin
    );
    let html = layout("钉钉登录 · DingTalk sign-in", &body, "");
    // The retry link reloads the page (a fresh state); a plain `href=""` does exactly that.
    response::html(StatusCode::OK, html, &csp)
}

/// An error page: what happened in 中文 and English, and a way back to the login.
pub fn error(status: StatusCode, zh: &str, en: &str, retry: Option<&str>) -> Response<Body> {
    let retry = retry
        .map(|href| {
            format!(
                "<a class=\"btn\" href=\"{}\">重新登录 / Log in again</a>",
                attr(href)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<h1 class=\"err\">{zh}</h1><p class=\"en\">{en}</p><p class=\"detail\">HTTP {code}</p>{retry}",
        zh = text(zh),
        en = text(en),
        code = status.as_u16(),
    );
    response::html(
        status,
        layout("登录失败 · Sign-in failed", &body, ""),
        CSP_STATIC,
    )
}

/// The page shown after logout when no `rd` was given.
pub fn signed_out(login: &str) -> Response<Body> {
    let body = format!(
        "<h1>您已退出登录</h1><p class=\"en\">You have signed out.</p>\
<a class=\"btn\" href=\"{}\">重新登录 / Sign in again</a>",
        attr(login)
    );
    response::html(
        StatusCode::OK,
        layout("已退出 · Signed out", &body, ""),
        CSP_STATIC,
    )
}

/// What DingTalk's link-preview crawler gets instead of a login script.
pub fn link_preview() -> Response<Body> {
    let body = "<h1>需要钉钉登录</h1><p class=\"en\">This page requires DingTalk sign-in.</p>";
    response::html(
        StatusCode::OK,
        layout("需要登录 · Sign-in required", body, ""),
        CSP_STATIC,
    )
}

/// "Logged in, but not allowed" (403).
pub fn forbidden(userid: &str) -> Response<Body> {
    let body = format!(
        "<h1 class=\"err\">无权访问</h1><p class=\"en\">You are signed in, but not allowed to use this app.</p>\
<p class=\"detail\">userid: {}</p>",
        text(userid)
    );
    response::html(
        StatusCode::FORBIDDEN,
        layout("无权访问 · Forbidden", &body, ""),
        CSP_STATIC,
    )
}

/// "Your DingTalk account is not active" (403), with what to do and a way to switch account.
pub fn inactive(userid: &str, switch_account: &str) -> Response<Body> {
    let body = format!(
        "<h1 class=\"err\">您的钉钉账号尚未激活</h1>\
<p>请联系贵公司的钉钉管理员激活账号（钉钉管理后台 → 通讯录），激活后重新登录。</p>\
<p class=\"en\">Your DingTalk account is not active yet. Ask your company's DingTalk administrator \
to activate it (DingTalk admin console → Contacts), then sign in again.</p>\
<p class=\"detail\">userid: {}</p>\
<a class=\"btn\" href=\"{}\">切换账号 / Use another account</a>",
        text(userid),
        attr(switch_account)
    );
    response::html(
        StatusCode::FORBIDDEN,
        layout("账号未激活 · Account not active", &body, ""),
        CSP_STATIC,
    )
}

/// The app behind the proxy failed (502/504/…): what happened, that it is the app and not the
/// login, and a button that retries the same page.
pub fn app_error(status: StatusCode, zh: &str, en: &str, retry: &str) -> Response<Body> {
    let body = format!(
        "<h1 class=\"err\">{zh}</h1><p>您的登录状态正常，出问题的是后面的应用。</p>\
<p class=\"en\">{en}</p><p class=\"detail\">HTTP {code}</p>\
<a class=\"btn\" href=\"{retry}\">重试 / Retry</a>",
        zh = text(zh),
        en = text(en),
        code = status.as_u16(),
        retry = attr(retry),
    );
    response::html(
        status,
        layout("应用暂时不可用 · Application unavailable", &body, ""),
        CSP_STATIC,
    )
}

/// "This host (or path) is not served here" (404): no route of the proxy matches.
pub fn not_served(host: &str) -> Response<Body> {
    let body = format!(
        "<h1 class=\"err\">此地址未配置应用</h1><p>该网址没有对应的应用，请检查地址是否正确。</p>\
<p class=\"en\">No application is served at this address. Check the address, or ask the administrator to add a route for it.</p>\
<p class=\"detail\">host: {}</p>",
        text(host)
    );
    response::html(
        StatusCode::NOT_FOUND,
        layout("未找到应用 · Not served", &body, ""),
        CSP_STATIC,
    )
}

/// The login host's `/` when no app is routed there (a login whose `rd` was refused ends
/// here): this is the sign-in service; open the app you meant.
pub fn login_host_home() -> Response<Body> {
    let body = "<h1>钉钉登录服务</h1><p>这里是统一登录地址，本身没有应用。请直接打开您要使用的应用的网址。</p>\
<p class=\"en\">This is the sign-in address for your organisation's apps; there is no application here. Open the address of the app you want to use.</p>";
    response::html(
        StatusCode::OK,
        layout("登录服务 · Sign-in service", body, ""),
        CSP_STATIC,
    )
}
