//! `dingtalk-auth-proxy doctor`: the operator's checklist for the DingTalk side of the set-up.
//!
//! With the config `run` would use, it asks DingTalk what a login will ask (the app token;
//! with `--userid`, that user's details and the unionid → userid mapping of the browser login)
//! and turns each answer into one [`Check`]: passed, failed with the exact fix in Chinese and
//! English (which console page, which permission by its Chinese name, which IP to whitelist —
//! the one DingTalk says it saw), a warning, or skipped because an earlier check failed.
//! [`run`] returns the list; [`render`] writes it for a terminal; the binary maps it to the
//! exit code ([`exit_code`]). Nothing here prints a secret: DingTalk's messages are shown, the
//! app secret, tokens and the session secret never are.

use std::net::IpAddr;

use crate::config::{Config, TokenApi, UserApi};
use crate::dingtalk::{DingTalk, DingTalkError, User};
use crate::user::Field;

/// Where an operator finds the app in DingTalk's developer console.
const CONSOLE: &str = "https://open-dev.dingtalk.com";

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Passed: `✓`.
    Pass,
    /// Works, but not as it should for production: `!` (does not fail the run).
    Warn,
    /// Failed: `✗`, with a fix.
    Fail,
    /// Not checked, because something it needs failed first: `-`.
    Skip,
}

impl Status {
    /// The mark the line starts with.
    pub fn mark(self) -> &'static str {
        match self {
            Status::Pass => "✓",
            Status::Warn => "!",
            Status::Fail => "✗",
            Status::Skip => "-",
        }
    }
}

/// What to do about a failed (or warned) check, in both languages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fix {
    /// 中文.
    pub zh: String,
    /// English.
    pub en: String,
}

/// One line of the checklist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// The outcome.
    pub status: Status,
    /// What was checked and what was found, one line.
    pub title: String,
    /// Facts shown under the line whatever the outcome (e.g. the callback URL to register).
    pub details: Vec<String>,
    /// The fix, for [`Status::Fail`] and [`Status::Warn`].
    pub fix: Option<Fix>,
}

impl Check {
    fn pass(title: impl Into<String>) -> Check {
        Check {
            status: Status::Pass,
            title: title.into(),
            details: Vec::new(),
            fix: None,
        }
    }

    fn fail(title: impl Into<String>, zh: impl Into<String>, en: impl Into<String>) -> Check {
        Check {
            status: Status::Fail,
            title: title.into(),
            details: Vec::new(),
            fix: Some(Fix {
                zh: zh.into(),
                en: en.into(),
            }),
        }
    }

    fn warn(title: impl Into<String>, zh: impl Into<String>, en: impl Into<String>) -> Check {
        Check {
            status: Status::Warn,
            ..Check::fail(title, zh, en)
        }
    }

    fn skip(title: impl Into<String>) -> Check {
        Check {
            status: Status::Skip,
            ..Check::pass(title)
        }
    }

    fn detail(mut self, line: impl Into<String>) -> Check {
        self.details.push(line.into());
        self
    }
}

/// What `doctor` was asked to check beyond the app itself.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// A real userid: check every user API the login flows need, for this user.
    pub userid: Option<String>,
}

/// 0 when nothing failed, 1 when a check failed (2, a bad config, is decided before [`run`]).
pub fn exit_code(checks: &[Check]) -> u8 {
    if checks.iter().any(|c| c.status == Status::Fail) {
        1
    } else {
        0
    }
}

/// The checklist for a config that did not load: one failed check, the loader's lines under it.
pub fn config_invalid(lines: &[String]) -> Vec<Check> {
    let mut check = Check::fail(
        "config is invalid",
        "按上面每一行修改配置文件（或对应的 DAP_* 环境变量），再运行 dingtalk-auth-proxy check-config。",
        "Fix each line above in the config file (or its DAP_* environment variable), then run dingtalk-auth-proxy check-config.",
    );
    check.details = lines.to_vec();
    vec![check]
}

