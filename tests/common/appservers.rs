//! Real third-party app servers on 127.0.0.1 for integration tests, and raw-socket clients that
//! talk to them (or to our proxy in front of them) without normalising anything:
//!
//! - [`start_tomcat`]: Tomcat 10 (Debian's `tomcat10`) with stock path-parameter handling, so
//!   `/public/..;/admin/secret.txt` reaches `/admin/secret.txt` when sent to it directly.
//! - [`start_h2c_app`]: hypercorn serving an ASGI echo app; it accepts `Upgrade: h2c` on plain
//!   HTTP/1.1 and speaks HTTP/2 on the same socket afterwards.
//! - [`raw_get`] / [`raw_request`]: HTTP/1.1 over a bare `TcpStream`, request-target sent as is.
//! - [`h2c_smuggle`]: the h2c upgrade smuggling attack, as a client.
//!
//! A missing server fails the test with an install hint (`bash .ci/run`); nothing skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{free_port, spawn_guarded, ChildGuard};

/// Debian's CATALINA_HOME.
pub const TOMCAT_HOME: &str = "/usr/share/tomcat10";
/// Body of `/public/hello.txt` on the test Tomcat.
pub const TOMCAT_PUBLIC_BODY: &str = "public hello";
/// Body of `/admin/secret.txt` on the test Tomcat.
pub const TOMCAT_SECRET_BODY: &str = "TOP SECRET admin page";

/// How long a server may take to accept connections (a JVM on 2 cores takes seconds).
const START_LIMIT: Duration = Duration::from_secs(60);
/// How long a started server may take to serve its first good answer.
const READY_LIMIT: Duration = Duration::from_secs(30);
/// Bound of one raw exchange (connect, write, read).
const IO_LIMIT: Duration = Duration::from_secs(10);
/// Largest response head read by [`h2c_smuggle`].
const MAX_HEAD: usize = 64 * 1024;
/// Pause between two readiness polls.
const POLL: Duration = Duration::from_millis(50);

/// The ASGI app hypercorn serves: answers every request with a JSON echo of what it received.
pub const ECHO_APP_PY: &str = r#"
import json


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    headers = {}
    for name, value in scope["headers"]:
        headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    payload = json.dumps({
        "method": scope["method"],
        "path": scope["path"],
        "raw_path": scope.get("raw_path", b"").decode("latin-1"),
        "query_string": scope.get("query_string", b"").decode("latin-1"),
        "http_version": scope["http_version"],
        "headers": headers,
        "body_len": len(body),
    }).encode()
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ],
    })
    await send({"type": "http.response.body", "body": payload})
"#;

