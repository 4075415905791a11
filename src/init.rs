//! `dingtalk-auth-proxy init`: writes a first, commented config file.
//!
//! The answers (app key, app secret, corp id, public URL, optional upstream) come from
//! prompts ([`prompt_answers`]: the secret without echo on a terminal, plain lines from a pipe)
//! or from flags ([`Answers::new`] checks them either way). [`render`] turns them into TOML
//! with a comment on every key and a fresh `session.secret` ([`generate_secret`], from the
//! OS's CSPRNG), checked to load exactly as `check-config` loads it; [`write`] creates the file
//! with mode 0600, refusing to replace an existing one unless forced (then atomically, by a
//! rename). Nothing here prints the app secret or the session secret.

use std::io::{BufRead, Write};
use std::path::Path;

use base64::Engine;
use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use rand::RngCore;
use url::Url;

use crate::config::Config;

/// Why `init` could not write a config.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// An answer is not usable; the message names it and says why (exit code 2).
    #[error("{key}: {message}")]
    Invalid {
        /// Which answer (`--public-url`, `app key` …).
        key: &'static str,
        /// What is wrong, with an example.
        message: String,
    },
    /// The output file exists and `--force` was not given (exit code 2).
    #[error("{0} already exists; not overwriting it (use --force to replace it)")]
    Exists(String),
    /// Standard input ended before every answer was given (exit code 2).
    #[error("input ended before {0} was given")]
    InputEnded(&'static str),
    /// Writing the file failed (exit code 1).
    #[error("cannot write {file}: {source}")]
    Io {
        /// The path.
        file: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The generated TOML did not load (a bug; exit code 1).
    #[error("the generated config does not load: {0}")]
    Generated(String),
}

impl InitError {
    /// 2 for the operator's input, 1 for the machine.
    pub fn exit_code(&self) -> u8 {
        match self {
            InitError::Io { .. } | InitError::Generated(_) => 1,
            _ => 2,
        }
    }
}

/// What the config is made from.
#[derive(Clone)]
pub struct Answers {
    /// `dingtalk.app_key`.
    pub app_key: String,
    /// `dingtalk.app_secret` (never printed).
    pub app_secret: String,
    /// `dingtalk.corp_id`.
    pub corp_id: String,
    /// `public_url`: an http(s) origin.
    pub public_url: Url,
    /// `upstream`; `None` = auth-only mode.
    pub upstream: Option<Url>,
}

impl std::fmt::Debug for Answers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answers")
            .field("app_key", &self.app_key)
            .field("app_secret", &"<redacted>")
            .field("corp_id", &self.corp_id)
            .field("public_url", &self.public_url.as_str())
            .field("upstream", &self.upstream.as_ref().map(Url::as_str))
            .finish()
    }
}

impl Answers {
    /// Checks and trims every answer; the first bad one is the error.
    pub fn new(
        app_key: &str,
        app_secret: &str,
        corp_id: &str,
        public_url: &str,
        upstream: Option<&str>,
    ) -> Result<Answers, InitError> {
        Ok(Answers {
            app_key: check_app_key(app_key)?,
            app_secret: check_app_secret(app_secret)?,
            corp_id: check_corp_id(corp_id)?,
            public_url: check_public_url(public_url)?,
            upstream: match upstream.map(str::trim).filter(|u| !u.is_empty()) {
                Some(u) => Some(check_upstream(u)?),
                None => None,
            },
        })
    }
}

impl Answers {
    /// The answers of `init --non-interactive`: every flag but `--upstream` is required.
    pub fn from_flags(
        app_key: Option<&str>,
        app_secret: Option<&str>,
        corp_id: Option<&str>,
        public_url: Option<&str>,
        upstream: Option<&str>,
    ) -> Result<Answers, InitError> {
        let need = |flag: &'static str, v: Option<&str>| {
            v.map(str::to_string)
                .ok_or_else(|| invalid(flag, "is required with --non-interactive"))
        };
        Answers::new(
            &need("--app-key", app_key)?,
            &need("--app-secret", app_secret)?,
            &need("--corp-id", corp_id)?,
            &need("--public-url", public_url)?,
            upstream,
        )
    }
}

fn invalid(key: &'static str, message: impl Into<String>) -> InitError {
    InitError::Invalid {
        key,
        message: message.into(),
    }
}