/// The checklist as text: one line per check, mark first; details and fixes indented under it;
/// a summary last.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        out.push_str(&format!("{} {}\n", c.status.mark(), c.title));
        for d in &c.details {
            out.push_str(&format!("    {d}\n"));
        }
        if let (Some(fix), Status::Fail | Status::Warn) = (&c.fix, c.status) {
            out.push_str(&format!("    修复：{}\n", fix.zh));
            out.push_str(&format!("    fix: {}\n", fix.en));
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warned = checks.iter().filter(|c| c.status == Status::Warn).count();
    if failed == 0 {
        out.push_str(&format!(
            "\nall checks passed{}\n",
            match warned {
                0 => String::new(),
                n => format!(" ({n} warning{})", if n == 1 { "" } else { "s" }),
            }
        ));
    } else {
        out.push_str(&format!(
            "\n{failed} check{} failed: fix the ✗ lines above, then run doctor again\n",
            if failed == 1 { "" } else { "s" }
        ));
    }
    out
}

/// Runs every check against DingTalk with `config` (already loaded and valid). Each DingTalk
/// call is bounded by `dingtalk.timeout`.
pub async fn run(config: &Config, options: &Options) -> Vec<Check> {
    let mut checks = vec![Check::pass("config is valid")];
    checks.push(corp_id_check(config));
    checks.push(public_url_check(config));
    let dingtalk = match DingTalk::new(&config.dingtalk) {
        Ok(d) => d,
        Err(e) => {
            checks.push(Check::fail(
                format!("cannot set up the DingTalk client: {e}"),
                "检查本机的 TLS/网络环境。",
                "Check this machine's TLS and network set-up.",
            ));
            return checks;
        }
    };
    let api = token_host(config);
    // The IP DingTalk refused, if any call said so: one whitelist check, from every call.
    let mut refused_ip: Option<Option<IpAddr>> = None;
    match dingtalk.app_token().await {
        Ok(_) => checks.push(Check::pass(format!(
            "app_key/app_secret accepted: DingTalk ({api}) issued an app access token"
        ))),
        Err(DingTalkError::IpNotWhitelisted { errmsg }) => {
            refused_ip = Some(seen_ip(&errmsg));
            checks.push(Check::skip(
                "app_key/app_secret not checked: DingTalk refused this server's IP before looking at them",
            ));
        }
        Err(e) => {
            checks.push(credentials_failed(config, &e));
            checks.push(Check::skip(
                "server IP whitelist not checked: it needs a working app token",
            ));
            if options.userid.is_some() {
                checks.push(Check::skip(
                    "user APIs not checked: they need a working app token",
                ));
            }
            return checks;
        }
    }
    let mut user_checks = Vec::new();
    if let Some(userid) = &options.userid {
        if refused_ip.is_none() {
            user_checks = user_api_checks(config, &dingtalk, userid, &mut refused_ip).await;
        } else {
            user_checks.push(Check::skip(
                "user APIs not checked: DingTalk refuses this server's IP",
            ));
        }
    }
    checks.push(match refused_ip {
        None => Check::pass(if options.userid.is_some() {
            "server IP is whitelisted: DingTalk answered the token and user calls"
        } else {
            "server IP is whitelisted: DingTalk answered the token call"
        }),
        Some(ip) => whitelist_failed(ip),
    });
    checks.extend(user_checks);
    if options.userid.is_none() {
        checks.push(Check::skip(
            "user APIs not checked: run doctor --userid <a userid of your organisation> to check user details, unionid and mobile",
        ));
    }
    checks
}

/// `corp_id` starts with `ding` and is not the app key pasted twice.
fn corp_id_check(config: &Config) -> Check {
    let corp = config.dingtalk.corp_id.trim();
    let shaped = corp.len() >= 8
        && corp.starts_with("ding")
        && corp.chars().all(|c| c.is_ascii_alphanumeric());
    let fix_zh = format!(
        "在钉钉开发者后台（{CONSOLE}）首页右上角或「应用开发 → 企业内部应用 → 你的应用 → 凭证与基础信息」复制 CorpId（以 ding 开头），填入 dingtalk.corp_id（DAP_DINGTALK__CORP_ID）。"
    );
    let fix_en = format!(
        "Copy the CorpId (it starts with `ding`) from the DingTalk developer console ({CONSOLE}: top right of the home page, or your app's 凭证与基础信息 page) into dingtalk.corp_id (DAP_DINGTALK__CORP_ID)."
    );
    if corp == config.dingtalk.app_key.trim() {
        Check::fail(
            "corp_id is the same as app_key: the CorpId identifies the organisation, not the app",
            fix_zh,
            fix_en,
        )
    } else if !shaped {
        Check::fail(
            format!(
                "corp_id `{corp}` does not look like a DingTalk CorpId (ding + letters and digits)"
            ),
            fix_zh,
            fix_en,
        )
    } else {
        Check::pass(format!("corp_id looks like a CorpId ({corp})"))
    }
}