/// A running Tomcat 10 with a private CATALINA_BASE; stopped (SIGTERM to its process group, see
/// [`ChildGuard`]) and its base removed on drop.
pub struct Tomcat {
    /// The HTTP/1.1 connector's port on 127.0.0.1.
    pub port: u16,
    /// The private CATALINA_BASE (a tempdir).
    pub base: PathBuf,
    /// Tomcat's stdout + stderr.
    pub log: PathBuf,
    /// From spawn to the first 200 for `/public/hello.txt`.
    pub startup: Duration,
    // Field order matters: the process dies before its directory goes.
    _guard: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Tomcat {
    /// The JVM's pid, which is also its process group's id.
    pub fn pid(&self) -> u32 {
        self._guard.id()
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What Tomcat has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Starts Tomcat 10 on 127.0.0.1:<free port> serving a ROOT webapp with `public/hello.txt`
/// and `admin/secret.txt`; returns once `/public/hello.txt` answers 200 (bounded).
pub async fn start_tomcat() -> Tomcat {
    let home = Path::new(TOMCAT_HOME);
    let catalina = home.join("bin/catalina.sh");
    assert!(
        catalina.exists() && home.join("lib/catalina.jar").exists(),
        "Tomcat 10 is not installed ({} missing): run `bash .ci/run` (it installs the \
         Debian package tomcat10) or apt-get install tomcat10",
        catalina.display()
    );
    let dir = tempfile::Builder::new()
        .prefix("dap-tomcat-")
        .tempdir()
        .expect("a tempdir for CATALINA_BASE");
    let base = dir.path().to_path_buf();
    for sub in [
        "conf",
        "logs",
        "temp",
        "work",
        "webapps/ROOT/public",
        "webapps/ROOT/admin",
    ] {
        std::fs::create_dir_all(base.join(sub)).expect("create a CATALINA_BASE directory");
    }
    let port = free_port();
    write(&base.join("conf/server.xml"), &tomcat_server_xml(port));
    write(&base.join("conf/web.xml"), &tomcat_web_xml());
    write(
        &base.join("webapps/ROOT/public/hello.txt"),
        TOMCAT_PUBLIC_BODY,
    );
    write(
        &base.join("webapps/ROOT/admin/secret.txt"),
        TOMCAT_SECRET_BODY,
    );

    let log = base.join("catalina.out");
    let (stdout, stderr) = log_pair(&log);
    let mut cmd = Command::new("/bin/sh");
    cmd.arg(&catalina)
        .arg("run")
        .current_dir(&base)
        .env("CATALINA_HOME", home)
        .env("CATALINA_BASE", &base)
        .env("CATALINA_TMPDIR", base.join("temp"))
        // Light JVM settings for a 2-core machine; nothing here touches request handling.
        .env(
            "JAVA_OPTS",
            "-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
             -Djava.security.egd=file:/dev/./urandom",
        )
        .env_remove("CATALINA_OPTS")
        .env_remove("CATALINA_PID")
        .env_remove("CATALINA_OUT")
        .env_remove("CATALINA_LOGGING_CONFIG")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    if std::env::var_os("JAVA_HOME").is_none() && std::env::var_os("JRE_HOME").is_none() {
        if let Some(java_home) = java_home() {
            cmd.env("JAVA_HOME", java_home);
        }
    }
    let started = Instant::now();
    // `catalina.sh run` execs java in the foreground; SIGTERM runs Tomcat's shutdown hook.
    let mut guard = spawn_guarded(&mut cmd).expect("spawn catalina.sh run");
    let addr = format!("127.0.0.1:{port}");
    wait_until_serving(
        &mut guard,
        "Tomcat",
        &log,
        &addr,
        "/public/hello.txt",
        |s, b| s == 200 && b == TOMCAT_PUBLIC_BODY,
    )
    .await;
    Tomcat {
        port,
        base,
        log,
        startup: started.elapsed(),
        _guard: guard,
        _dir: dir,
    }
}

/// One HTTP/1.1 connector on 127.0.0.1, no shutdown port, no AJP, stock path handling.
fn tomcat_server_xml(port: u16) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector address="127.0.0.1" port="{port}" protocol="HTTP/1.1" connectionTimeout="20000" />
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false" />
    </Engine>
  </Service>
</Server>
"#
    )
}

/// The stock conf/web.xml (DefaultServlet and friends), or a minimal one with the DefaultServlet.
fn tomcat_web_xml() -> String {
    for candidate in ["/usr/share/tomcat10/conf/web.xml", "/etc/tomcat10/web.xml"] {
        if let Ok(text) = std::fs::read_to_string(candidate) {
            return text;
        }
    }
    r#"<?xml version="1.0" encoding="UTF-8"?>
<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee" version="6.0">
  <servlet>
    <servlet-name>default</servlet-name>
    <servlet-class>org.apache.catalina.servlets.DefaultServlet</servlet-class>
    <init-param><param-name>listings</param-name><param-value>false</param-value></init-param>
    <load-on-startup>1</load-on-startup>
  </servlet>
  <servlet-mapping>
    <servlet-name>default</servlet-name>
    <url-pattern>/</url-pattern>
  </servlet-mapping>
  <mime-mapping><extension>txt</extension><mime-type>text/plain</mime-type></mime-mapping>
</web-app>
"#
    .to_string()
}

/// JAVA_HOME of the `java` on PATH (Tomcat's scripts find it themselves too; this is belt and braces).
fn java_home() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let java = std::env::split_paths(&path)
        .map(|d| d.join("java"))
        .find(|p| p.exists())?;
    let real = std::fs::canonicalize(java).ok()?;
    // .../jvm/NAME/bin/java -> .../jvm/NAME
    Some(real.parent()?.parent()?.to_path_buf())
}

