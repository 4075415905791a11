//! A fake DingTalk for tests and the demo (feature `fake`): one HTTP server with the same
//! paths, methods, JSON fields and errcodes as DingTalk's documented oapi, new API and login
//! page, tokens that really expire, single-use auth codes that expire after 5 minutes, a user directory, per-path call counters, injectable failures,
//! and a stand-in for the `dingtalk.open.js` JSAPI.
//!
//! It also plays the app's settings in DingTalk's developer console, so `doctor` can be tested
//! against every mistake an operator makes there: API permissions that were not granted
//! ([`Permission`], errcode 60011 / `Forbidden.AccessDenied.AccessTokenPermissionDenied`, or a
//! missing `mobile`), a server IP whitelist that does not list the caller (60020, naming the IP
//! it saw), a wrong app secret (40096), and users whose answers lack `mobile` or `unionid`.
//!
//! Start one with [`FakeDingTalk::new`]`().start().await`; drive it through [`FakeHandle`].

mod pages;
mod routes;
mod state;

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use state::State;

/// A user in the fake's directory.
#[derive(Clone, Debug)]
pub struct FakeUser {
    /// userid within the corp.
    pub userid: String,
    /// unionid; `""` = DingTalk's answers omit it (the browser login cannot map the user).
    pub unionid: String,
    /// Display name.
    pub name: String,
    /// Mobile; `None` = the field is omitted (as without the 手机号 permission).
    pub mobile: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Job number.
    pub job_number: Option<String>,
    /// Job title.
    pub title: Option<String>,
    /// Department ids.
    pub dept_ids: Vec<i64>,
    /// Activated?
    pub active: bool,
    /// Avatar URL.
    pub avatar: Option<String>,
}

impl FakeUser {
    /// An active user with no optional fields; unionid derived from the userid.
    pub fn new(userid: &str, name: &str) -> FakeUser {
        FakeUser {
            userid: userid.to_string(),
            unionid: format!("union-{userid}-iiPyQqBNBii0HnCJ3zljcuAiEiE"),
            name: name.to_string(),
            mobile: None,
            email: None,
            job_number: None,
            title: None,
            dept_ids: vec![1],
            active: true,
            avatar: None,
        }
    }
}

/// An API permission of the app (开发者后台 → 开发配置 → 权限管理), as the fake enforces it.
/// All are granted unless denied with [`FakeDingTalk::deny`] / [`FakeHandle::deny_permission`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    /// 成员信息读权限 (`qyapi_get_member`): `user/get`, `topapi/v2/user/get` and
    /// `topapi/user/getbyunionid` answer 60011 without it.
    MemberRead,
    /// 通讯录个人信息读权限 (`Contact.User.Read`): `GET /v1.0/contact/users/me` answers 403
    /// `Forbidden.AccessDenied.AccessTokenPermissionDenied` without it.
    ContactUserRead,
    /// The 手机号 permissions (企业员工手机号信息 `fieldMobile`, 个人手机号信息
    /// `Contact.User.mobile`): without them the user answers simply omit `mobile`.
    Mobile,
}

impl Permission {
    /// DingTalk's code for the permission, as its 60011 message names it.
    pub fn code(self) -> &'static str {
        match self {
            Permission::MemberRead => "qyapi_get_member",
            Permission::ContactUserRead => "Contact.User.Read",
            Permission::Mobile => "fieldMobile",
        }
    }
}

/// A failure to inject on a path.
#[derive(Clone, Debug)]
pub enum Failure {
    /// oapi style `{"errcode","errmsg"}`; token errcodes on `/topapi` come wrapped in errcode 88.
    Errcode {
        /// errcode.
        errcode: i64,
        /// errmsg.
        errmsg: String,
    },
    /// New-API style: HTTP status + `{"code","message","requestid"}`.
    NewApi {
        /// HTTP status.
        status: u16,
        /// code.
        code: String,
        /// message.
        message: String,
    },
    /// A bare HTTP status with an HTML body.
    Status(u16),
    /// Accept the request, send nothing for this long, then answer normally. A delay longer
    /// than the client's timeout is a hang: `Slow(Duration::from_secs(30))`.
    Slow(Duration),
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with `Content-Type: text/html` and an HTML page, as a captive portal or a
    /// misconfigured front server answers instead of DingTalk.
    Html,
    /// The real answer with its full `Content-Length`, but only the first half of the body is
    /// sent; then the connection is closed (FIN). The client sees a body error.
    Truncated,
    /// The real answer's head and the first half of its body, then a TCP RST (`SO_LINGER` 0):
    /// the connection is reset mid-answer.
    Reset,
}