/// One word: no spaces, no control characters.
fn word(key: &'static str, value: &str, what: &str) -> Result<String, InitError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(invalid(key, format!("is required: {what}")));
    }
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            key,
            format!("must be one word without spaces: {what}"),
        ));
    }
    Ok(v.to_string())
}

fn check_app_key(v: &str) -> Result<String, InitError> {
    word(
        "app key",
        v,
        "the app's Client ID (AppKey) from the DingTalk developer console, 凭证与基础信息",
    )
}

fn check_app_secret(v: &str) -> Result<String, InitError> {
    word(
        "app secret",
        v,
        "the app's Client Secret (AppSecret) from the DingTalk developer console, 凭证与基础信息",
    )
}

fn check_corp_id(v: &str) -> Result<String, InitError> {
    word(
        "corp id",
        v,
        "your organisation's CorpId (ding…), on the DingTalk developer console's home page",
    )
}

fn check_public_url(v: &str) -> Result<Url, InitError> {
    let v = v.trim();
    let url = Url::parse(v).map_err(|_| {
        invalid(
            "public URL",
            format!(
                "`{v}` is not a URL; give the address users open, e.g. https://app.example.com"
            ),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(
            "public URL",
            format!("`{v}` must be an https:// (or http://) address, e.g. https://app.example.com"),
        ));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "public URL",
            format!("`{v}` must be an origin without a path, e.g. https://app.example.com"),
        ));
    }
    Ok(url)
}

fn check_upstream(v: &str) -> Result<Url, InitError> {
    let url = Url::parse(v).map_err(|_| {
        invalid(
            "upstream",
            format!("`{v}` is not a URL; give your app's address, e.g. http://127.0.0.1:3000"),
        )
    })?;
    if url.scheme() != "http" || url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(
            "upstream",
            format!("`{v}` must be an http:// address, e.g. http://127.0.0.1:3000"),
        ));
    }
    Ok(url)
}

/// A new `session.secret`: 48 bytes from the OS's CSPRNG, base64 (64 characters).
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `s` as a TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The config file's text: every key commented, `session_secret` in `[session]`. Loads as
/// `check-config` would load the file, or the error says why.
pub fn render(answers: &Answers, session_secret: &str) -> Result<String, InitError> {
    let public = answers.public_url.as_str().trim_end_matches('/');
    let upstream = match &answers.upstream {
        Some(u) => format!(
            "# The app behind the proxy (http://). Remove this line for auth-only mode (the\n\
             # proxy then only answers {{auth_prefix}}/verify for nginx auth_request and friends).\n\
             upstream = {}\n",
            toml_str(u.as_str())
        ),
        None => "# The app behind the proxy (http://). Unset: auth-only mode, the proxy only answers\n\
                 # {auth_prefix}/verify for nginx auth_request, Caddy forward_auth, Traefik forwardAuth.\n\
                 # upstream = \"http://127.0.0.1:3000\"\n"
            .to_string(),
    };
    let text = format!(
        r#"# dingtalk-auth-proxy configuration, written by `dingtalk-auth-proxy init`.
#
# This file holds secrets (dingtalk.app_secret, session.secret): keep it mode 0600, readable
# only by the user the proxy runs as. Environment variables DAP_* override any key here
# (DAP_DINGTALK__APP_SECRET, DAP_SESSION__SECRET, ...; `__` separates sections).
#
# Check it:                  dingtalk-auth-proxy check-config --config THIS_FILE
# Check DingTalk's side:     dingtalk-auth-proxy doctor --config THIS_FILE --userid <a userid>
# Serve:                     dingtalk-auth-proxy run --config THIS_FILE

# The address the proxy listens on. Put nginx/Caddy with TLS in front of it.
listen = "127.0.0.1:8080"

{upstream}
# The origin users open in their browser. DingTalk sends them back to
# {{public_url}}{{auth_prefix}}/callback: register that URL in the DingTalk developer console
# (开发配置 → 安全设置 → 重定向URL). https makes the session cookie Secure.
public_url = {public_url}

# The path prefix of the proxy's own endpoints (login, callback, verify, logout).
auth_prefix = "/_auth"

[dingtalk]
# The app's Client ID (AppKey): DingTalk developer console → your app → 凭证与基础信息.
app_key = {app_key}
# The app's Client Secret (AppSecret), same page. A secret: never share or log it.
app_secret = {app_secret}
# Your organisation's CorpId (starts with `ding`): the developer console's home page.
corp_id = {corp_id}
# How long each call to DingTalk may take.
timeout = "5s"

[session]
# The key the session cookies are encrypted with: 48 random bytes, made by `init`. Every
# replica needs the same value; changing it logs everyone out. A secret.
secret = {secret}
# How long a login lasts.
ttl = "8h"
# How often a user's details are fetched again (people who left lose access).
revalidate = "10m"

[headers]
# The identity headers your app receives (client-sent copies are always removed).
user_id = "X-User-Id"
mobile = "X-User-Mobile"

[access]
# Only these userids may pass; empty = everyone in the organisation.
allow_userids = []
# Only members of these department ids; empty = every department.
allow_dept_ids = []
# Path regexes served without a login, e.g. ["^/health$"].
skip_auth = []
"#,
        public_url = toml_str(public),
        app_key = toml_str(&answers.app_key),
        app_secret = toml_str(&answers.app_secret),
        corp_id = toml_str(&answers.corp_id),
        secret = toml_str(session_secret),
    );
    // The same layers `check-config --config FILE` uses, minus the environment.
    let figment = Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(&text));
    Config::from_figment(figment).map_err(|e| InitError::Generated(e.lines().join("; ")))?;
    Ok(text)
}