/// `public_url` is https; the callback URL to register and the micro-app home page, always.
fn public_url_check(config: &Config) -> Check {
    let origin = config.public_origin();
    let callback = format!("{origin}{}/callback", config.auth_prefix);
    let check = match &config.public_url {
        Some(u) if u.scheme() == "https" => Check::pass(format!("public_url is https ({origin})")),
        Some(_) => Check::warn(
            format!("public_url is not https ({origin}): session cookies are sent without Secure"),
            "生产环境请用 https 的 public_url（在 nginx/Caddy 上终止 TLS），并在钉钉后台登记 https 的重定向 URL。",
            "Use an https public_url in production (terminate TLS in nginx or Caddy) and register the https redirect URL in DingTalk.",
        ),
        None => Check::warn(
            format!("public_url is not set: DingTalk would send users back to {origin}"),
            "设置 public_url 为用户在浏览器里打开的地址（https://…），再在钉钉后台登记下面的重定向 URL。",
            "Set public_url to the https:// address users open, then register the redirect URL below in DingTalk.",
        ),
    };
    check
        .detail(format!(
            "register this redirect URL (安全设置 → 重定向URL / 回调域名): {callback}"
        ))
        .detail(format!(
            "micro-app home page (应用首页地址, for the in-app 免登 login): {origin}/"
        ))
}

/// The host the token call goes to (`api_base`, or `new_api_base` with `token_api = "v1"`).
fn token_host(config: &Config) -> &str {
    let url = match config.dingtalk.token_api {
        TokenApi::Gettoken => &config.dingtalk.api_base,
        TokenApi::V1 => &config.dingtalk.new_api_base,
    };
    url.as_str().trim_end_matches('/')
}

/// The token call failed for a reason other than the IP whitelist.
fn credentials_failed(config: &Config, e: &DingTalkError) -> Check {
    let said = e
        .dingtalk_message()
        .map(|m| format!(" (DingTalk said: {m})"))
        .unwrap_or_default();
    match e {
        DingTalkError::BadCredentials { .. } => Check::fail(
            format!("app_key/app_secret wrong: DingTalk rejected them{said}"),
            format!(
                "在钉钉开发者后台（{CONSOLE}）→ 应用开发 → 企业内部应用 → 你的应用 → 凭证与基础信息，复制 Client ID（AppKey）到 dingtalk.app_key、Client Secret（AppSecret）到 dingtalk.app_secret（或 DAP_DINGTALK__APP_KEY / DAP_DINGTALK__APP_SECRET）。"
            ),
            format!(
                "In the DingTalk developer console ({CONSOLE}) → your internal app → 凭证与基础信息 (credentials), copy Client ID (AppKey) into dingtalk.app_key and Client Secret (AppSecret) into dingtalk.app_secret (or DAP_DINGTALK__APP_KEY / DAP_DINGTALK__APP_SECRET)."
            ),
        ),
        DingTalkError::Timeout | DingTalkError::Network(_) => Check::fail(
            format!("cannot reach DingTalk at {}: {e}", token_host(config)),
            "检查本机能否访问该地址（DNS、防火墙、出站代理），以及 dingtalk.api_base / dingtalk.timeout。",
            "Check that this machine can reach that address (DNS, firewall, outgoing proxy), and dingtalk.api_base / dingtalk.timeout.",
        ),
        _ => Check::fail(
            format!("the app token call failed: {e}"),
            "按上面钉钉的提示处理；若是钉钉繁忙或限流，稍后再运行 doctor。",
            "Act on DingTalk's message above; if DingTalk is busy or rate-limiting, run doctor again later.",
        ),
    }
}