/// A running hypercorn serving [`ECHO_APP_PY`]; stopped (SIGTERM to its process group, see
/// [`ChildGuard`]) and its tempdir removed on drop.
pub struct H2cApp {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// hypercorn's stdout + stderr.
    pub log: PathBuf,
    /// From spawn to the first 200 from the echo app.
    pub startup: Duration,
    _guard: ChildGuard,
    _dir: tempfile::TempDir,
}

impl H2cApp {
    /// hypercorn's pid, which is also its process group's id.
    pub fn pid(&self) -> u32 {
        self._guard.id()
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What hypercorn has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// hypercorn from the test venv: `$DAP_TEST_VENV/bin/hypercorn`, else
/// `<crate>/target/test-venv/bin/hypercorn` (made by `bash .ci/run`). Panics when missing.
pub fn hypercorn_binary() -> PathBuf {
    let venv = std::env::var_os("DAP_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv"));
    let bin = venv.join("bin/hypercorn");
    assert!(
        bin.exists(),
        "hypercorn is not installed at {}: run `bash .ci/run` (it creates the venv \
         target/test-venv with `pip install hypercorn==0.17.3 h2==4.2.0`), or point DAP_TEST_VENV at a \
         venv that has it",
        bin.display()
    );
    bin
}

/// Starts hypercorn on 127.0.0.1:<free port> serving the JSON echo app (HTTP/1.1 and h2c);
/// returns once the app answers 200 (bounded).
pub async fn start_h2c_app() -> H2cApp {
    let hypercorn = hypercorn_binary();
    let dir = tempfile::Builder::new()
        .prefix("dap-h2c-")
        .tempdir()
        .expect("a tempdir for the echo app");
    write(&dir.path().join("dap_echo_app.py"), ECHO_APP_PY);
    let port = free_port();
    let log = dir.path().join("hypercorn.log");
    let (stdout, stderr) = log_pair(&log);
    let started = Instant::now();
    let mut cmd = Command::new(&hypercorn);
    cmd.arg("--bind")
        .arg(format!("127.0.0.1:{port}"))
        // 0 = serve in this process (no worker children to coordinate at shutdown).
        .arg("--workers")
        .arg("0")
        .arg("--access-logfile")
        .arg("-")
        .arg("--error-logfile")
        .arg("-")
        .arg("dap_echo_app:app")
        .current_dir(dir.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    let mut guard = spawn_guarded(&mut cmd).expect("spawn hypercorn");
    let addr = format!("127.0.0.1:{port}");
    wait_until_serving(&mut guard, "hypercorn", &log, &addr, "/ready", |s, b| {
        s == 200 && b.contains("\"path\": \"/ready\"")
    })
    .await;
    H2cApp {
        port,
        log,
        startup: started.elapsed(),
        _guard: guard,
        _dir: dir,
    }
}

/// Waits (bounded in time, so in count) until `addr` accepts connections and `path` answers as
/// `good` says; panics with the server's log if it exits or the limits run out.
async fn wait_until_serving(
    guard: &mut ChildGuard,
    what: &str,
    log: &Path,
    addr: &str,
    path: &str,
    good: impl Fn(u16, &str) -> bool,
) {
    let fail = |why: String| -> ! {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        panic!("{what} {why}; its log ({}):\n{text}", log.display())
    };
    let end = Instant::now() + START_LIMIT;
    loop {
        if let Some(status) = guard.try_wait().expect("poll the server process") {
            fail(format!("exited early ({status})"));
        }
        if TcpStream::connect(addr).await.is_ok() {
            break;
        }
        if Instant::now() >= end {
            fail(format!("did not listen on {addr} within {START_LIMIT:?}"));
        }
        tokio::time::sleep(POLL).await;
    }
    let end = Instant::now() + READY_LIMIT;
    loop {
        if let Some(status) = guard.try_wait().expect("poll the server process") {
            fail(format!("exited early ({status})"));
        }
        let last = match try_raw_request(addr, &get_request(addr, path, &[])).await {
            Ok((status, body)) if good(status, &body) => return,
            Ok((status, body)) => format!("{status} {body}"),
            Err(e) => e,
        };
        if Instant::now() >= end {
            fail(format!(
                "did not serve GET {path} within {READY_LIMIT:?} (last: {last})"
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Sends `GET {target} HTTP/1.1` to `addr` over a bare TCP connection, the request-target bytes
/// exactly as given (no normalisation), with `Host` (unless `extra_headers` has one),
/// `Connection: close` and `extra_headers`; returns the status and the (de-chunked) body.
/// Bounded by a timeout; panics on I/O errors or an unparsable answer.
pub async fn raw_get(addr: &str, target: &str, extra_headers: &[(&str, &str)]) -> (u16, String) {
    raw_request(addr, &get_request(addr, target, extra_headers)).await
}

/// Sends `request` (a whole HTTP/1.1 request, head and body) to `addr` as is and reads the
/// answer to the end; returns the status and the (de-chunked) body. Bounded by a timeout.
pub async fn raw_request(addr: &str, request: &[u8]) -> (u16, String) {
    try_raw_request(addr, request)
        .await
        .unwrap_or_else(|e| panic!("raw HTTP/1.1 exchange with {addr}: {e}"))
}

fn get_request(addr: &str, target: &str, extra_headers: &[(&str, &str)]) -> Vec<u8> {
    let mut req = format!("GET {target} HTTP/1.1\r\n");
    if !extra_headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("host"))
    {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in extra_headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    req.into_bytes()
}

async fn try_raw_request(addr: &str, request: &[u8]) -> Result<(u16, String), String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .write_all(request)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok::<_, String>(answer)
    };
    let answer = tokio::time::timeout(IO_LIMIT, exchange)
        .await
        .map_err(|_| format!("no complete answer within {IO_LIMIT:?}"))??;
    let head_end = find(&answer, b"\r\n\r\n").ok_or_else(|| {
        format!(
            "no complete response head in {:?}",
            String::from_utf8_lossy(&answer)
        )
    })?;
    let head = String::from_utf8_lossy(&answer[..head_end]).into_owned();
    let status = parse_status(&head)?;
    let body = &answer[head_end + 4..];
    let chunked = head.lines().skip(1).any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    let body = if chunked {
        dechunk(body).unwrap_or_else(|| body.to_vec())
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The status code of an HTTP/1.x status line.
fn parse_status(head: &str) -> Result<u16, String> {
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    match (parts.next(), parts.next().map(str::parse::<u16>)) {
        (Some(v), Some(Ok(code))) if v.starts_with("HTTP/1.") => Ok(code),
        _ => Err(format!("not an HTTP/1.x status line: {line:?}")),
    }
}

/// Decodes a chunked body; `None` if it is malformed.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What [`h2c_smuggle`] saw.
#[derive(Debug, Clone)]
pub struct SmuggleOutcome {
    /// Status of the answer to the HTTP/1.1 upgrade request.
    pub first_status: u16,
    /// That answer's head (status line and headers), for assertion messages.
    pub first_head: String,
    /// Whether the connection switched to HTTP/2 (status 101).
    pub upgraded: bool,
    /// Status of the request smuggled over the upgraded connection, if it got an answer.
    pub smuggled_status: Option<u16>,
    /// Body of that answer, if it got one.
    pub smuggled_body: Option<String>,
    /// Why the smuggled exchange failed after a 101 (e.g. the peer closed), if it did.
    pub smuggle_error: Option<String>,
}

/// `HTTP2-Settings` value: base64url of a SETTINGS payload holding ENABLE_PUSH = 0.
pub const H2C_SETTINGS: &str = "AAIAAAAA";

/// The h2c upgrade smuggling attack: sends `GET {first_path}` with `Upgrade: h2c` (and
/// `Cookie` if given) to `addr`; if the answer is 101, speaks HTTP/2 on the same socket and
/// sends `GET {smuggled_path}` with `smuggled_headers` on stream 3, reporting the answer.
/// `Err` only when no response head to the first request arrives (bounded by timeouts).
pub async fn h2c_smuggle(
    addr: &str,
    first_path: &str,
    cookie: Option<&str>,
    smuggled_path: &str,
    smuggled_headers: &[(&str, &str)],
) -> Result<SmuggleOutcome, String> {
    let mut stream = tokio::time::timeout(IO_LIMIT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect to {addr}: timed out"))?
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let mut req = format!(
        "GET {first_path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade, HTTP2-Settings\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: {H2C_SETTINGS}\r\n"
    );
    if let Some(cookie) = cookie {
        req.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    req.push_str("\r\n");
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| format!("write the upgrade request: {e}"))?;
    let head = tokio::time::timeout(IO_LIMIT, read_head(&mut stream))
        .await
        .map_err(|_| format!("no response head within {IO_LIMIT:?}"))??;
    let first_status = parse_status(&head)?;
    let mut outcome = SmuggleOutcome {
        first_status,
        first_head: head,
        upgraded: first_status == 101,
        smuggled_status: None,
        smuggled_body: None,
        smuggle_error: None,
    };
    if !outcome.upgraded {
        return Ok(outcome);
    }
    let smuggled = tokio::time::timeout(
        IO_LIMIT,
        h2_request_after_upgrade(stream, addr, smuggled_path, smuggled_headers),
    )
    .await
    .unwrap_or_else(|_| Err(format!("no HTTP/2 answer within {IO_LIMIT:?}")));
    match smuggled {
        Ok((status, body)) => {
            outcome.smuggled_status = Some(status);
            outcome.smuggled_body = Some(body);
        }
        Err(e) => outcome.smuggle_error = Some(e),
    }
    Ok(outcome)
}

/// Reads a response head byte by byte (so nothing after it is consumed), without the final
/// blank line; bounded in size.
async fn read_head(stream: &mut TcpStream) -> Result<String, String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err(format!("response head longer than {MAX_HEAD} bytes"));
        }
        let n = stream
            .read(&mut byte)
            .await
            .map_err(|e| format!("read the response head: {e}"))?;
        if n == 0 {
            return Err(format!(
                "connection closed before a complete response head (got {:?})",
                String::from_utf8_lossy(&head)
            ));
        }
        head.push(byte[0]);
    }
    head.truncate(head.len() - 4);
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// HTTP/2 over a socket that just answered 101 to an h2c upgrade. The upgraded request owns
/// stream 1 (its answer arrives there and is reset as unknown), so ours goes on stream 3.
async fn h2_request_after_upgrade(
    stream: TcpStream,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String), String> {
    let (client, connection) = h2::client::Builder::new()
        .initial_stream_id(3)
        .handshake::<_, bytes::Bytes>(stream)
        .await
        .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let result = async {
        let mut client = client
            .ready()
            .await
            .map_err(|e| format!("HTTP/2 connection not ready: {e}"))?;
        let mut request = http::Request::builder()
            .method("GET")
            .uri(format!("http://{authority}{path}"));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request
            .body(())
            .map_err(|e| format!("build the smuggled request: {e}"))?;
        let (response, _) = client
            .send_request(request, true)
            .map_err(|e| format!("send the smuggled request: {e}"))?;
        let response = response
            .await
            .map_err(|e| format!("smuggled response: {e}"))?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| format!("smuggled response body: {e}"))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            bytes.extend_from_slice(&chunk);
        }
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }
    .await;
    driver.abort();
    result
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// One log file as both stdout and stderr of a child.
fn log_pair(log: &Path) -> (std::fs::File, std::fs::File) {
    let out =
        std::fs::File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
    let err = out
        .try_clone()
        .unwrap_or_else(|e| panic!("clone {}: {e}", log.display()));
    (out, err)
}