/// Writes `text` to `path` with mode 0600: a new file, or with `force` an atomic replacement
/// (a temporary file beside it, renamed over it).
pub fn write(path: &Path, text: &str, force: bool) -> Result<(), InitError> {
    let io = |source| InitError::Io {
        file: path.display().to_string(),
        source,
    };
    if !force {
        return match create_private(path) {
            Ok(mut file) => {
                let written = file
                    .write_all(text.as_bytes())
                    .and_then(|()| file.sync_all());
                if let Err(e) = written {
                    let _ = std::fs::remove_file(path);
                    return Err(io(e));
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(InitError::Exists(path.display().to_string()))
            }
            Err(e) => Err(io(e)),
        };
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.toml".into());
    let tmp = dir.join(format!(".{name}.init-{:016x}", rand::random::<u64>()));
    let result = create_private(&tmp)
        .and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(())
}

/// Creates a new file (never an existing one) readable and writable by the owner only.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Where prompts read from: lines of `input`, and the secret without echo when `input` is
/// a terminal.
pub struct Prompter<'a> {
    input: &'a mut dyn BufRead,
    out: &'a mut dyn Write,
    terminal: bool,
}

impl<'a> Prompter<'a> {
    /// Prompts on `out`, answers from `input`; `terminal`: read the secret from the terminal
    /// without echo.
    pub fn new(input: &'a mut dyn BufRead, out: &'a mut dyn Write, terminal: bool) -> Self {
        Prompter {
            input,
            out,
            terminal,
        }
    }

    /// One line, without its line end; `None` at the end of input.
    fn line(&mut self, prompt: &str) -> Option<String> {
        let _ = write!(self.out, "{prompt}");
        let _ = self.out.flush();
        let mut line = String::new();
        match self.input.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end_matches(['\n', '\r']).to_string()),
        }
    }

    /// The secret: from the terminal without echo, or a plain line from a pipe.
    fn secret(&mut self, prompt: &str) -> Option<String> {
        if !self.terminal {
            return self.line(prompt);
        }
        let _ = self.out.flush();
        rpassword::prompt_password(prompt).ok()
    }

    /// Asks until `check` accepts the answer; a refusal is shown and asked again.
    fn ask<T>(
        &mut self,
        what: &'static str,
        prompt: &str,
        secret: bool,
        check: impl Fn(&str) -> Result<T, InitError>,
    ) -> Result<T, InitError> {
        // Bounded: a pipe that keeps sending bad answers ends the run.
        for _ in 0..20 {
            let answer = if secret {
                self.secret(prompt)
            } else {
                self.line(prompt)
            };
            let answer = answer.ok_or(InitError::InputEnded(what))?;
            match check(&answer) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let _ = writeln!(self.out, "  {e}");
                }
            }
        }
        Err(invalid(what, "no usable answer after 20 tries"))
    }

    /// A yes/no question; an empty answer is `default`, the end of input is no.
    pub fn confirm(&mut self, prompt: &str, default: bool) -> bool {
        match self.line(prompt) {
            None => false,
            Some(a) => match a.trim().to_ascii_lowercase().as_str() {
                "" => default,
                a => a.starts_with('y'),
            },
        }
    }

    /// Writes one line to the prompt output.
    pub fn say(&mut self, line: &str) {
        let _ = writeln!(self.out, "{line}");
    }
}