/// Shared between a connection and the requests on it: set by a [`Failure::Reset`] answer,
/// so closing the connection sends a TCP RST instead of a FIN.
#[derive(Clone, Default)]
pub(crate) struct ResetOnClose(Arc<AtomicBool>);

impl ResetOnClose {
    /// Makes the connection end with a RST.
    pub(crate) fn arm(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The address a request came from: what DingTalk checks its IP whitelist against.
#[derive(Clone, Copy)]
pub(crate) struct Peer(pub(crate) IpAddr);

/// An accepted connection that sends a RST when dropped if its [`ResetOnClose`] was armed.
struct Conn {
    stream: TcpStream,
    reset: ResetOnClose,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.reset.0.load(Ordering::SeqCst) {
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Builder for a fake DingTalk.
pub struct FakeDingTalk {
    app_key: String,
    app_secret: String,
    corp_id: String,
    token_ttl: Duration,
    code_ttl: Duration,
    users: Vec<FakeUser>,
    denied: Vec<Permission>,
    ip_whitelist: Option<Vec<IpAddr>>,
}

impl Default for FakeDingTalk {
    fn default() -> Self {
        FakeDingTalk::new()
    }
}

impl FakeDingTalk {
    /// The default app (`dingfakeappkey` / `fake-app-secret-0123456789`, corp `dingfakecorp`)
    /// and directory: zhangsan, lisi, inactive, nomobile.
    pub fn new() -> FakeDingTalk {
        let mut zhangsan = FakeUser::new("zhangsan", "张三");
        zhangsan.mobile = Some("13800000001".into());
        zhangsan.email = Some("zhangsan@example.com".into());
        zhangsan.job_number = Some("001".into());
        zhangsan.title = Some("经理".into());
        zhangsan.dept_ids = vec![1, 2];
        let mut lisi = FakeUser::new("lisi", "李四");
        lisi.mobile = Some("13800000002".into());
        lisi.title = Some("工程师".into());
        lisi.dept_ids = vec![2];
        let mut inactive = FakeUser::new("inactive", "未激活用户");
        inactive.mobile = Some("13800000003".into());
        inactive.active = false;
        let nomobile = FakeUser::new("nomobile", "No Mobile");
        FakeDingTalk {
            app_key: "dingfakeappkey".into(),
            app_secret: "fake-app-secret-0123456789".into(),
            corp_id: "dingfakecorp".into(),
            token_ttl: Duration::from_secs(7200),
            code_ttl: Duration::from_secs(300),
            users: vec![zhangsan, lisi, inactive, nomobile],
            denied: Vec::new(),
            ip_whitelist: None,
        }
    }

    /// The app has not been granted `permission` (every permission is granted by default).
    pub fn deny(mut self, permission: Permission) -> Self {
        self.denied.push(permission);
        self
    }

    /// The app's server IP whitelist (安全设置 → 服务器出口IP): token and oapi calls from any
    /// other address answer 60020 (new API: 403 `Forbidden.AccessDenied.IpNotInWhiteList`)
    /// naming the address the fake saw. Unset (the default) = no whitelist.
    pub fn ip_whitelist(mut self, ips: &[IpAddr]) -> Self {
        self.ip_whitelist = Some(ips.to_vec());
        self
    }

    /// Sets the app key and secret.
    pub fn app(mut self, app_key: &str, app_secret: &str) -> Self {
        self.app_key = app_key.into();
        self.app_secret = app_secret.into();
        self
    }

    /// Sets the corp id.
    pub fn corp_id(mut self, corp_id: &str) -> Self {
        self.corp_id = corp_id.into();
        self
    }

    /// Lifetime of app and user tokens (default 7200 s).
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = ttl;
        self
    }

    /// Lifetime of auth codes (default 5 minutes).
    pub fn code_ttl(mut self, ttl: Duration) -> Self {
        self.code_ttl = ttl;
        self
    }

    /// Adds (or replaces) a user.
    pub fn user(mut self, user: FakeUser) -> Self {
        self.users.retain(|u| u.userid != user.userid);
        self.users.push(user);
        self
    }

    /// Binds `127.0.0.1:0` and serves in a spawned task.
    pub async fn start(self) -> std::io::Result<FakeHandle> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Ok(self.serve(listener).await)
    }

    /// Serves on `listener` in a spawned task.
    pub async fn serve(self, listener: TcpListener) -> FakeHandle {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let state = Arc::new(State::new(
            format!("http://{addr}"),
            self.app_key,
            self.app_secret,
            self.corp_id,
            self.token_ttl,
            self.code_ttl,
            self.users,
        ));
        for p in self.denied {
            state.set_permission(p, false);
        }
        state.set_ip_whitelist(self.ip_whitelist);
        let serving = state.clone();
        tokio::spawn(async move {
            loop {
                let (stream, peer) = crate::conn::accept(&listener).await;
                let state = serving.clone();
                let reset = ResetOnClose::default();
                let conn = Conn {
                    stream,
                    reset: reset.clone(),
                };
                tokio::spawn(async move {
                    let service = service_fn(move |mut req: http::Request<_>| {
                        let state = state.clone();
                        req.extensions_mut().insert(reset.clone());
                        req.extensions_mut().insert(Peer(peer.ip()));
                        async move {
                            Ok::<_, std::convert::Infallible>(routes::handle(&state, req).await)
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(conn), service)
                        .await;
                });
            }
        });
        FakeHandle { addr, state }
    }
}

/// A running fake DingTalk. Cheap to clone.
#[derive(Clone)]
pub struct FakeHandle {
    addr: SocketAddr,
    state: Arc<State>,
}

impl FakeHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `http://127.0.0.1:PORT`: use as `api_base`, `new_api_base` and `login_base`.
    pub fn base_url(&self) -> String {
        self.state.base_url.clone()
    }
    /// The fake JSAPI script's URL.
    pub fn jsapi_url(&self) -> String {
        format!("{}/dingtalk.open.js", self.state.base_url)
    }
    /// The app key.
    pub fn app_key(&self) -> String {
        self.state.app_key.clone()
    }
    /// The app secret.
    pub fn app_secret(&self) -> String {
        self.state.app_secret.clone()
    }
    /// The corp id.
    pub fn corp_id(&self) -> String {
        self.state.corp_id.clone()
    }
    /// A fresh single-use auth code for `userid` (None if unknown).
    pub fn mint_code(&self, userid: &str) -> Option<String> {
        self.state.mint_code(userid)
    }
    /// Requests received on exactly this path.
    pub fn calls(&self, path: &str) -> usize {
        self.state.calls(path)
    }
    /// Forgets the call counts.
    pub fn reset_calls(&self) {
        self.state.reset_calls();
    }
    /// Every token issued so far expires now.
    pub fn expire_tokens(&self) {
        self.state.expire_tokens();
    }
    /// The next `times` requests on `path` (all of them with `None`) fail like `failure`.
    pub fn fail(&self, path: &str, failure: Failure, times: Option<usize>) {
        self.state.fail(path, failure, times);
    }
    /// Whether a failure is still waiting on `path` (false once a counted one is used up):
    /// lets a test know its one-shot failure has been applied.
    pub fn failure_armed(&self, path: &str) -> bool {
        self.state.failure_armed(path)
    }
    /// Removes every injected failure.
    pub fn clear_failures(&self) {
        self.state.clear_failures();
    }
    /// Who the fake JSAPI logs in (`None`: the user cancels, `onFail`).
    pub fn set_jsapi_user(&self, userid: Option<&str>) {
        self.state.set_jsapi_user(userid);
    }
    /// Activates or deactivates a user.
    pub fn set_user_active(&self, userid: &str, active: bool) {
        self.state.update_user(userid, |u| u.active = active);
    }
    /// The user leaves the corp: user/get answers 60121.
    pub fn remove_user(&self, userid: &str) {
        self.state.remove_user(userid);
    }
    /// Adds (or replaces) a user.
    pub fn add_user(&self, user: FakeUser) {
        self.state.add_user(user);
    }
    /// Changes a user's mobile.
    pub fn set_user_mobile(&self, userid: &str, mobile: Option<&str>) {
        self.state
            .update_user(userid, |u| u.mobile = mobile.map(str::to_string));
    }
    /// Changes a user's unionid (`None`: DingTalk's answers omit it).
    pub fn set_user_unionid(&self, userid: &str, unionid: Option<&str>) {
        self.state.update_user(userid, |u| {
            u.unionid = unionid.unwrap_or_default().to_string()
        });
    }
    /// Takes `permission` away from the app (as in the developer console).
    pub fn deny_permission(&self, permission: Permission) {
        self.state.set_permission(permission, false);
    }
    /// Grants `permission` to the app again.
    pub fn grant_permission(&self, permission: Permission) {
        self.state.set_permission(permission, true);
    }
    /// Sets the app's server IP whitelist (`None`: no whitelist, every caller is accepted).
    pub fn set_ip_whitelist(&self, ips: Option<Vec<IpAddr>>) {
        self.state.set_ip_whitelist(ips);
    }
}