/// 60020: the fix names the IP DingTalk saw, when its message said it.
fn whitelist_failed(ip: Option<IpAddr>) -> Check {
    let page =
        "开发者后台 → 应用开发 → 企业内部应用 → 你的应用 → 开发配置 → 安全设置 → 服务器出口IP";
    match ip {
        Some(ip) => Check::fail(
            format!("server IP {ip} is not in the app's IP whitelist (DingTalk errcode 60020)"),
            format!("在钉钉{page}，添加 {ip}（钉钉看到的本机出口 IP），保存后再运行 doctor。"),
            format!(
                "In the DingTalk developer console ({CONSOLE}) → your app → 开发配置 → 安全设置 (security settings) → 服务器出口IP (server egress IPs), add {ip} (the IP DingTalk saw), save, and run doctor again."
            ),
        ),
        None => Check::fail(
            "this server's IP is not in the app's IP whitelist (DingTalk errcode 60020)",
            format!("在钉钉{page}，添加本机访问钉钉时的公网出口 IP。"),
            format!(
                "In the DingTalk developer console ({CONSOLE}) → your app → 开发配置 → 安全设置 → 服务器出口IP, add the public IP this server reaches DingTalk from."
            ),
        ),
    }
}

/// The IP address in DingTalk's 60020 message (`…,request ip=1.2.3.4 appKey(…)`), if any.
pub fn seen_ip(errmsg: &str) -> Option<IpAddr> {
    let lower = errmsg.to_ascii_lowercase();
    for marker in ["request ip=", "ip=", "from ip:", "ip:"] {
        let mut from = 0;
        while let Some(at) = lower[from..].find(marker) {
            let start = from + at + marker.len();
            let rest = errmsg[start..].trim_start();
            let candidate: String = rest
                .chars()
                .take_while(|c| c.is_ascii_hexdigit() || *c == '.' || *c == ':')
                .collect();
            if let Ok(ip) = candidate.trim_end_matches(['.', ':']).parse() {
                return Some(ip);
            }
            from = start;
        }
    }
    None
}

/// A DingTalk API permission, by the name the console's 权限管理 page shows.
struct Permission {
    zh: &'static str,
    code: &'static str,
}

/// `topapi/v2/user/get`, `user/get` and `topapi/user/getbyunionid`.
const MEMBER_READ: Permission = Permission {
    zh: "成员信息读权限",
    code: "qyapi_get_member",
};

/// The permissions DingTalk names by code in a 60011 answer, with their console names.
const KNOWN_PERMISSIONS: &[Permission] = &[
    MEMBER_READ,
    Permission {
        zh: "通讯录个人信息读权限",
        code: "Contact.User.Read",
    },
    Permission {
        zh: "企业员工手机号信息",
        code: "fieldMobile",
    },
    Permission {
        zh: "个人手机号信息",
        code: "Contact.User.mobile",
    },
    Permission {
        zh: "通讯录部门信息读权限",
        code: "qyapi_get_department_list",
    },
];

/// The console name of permission `code` (DingTalk's own code when it is not one we know).
fn permission_name(code: &str) -> &str {
    KNOWN_PERMISSIONS
        .iter()
        .find(|p| p.code == code)
        .map_or(code, |p| p.zh)
}

