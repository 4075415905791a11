//! The signed assertion (`[assertion]`) against a live proxy, verified by an independent
//! library: PyJWT with cryptography (from the test venv) fetches `/_auth/jwks.json` over HTTP
//! and checks the token of a proxied request and of a `verify` answer — signature, `iss`,
//! `aud`, the claims of the logged-in DingTalk user, and that it is refused after `exp`.
//! A client-sent assertion never reaches the upstream and never authenticates anyone.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::binary;
use common::{free_port, get_url, inapp_login_via, seen, wangwu};
use dingtalk_auth_proxy::fake::FakeDingTalk;

/// The test venv's Python (`$DAP_TEST_VENV`, else `target/test-venv`, made by `bash .ci/run`).
/// Missing is a failure, never a skip.
fn venv_python() -> PathBuf {
    let venv = std::env::var_os("DAP_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-venv"));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash .ci/run` (it creates the venv target/test-venv with PyJWT and \
         cryptography), or point DAP_TEST_VENV at a venv that has them",
        python.display()
    );
    python
}

/// What PyJWT said about a token.
#[derive(Debug)]
enum Verdict {
    /// Verified; the claims.
    Valid(serde_json::Value),
    /// Refused; PyJWT's error class and message.
    Rejected(String),
}

/// Runs `tests/assertion/verify.py` on `token`: JWKS from `h`'s endpoint, issuer and audience
/// as the proxy's config makes them, time claims judged at `now` (or the real clock).
async fn pyjwt(h: &common::Harness, token: &str, now: Option<u64>) -> Verdict {
    pyjwt_at(&h.base, &format!("http://{}", h.upstream), token, now).await
}

/// [`pyjwt`] against the proxy at `base` (also the issuer), expecting `audience`.
async fn pyjwt_at(base: &str, audience: &str, token: &str, now: Option<u64>) -> Verdict {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/assertion/verify.py");
    let mut args = vec![
        script.display().to_string(),
        format!("{base}/_auth/jwks.json"),
        base.to_string(),
        audience.to_string(),
    ];
    if let Some(now) = now {
        args.push(now.to_string());
    }
    let out = python(&args, token).await;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => Verdict::Valid(serde_json::from_str(&stdout).expect("claims JSON")),
        Some(1) if stdout.starts_with("REJECTED ") => Verdict::Rejected(stdout),
        _ => panic!("verify.py failed: {stdout} {stderr}"),
    }
}

/// The venv's Python with `args`, `stdin` on its standard input; its output once it exits
/// (bounded: 60 s).
async fn python(args: &[String], stdin: &str) -> std::process::Output {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(venv_python())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python starts");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("stdin written");
    drop(input);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("python finishes")
        .expect("python runs")
}

fn valid(v: Verdict) -> serde_json::Value {
    match v {
        Verdict::Valid(claims) => claims,
        Verdict::Rejected(why) => panic!("PyJWT refused the assertion: {why}"),
    }
}

/// A harness with assertions on (generated key), logged in as wangwu: (harness, cookie).
async fn logged_in() -> (common::Harness, String) {
    let h = common::start_with(|c| c.assertion.enabled = true).await;
    let (session, _) = h.login_inapp("wangwu", "/").await;
    (h, session)
}

/// The one assertion the upstream saw.
fn upstream_assertion(echo: &serde_json::Value) -> String {
    let got = seen(echo, "x-dingtalk-assertion");
    assert_eq!(got.len(), 1, "exactly one assertion upstream: {got:?}");
    got[0].to_string()
}

/// The JWKS is public (no session), cacheable, and lists one ES256 signing key with a kid.
#[tokio::test]
async fn jwks_is_published() {
    let (h, _) = logged_in().await;
    let r = h.get("/_auth/jwks.json", &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "public, max-age=300");
    assert_eq!(r.headers()["content-type"], "application/json");
    let jwks: serde_json::Value = r.json().await.expect("JSON");
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    for (k, v) in [
        ("kty", "EC"),
        ("crv", "P-256"),
        ("alg", "ES256"),
        ("use", "sig"),
    ] {
        assert_eq!(keys[0][k], v, "{k}");
    }
    assert!(keys[0]["kid"].as_str().is_some_and(|k| !k.is_empty()));
    let off = common::start().await;
    assert_eq!(off.get("/_auth/jwks.json", &[]).await.status(), 404);
}

/// The assertion on a proxied request verifies with PyJWT against the JWKS over HTTP, its
/// claims are the logged-in DingTalk user's, and it is refused from its `exp` on.
#[tokio::test]
async fn proxied_assertion_verifies_with_pyjwt() {
    let (h, session) = logged_in().await;
    let echo = h.echo(&session, "/app", &[]).await;
    let token = upstream_assertion(&echo);
    let claims = valid(pyjwt(&h, &token, None).await);
    let user = wangwu();
    assert_eq!(claims["iss"], h.base.as_str());
    assert_eq!(claims["aud"], format!("http://{}", h.upstream));
    assert_eq!(claims["sub"], "wangwu");
    assert_eq!(claims["userid"], "wangwu");
    assert_eq!(claims["unionid"], user.unionid.as_str());
    assert_eq!(claims["name"], "王五");
    assert_eq!(claims["mobile"], "13900000002");
    assert_eq!(claims["dept_ids"], serde_json::json!([10, 20]));
    assert_eq!(claims["corp_id"], h.fake.corp_id().as_str());
    let iat = claims["iat"].as_u64().expect("iat");
    let exp = claims["exp"].as_u64().expect("exp");
    assert_eq!(exp - iat, 60, "default ttl");
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));

    // Judged at its last valid second it passes; at `exp` PyJWT refuses it.
    valid(pyjwt(&h, &token, Some(exp - 1)).await);
    match pyjwt(&h, &token, Some(exp)).await {
        Verdict::Rejected(why) => assert!(why.contains("ExpiredSignatureError"), "{why}"),
        Verdict::Valid(c) => panic!("accepted after exp: {c}"),
    }

    // Reused while more than half its life is left; then the proxy signs a new one, by its
    // own clock: the upstream never gets a token that is about to run out.
    let again = upstream_assertion(&h.echo(&session, "/app", &[]).await);
    assert_eq!(again, token, "one token per session for half its lifetime");
    h.clock.advance(Duration::from_secs(31));
    let newer = upstream_assertion(&h.echo(&session, "/app", &[]).await);
    assert_ne!(newer, token);
    let newer_claims = valid(pyjwt(&h, &newer, Some(iat + 31)).await);
    assert_eq!(newer_claims["iat"].as_u64(), Some(iat + 31));
}

/// `verify` answers carry the assertion too, and it verifies the same way.
#[tokio::test]
async fn verify_answer_carries_the_assertion() {
    let (h, session) = logged_in().await;
    let r = h.get("/_auth/verify", &[("cookie", &session)]).await;
    assert_eq!(r.status(), 200);
    let token = r.headers()["x-dingtalk-assertion"]
        .to_str()
        .expect("ASCII")
        .to_string();
    let claims = valid(pyjwt(&h, &token, None).await);
    assert_eq!(claims["userid"], "wangwu");
    // Without a session: 401, and no assertion at all.
    let r = h.get("/_auth/verify", &[]).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("x-dingtalk-assertion").is_none());
}

/// A client-sent assertion — in any spelling, even a genuine token replayed — never reaches
/// the upstream and never authenticates anyone; a tampered token fails verification.
#[tokio::test]
async fn forged_assertions_never_pass() {
    let (h, session) = logged_in().await;
    let echo = h.echo(&session, "/app", &[]).await;
    let genuine = upstream_assertion(&echo);

    // Without a session, a genuine token replayed by the client is no login.
    for path in ["/app", "/_auth/verify", "/_auth/userinfo"] {
        let r = h
            .get(
                path,
                &[
                    ("accept", "application/json"),
                    ("x-dingtalk-assertion", &genuine),
                    ("authorization", &format!("Bearer {genuine}")),
                ],
            )
            .await;
        assert_eq!(r.status(), 401, "{path}");
    }
    // On a skip_auth path the client's copies are stripped in every spelling.
    let r = get_url(
        &format!("{}/public/x", h.base),
        &[
            ("accept", "application/json"),
            ("X-DingTalk-Assertion", "forged"),
            ("x_dingtalk_assertion", "forged"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.expect("echo JSON");
    assert!(seen(&echo, "x-dingtalk-assertion").is_empty(), "{echo}");
    assert!(seen(&echo, "x_dingtalk_assertion").is_empty(), "{echo}");
    // Logged in, with a forged header: the upstream sees only ours.
    let echo = h
        .echo(
            &session,
            "/app",
            &[
                ("x-dingtalk-assertion", "forged"),
                ("X_DingTalk_Assertion", "f"),
            ],
        )
        .await;
    assert_eq!(upstream_assertion(&echo), genuine);
    assert!(seen(&echo, "x_dingtalk_assertion").is_empty());

    // A token whose claims were edited no longer verifies.
    let mut parts: Vec<String> = genuine.split('.').map(str::to_string).collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims = String::from_utf8(b64.decode(&parts[1]).expect("b64")).expect("utf8");
    parts[1] = b64.encode(claims.replace("wangwu", "admin"));
    match pyjwt(&h, &parts.join("."), None).await {
        Verdict::Rejected(why) => assert!(why.contains("InvalidSignatureError"), "{why}"),
        Verdict::Valid(c) => panic!("tampered token accepted: {c}"),
    }
    // Nor does one from another proxy's key (its kid is not in this JWKS).
    let (other, other_session) = logged_in().await;
    let foreign = upstream_assertion(&other.echo(&other_session, "/app", &[]).await);
    assert!(matches!(
        pyjwt(&h, &foreign, None).await,
        Verdict::Rejected(_)
    ));
}

/// A P-256 key as a PKCS#8 PEM file in `dir`; its path.
fn write_key(dir: &std::path::Path, name: &str) -> String {
    let doc = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &ring::rand::SystemRandom::new(),
    )
    .expect("key generated");
    let path = dir.join(name);
    let text = pem::encode(&pem::Pem::new("PRIVATE KEY", doc.as_ref().to_vec()));
    std::fs::write(&path, text).expect("key written");
    path.display().to_string()
}

/// The `verify` answer's assertion for `cookie` from the proxy at `base`.
async fn verify_assertion(base: &str, cookie: &str) -> String {
    let r = get_url(&format!("{base}/_auth/verify"), &[("cookie", cookie)]).await;
    assert_eq!(r.status(), 200);
    r.headers()["x-dingtalk-assertion"]
        .to_str()
        .expect("ASCII")
        .to_string()
}

/// Key rotation with the real binary (auth-only mode, so `aud` is the public origin): a token
/// signed with key 1 still verifies after a restart with `key_file` = key 2 and
/// `previous_key_files` = [key 1]; the new key signs from then on. Without `key_file` the
/// binary generates a key and says so, warning about replicas; an unreadable `key_file` is a
/// start-up error naming the key.
#[tokio::test]
async fn key_rotation_with_the_binary() {
    let fake = FakeDingTalk::new()
        .user(wangwu())
        .start()
        .await
        .expect("fake DingTalk starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let (key1, key2) = (
        write_key(dir.path(), "k1.pem"),
        write_key(dir.path(), "k2.pem"),
    );
    let port = free_port();
    let on = ("DAP_ASSERTION__ENABLED", "true");

    let p = binary::start_on(&fake, port, &[on, ("DAP_ASSERTION__KEY_FILE", &key1)]);
    let (cookie, _) = inapp_login_via(&p.base, &fake, "wangwu", "/_auth/login?rd=/").await;
    let base = p.base.clone();
    let old = verify_assertion(&base, &cookie).await;
    valid(pyjwt_at(&base, &base, &old, None).await);
    drop(p);

    let p = binary::start_on(
        &fake,
        port,
        &[
            on,
            ("DAP_ASSERTION__KEY_FILE", &key2),
            ("DAP_ASSERTION__PREVIOUS_KEY_FILES", &key1),
        ],
    );
    let jwks: serde_json::Value = get_url(&format!("{base}/_auth/jwks.json"), &[])
        .await
        .json()
        .await
        .expect("JWKS");
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2));
    valid(pyjwt_at(&base, &base, &old, None).await);
    let new = verify_assertion(&base, &cookie).await;
    assert_ne!(new.split('.').next(), old.split('.').next(), "another kid");
    valid(pyjwt_at(&base, &base, &new, None).await);
    drop(p);

    // Key 1 retired: its tokens no longer verify.
    let p = binary::start_on(&fake, port, &[on, ("DAP_ASSERTION__KEY_FILE", &key2)]);
    assert!(matches!(
        pyjwt_at(&base, &base, &old, None).await,
        Verdict::Rejected(_)
    ));
    drop(p);

    // No key file: generated, logged, and replicas warned about.
    let p = binary::start(&fake, &[on]);
    let log = p.startup.join("\n");
    assert!(log.contains("generated an ES256 signing key"), "{log}");
    assert!(
        log.contains("WARN") && log.contains("shared assertion.key_file"),
        "{log}"
    );
    drop(p);

    // A key file that cannot be read stops the start, naming the key and the file.
    let mut cmd = std::process::Command::new(binary::BIN);
    let absent = dir.path().join("absent.pem").display().to_string();
    cmd.env_clear()
        .env("DAP_DINGTALK__APP_KEY", "k")
        .env("DAP_DINGTALK__APP_SECRET", "s")
        .env("DAP_DINGTALK__CORP_ID", "dingc")
        .env("DAP_SESSION__SECRET", common::SECRET)
        .env("DAP_LISTEN", "127.0.0.1:0")
        .env("DAP_ASSERTION__ENABLED", "true")
        .env("DAP_ASSERTION__KEY_FILE", &absent);
    let out = cmd.output().expect("binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("assertion.key_file") && stderr.contains("absent.pem"),
        "{stderr}"
    );
}

/// The README's Python example, taken from the README itself (the ```python block of the
/// "Signed assertion" section) with only its example addresses replaced by the live proxy's,
/// verifies a real assertion — so the snippet users copy cannot drift from what works.
#[tokio::test]
async fn readme_python_example_runs_against_a_live_proxy() {
    let (h, session) = logged_in().await;
    let echo = h.echo(&session, "/app", &[]).await;
    let token = upstream_assertion(&echo);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let section = &readme[readme.find("## Signed assertion").expect("section")..];
    let start = section.find("```python\n").expect("python block") + "```python\n".len();
    let snippet = &section[start..start + section[start..].find("```").expect("block end")];
    let snippet = snippet
        .replace("https://app.example.com", &h.base)
        .replace("http://10.0.0.5:8080", &format!("http://{}", h.upstream));
    let program = format!(
        "{snippet}\n\
         import json, sys\n\
         class Request:\n    headers = {{'X-DingTalk-Assertion': sys.stdin.read().strip()}}\n\
         print(json.dumps(user_of(Request()), ensure_ascii=False))\n"
    );
    let out = python(&["-c".to_string(), program.clone()], &token).await;
    assert!(
        out.status.success(),
        "the README snippet failed: {}\n{program}",
        String::from_utf8_lossy(&out.stderr)
    );
    let claims: serde_json::Value = serde_json::from_slice(&out.stdout).expect("claims");
    assert_eq!(claims["sub"], "wangwu");
}