/// Asks for every answer, re-asking after a bad one.
pub fn prompt_answers(p: &mut Prompter<'_>) -> Result<Answers, InitError> {
    p.say("dingtalk-auth-proxy init: a few answers from the DingTalk developer console (https://open-dev.dingtalk.com → 应用开发 → 企业内部应用 → your app).");
    let app_key = p.ask(
        "app key",
        "App key (Client ID / AppKey): ",
        false,
        check_app_key,
    )?;
    let app_secret = p.ask(
        "app secret",
        "App secret (Client Secret / AppSecret, not shown): ",
        true,
        check_app_secret,
    )?;
    let corp_id = p.ask(
        "corp id",
        "Corp id (CorpId, starts with ding): ",
        false,
        check_corp_id,
    )?;
    let public_url = p.ask(
        "public URL",
        "Public URL (what users open, e.g. https://app.example.com): ",
        false,
        check_public_url,
    )?;
    let upstream = p.ask(
        "upstream",
        "Upstream app URL (e.g. http://127.0.0.1:3000; empty for auth-only mode): ",
        false,
        |v| match v.trim() {
            "" => Ok(None),
            v => check_upstream(v).map(Some),
        },
    )?;
    Ok(Answers {
        app_key,
        app_secret,
        corp_id,
        public_url,
        upstream,
    })
}

/// What to say after writing `path`: where it is and what to run next.
pub fn written_message(path: &Path) -> String {
    format!(
        "wrote {} (mode 0600) with a new session.secret\nnext: dingtalk-auth-proxy doctor --config {} --userid <a userid of your organisation>",
        path.display(),
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers() -> Answers {
        Answers::new(
            "dingkey",
            "sec\"ret\\x",
            "dingcorp",
            "https://app.example.com",
            Some("http://127.0.0.1:3000"),
        )
        .unwrap()
    }

    /// The rendered file loads as a config with exactly the answers and the secret, even with
    /// quotes and backslashes in the app secret.
    #[test]
    fn rendered_config_loads() {
        let secret = generate_secret();
        assert_eq!(secret.len(), 64);
        let text = render(&answers(), &secret).unwrap();
        let config = Config::from_figment(
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(&text)),
        )
        .unwrap();
        assert_eq!(config.dingtalk.app_secret.expose(), "sec\"ret\\x");
        assert_eq!(config.session.secret.expose(), secret);
        assert_eq!(config.public_origin(), "https://app.example.com");
        assert_eq!(
            config.upstream.as_ref().map(Url::as_str),
            Some("http://127.0.0.1:3000/")
        );
        let mut none = answers();
        none.upstream = None;
        let text = render(&none, &secret).unwrap();
        assert!(text.contains("# upstream = "), "{text}");
    }

    /// Bad answers name themselves; the secret is not in any message.
    #[test]
    fn bad_answers() {
        for (url, up) in [
            ("app.example.com", None),
            ("ftp://x", None),
            ("https://app.example.com/path", None),
            ("https://ok.example.com", Some("https://127.0.0.1:3000")),
            ("https://ok.example.com", Some("not a url")),
        ] {
            let e = Answers::new("k", "s3cr3t", "dingc", url, up).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(!e.to_string().contains("s3cr3t"));
        }
        assert!(Answers::new("", "s", "c", "https://a.b", None).is_err());
        assert!(Answers::new("a b", "s", "c", "https://a.b", None).is_err());
    }

    /// Piped answers are read line by line; a bad public URL is asked again.
    #[test]
    fn prompts_from_a_pipe() {
        let mut input: &[u8] = b"dingkey\nsecret\ndingcorp\nnot a url\nhttps://a.example.com\n\n";
        let mut out = Vec::new();
        let answers = prompt_answers(&mut Prompter::new(&mut input, &mut out, false)).unwrap();
        assert_eq!(answers.public_url.as_str(), "https://a.example.com/");
        assert!(answers.upstream.is_none());
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("is not a URL"), "{out}");
        let mut short: &[u8] = b"dingkey\n";
        let e = prompt_answers(&mut Prompter::new(&mut short, &mut Vec::new(), false)).unwrap_err();
        assert!(matches!(e, InitError::InputEnded("app secret")));
    }
}