/// The checks for one user: details, unionid → userid, mobile.
async fn user_api_checks(
    config: &Config,
    dingtalk: &DingTalk,
    userid: &str,
    refused_ip: &mut Option<Option<IpAddr>>,
) -> Vec<Check> {
    let details_api = match config.dingtalk.user_api {
        UserApi::V2 => "POST /topapi/v2/user/get",
        UserApi::Legacy => "GET /user/get",
    };
    let mut checks = Vec::new();
    let user: User = match dingtalk.user_details(userid).await {
        Ok(u) => u,
        Err(e) => {
            if let DingTalkError::IpNotWhitelisted { errmsg } = &e {
                *refused_ip = Some(seen_ip(errmsg));
                checks.push(Check::skip(format!(
                    "user details ({details_api}) not checked: DingTalk refused this server's IP"
                )));
            } else {
                checks.push(api_failed(
                    &format!("user details ({details_api}) for {userid}"),
                    &e,
                    userid,
                ));
                checks.push(Check::skip(
                    "unionid and mobile not checked: they come with the user details",
                ));
            }
            return checks;
        }
    };
    let name = user.name.as_deref().unwrap_or("");
    checks.push(Check::pass(format!(
        "user details ({details_api}) answered for {userid}{}",
        if name.is_empty() {
            String::new()
        } else {
            format!(" ({name})")
        }
    )));
    match &user.unionid {
        None => checks.push(Check::fail(
            format!("DingTalk's answer for {userid} has no unionid: the browser (QR) login maps users by unionid (getbyunionid) and would fail"),
            format!("在钉钉开发者后台 → 你的应用 → 开发配置 → 权限管理，确认已开通「{}」（{}）；并确认该成员已激活钉钉账号。", MEMBER_READ.zh, MEMBER_READ.code),
            format!("In the DingTalk developer console → your app → 开发配置 → 权限管理 (permissions), make sure 「{}」 ({}) is granted, and that this member has activated their DingTalk account.", MEMBER_READ.zh, MEMBER_READ.code),
        )),
        Some(unionid) => match dingtalk.userid_by_unionid(unionid).await {
            Ok(found) if found == userid => checks.push(Check::pass(format!(
                "unionid present; the browser login's getbyunionid maps it back to {userid}"
            ))),
            Ok(found) => checks.push(Check::fail(
                format!("getbyunionid maps {userid}'s unionid to another user ({found})"),
                "检查 --userid 是否正确；这通常说明通讯录数据异常，请联系钉钉支持。",
                "Check the --userid given; otherwise the directory is inconsistent: ask DingTalk support.",
            )),
            Err(DingTalkError::IpNotWhitelisted { errmsg }) => {
                *refused_ip = Some(seen_ip(&errmsg));
                checks.push(Check::skip(
                    "getbyunionid not checked: DingTalk refused this server's IP",
                ));
            }
            Err(e) => checks.push(api_failed(
                "browser login's unionid → userid (POST /topapi/user/getbyunionid)",
                &e,
                userid,
            )),
        },
    }
    if config.headers.get(Field::Mobile).is_some() {
        let header = config.headers.get(Field::Mobile).unwrap_or_default();
        match &user.mobile {
            Some(m) => checks.push(Check::pass(format!(
                "mobile is returned ({}): {header} will be set",
                mask(m)
            ))),
            None => checks.push(Check::fail(
                format!("DingTalk returned no mobile for {userid}: {header} would be blank"),
                "在钉钉开发者后台 → 你的应用 → 开发配置 → 权限管理，开通手机号权限「企业员工手机号信息」（fieldMobile；浏览器扫码登录另需「个人手机号信息」Contact.User.mobile），开通后再运行 doctor。",
                "In the DingTalk developer console → your app → 开发配置 → 权限管理 (permissions), grant the 手机号 (mobile) permission 「企业员工手机号信息」 (fieldMobile; the browser QR login also needs 「个人手机号信息」 Contact.User.mobile), then run doctor again.",
            )),
        }
    }
    checks
}

/// A user API answered with an error: which permission, which user, or what DingTalk said.
fn api_failed(what: &str, e: &DingTalkError, userid: &str) -> Check {
    match e {
        DingTalkError::MissingPermission { errmsg } => {
            // DingTalk names the missing permission's code; without one, the API's own.
            let mut named = permission_codes(errmsg);
            if named.is_empty() {
                named.push(MEMBER_READ.code.to_string());
            }
            let zh = named
                .iter()
                .map(|c| permission_name(c))
                .collect::<Vec<_>>()
                .join("」「");
            let code = named.join(", ");
            Check::fail(
                format!("{what}: the app lacks the permission 「{zh}」 ({code}) (DingTalk errcode 60011)"),
                format!("在钉钉开发者后台（{CONSOLE}）→ 应用开发 → 企业内部应用 → 你的应用 → 开发配置 → 权限管理，搜索并开通「{zh}」（{code}），再运行 doctor。"),
                format!("In the DingTalk developer console ({CONSOLE}) → your internal app → 开发配置 → 权限管理 (permissions), search for and grant 「{zh}」 ({code}), then run doctor again."),
            )
        }
        DingTalkError::NotInCorp => Check::fail(
            format!("{what}: {userid} is not a member of the organisation (DingTalk errcode 60121)"),
            "确认 --userid 是本企业成员的 userid（管理后台 → 通讯录 → 成员详情），并且在应用的通讯录授权范围内。",
            "Check that --userid is the userid of a member of your organisation (admin console → 通讯录 → the member), within the app's contacts scope (通讯录授权范围).",
        ),
        other => Check::fail(
            format!("{what}: {other}"),
            "按钉钉的提示处理；若是钉钉繁忙或限流，稍后再运行 doctor。",
            "Act on DingTalk's message; if DingTalk is busy or rate-limiting, run doctor again later.",
        ),
    }
}