/// With assertions off, a client-sent assertion header (any spelling) still never reaches
/// the app: the name is ours either way.
#[tokio::test]
async fn client_assertion_is_stripped_while_off() {
    let h = common::start().await;
    let (session, _) = h.login_inapp("wangwu", "/").await;
    let echo = h
        .echo(
            &session,
            "/app",
            &[
                ("x-dingtalk-assertion", "forged"),
                ("X_DingTalk_Assertion", "forged"),
            ],
        )
        .await;
    assert!(seen(&echo, "x-dingtalk-assertion").is_empty(), "{echo}");
    assert!(
        echo["headers"].get("x_dingtalk_assertion").is_none(),
        "{echo}"
    );
}

/// With `[[routes]]`, each route's assertion is addressed to its own upstream (`aud`), and
/// verifies with PyJWT for that audience.
#[tokio::test]
async fn each_route_gets_its_own_audience() {
    let other = dingtalk_auth_proxy::demo::start_echo().await.expect("echo");
    let h = common::start_with(|c| {
        c.assertion.enabled = true;
        let up = c.upstream.take().expect("echo");
        let based = url::Url::parse(&format!("http://{other}/second")).expect("URL");
        c.routes = vec![
            dingtalk_auth_proxy::config::RouteConfig {
                upstream: Some(up),
                ..Default::default()
            },
            dingtalk_auth_proxy::config::RouteConfig {
                path_prefix: "/second".into(),
                upstream: Some(based),
                ..Default::default()
            },
        ];
    })
    .await;
    let (session, _) = h.login_inapp("wangwu", "/").await;
    for (path, aud) in [
        ("/app", format!("http://{}", h.upstream)),
        ("/second/x", format!("http://{other}")),
    ] {
        let echo = h.echo(&session, path, &[]).await;
        let token = upstream_assertion(&echo);
        let claims = valid(pyjwt_at(&h.base, &aud, &token, None).await);
        assert_eq!(claims["aud"], aud.as_str(), "{path}");
    }
}