/// The permission codes a 60011 message names in brackets (`…权限：[qyapi_get_member]…`).
fn permission_codes(errmsg: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = errmsg;
    while let Some(open) = rest.find('[') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find(']') else { break };
        let code = &rest[..close];
        if !code.is_empty()
            && code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            out.push(code.to_string());
        }
        rest = &rest[close + 1..];
    }
    out
}

/// A mobile number with its middle hidden: `138****0001`.
fn mask(mobile: &str) -> String {
    let chars: Vec<char> = mobile.chars().collect();
    if chars.len() < 7 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The IP is found in DingTalk's real 60020 wording and in the WeCom-style one; garbage
    /// gives none.
    #[test]
    fn seen_ip_parses_dingtalk_messages() {
        let real = "访问ip不在白名单之中，请参考FAQ：https://open.dingtalk.com/document/org-faq/app-faq,request ip=120.230.136.230 appKey(dingmf6cuictoilijt0g)";
        assert_eq!(seen_ip(real), "120.230.136.230".parse().ok());
        assert_eq!(
            seen_ip("not allow to access from your ip, hint: [1], from ip: 101.43.2.9, more"),
            "101.43.2.9".parse().ok()
        );
        assert_eq!(
            seen_ip("访问ip不在白名单之中,request ip=2001:db8::1 appKey(x)"),
            "2001:db8::1".parse().ok()
        );
        assert_eq!(seen_ip("访问ip不在白名单之中"), None);
        assert_eq!(seen_ip("ip=999.1.1.1"), None);
    }

    /// Permission codes come out of the bracketed list; the link's `%23code` is ignored.
    #[test]
    fn permission_codes_from_60011() {
        let msg = "应用尚未开通所需的权限：[qyapi_get_member]，点击链接申请并开通即可：https://open-dev.dingtalk.com/appscope/apply?content=dingx%23qyapi_get_member";
        assert_eq!(permission_codes(msg), vec!["qyapi_get_member"]);
        assert!(permission_codes("没有权限 [a b]").is_empty());
    }

    /// A 60011 naming another permission's code gets that permission's console name.
    #[test]
    fn the_named_permission_is_the_one_shown() {
        let e = DingTalkError::MissingPermission {
            errmsg: "应用尚未开通所需的权限：[fieldMobile]".into(),
        };
        let check = api_failed("user details", &e, "u");
        let text = format!("{check:?}");
        assert!(
            text.contains("企业员工手机号信息") && text.contains("fieldMobile"),
            "{text}"
        );
        assert!(!text.contains("成员信息读权限"), "{text}");
        let e = DingTalkError::MissingPermission {
            errmsg: "no permission [custom_code]".into(),
        };
        let text = format!("{:?}", api_failed("user details", &e, "u"));
        assert!(text.contains("「custom_code」"), "{text}");
    }

    /// Exit code 1 only for a failure; warnings and skips pass.
    #[test]
    fn exit_codes_and_marks() {
        let ok = vec![
            Check::pass("a"),
            Check::warn("b", "z", "e"),
            Check::skip("c"),
        ];
        assert_eq!(exit_code(&ok), 0);
        let text = render(&ok);
        assert!(text.starts_with("✓ a\n! b\n"), "{text}");
        let bad = vec![Check::pass("a"), Check::fail("b", "修", "fix it")];
        assert_eq!(exit_code(&bad), 1);
        let text = render(&bad);
        assert!(
            text.contains("✗ b\n    修复：修\n    fix: fix it\n"),
            "{text}"
        );
        assert_eq!(mask("13800000001"), "138****0001");
    }
}
