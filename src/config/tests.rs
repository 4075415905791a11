//! The config's tests: loading, defaults, redaction and every kind of problem message.

use super::*;

fn base() -> Figment {
    Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(
        r#"
        [dingtalk]
        app_key = "k"
        app_secret = "s"
        corp_id = "dingc"
        [session]
        secret = "0123456789abcdef0123456789abcdef"
        "#,
    ))
}

/// A minimal config with the four required values loads with the contract's defaults.
#[test]
fn defaults() {
    let c = Config::from_figment(base()).unwrap();
    assert_eq!(c.auth_prefix, "/_auth");
    assert_eq!(c.session.cookie_name, "dap_session");
    assert_eq!(c.session.ttl, Duration::from_secs(8 * 3600));
    assert_eq!(c.dingtalk.user_api, UserApi::V2);
    assert_eq!(c.headers.get(Field::UserId), Some("X-User-Id"));
    assert!(c.upstream.is_none());
    assert_eq!(c.limits.max_header_bytes, 65536);
    assert_eq!(c.limits.header_read_timeout, Duration::from_secs(10));
    assert_eq!(c.verify.uri_header, "auto");
    assert_eq!(c.trusted_proxies.len(), 2);
}

/// trusted_proxies takes CIDRs and single addresses; a bad entry names the key.
#[test]
fn trusted_proxies() {
    let f = base().merge(Toml::string(
        "trusted_proxies = [\"10.1.2.3/8\", \"192.168.0.7\", \"fd00::/8\"]",
    ));
    let c = Config::from_figment(f).unwrap();
    let nets: Vec<String> = c.trusted_proxies.iter().map(|n| n.to_string()).collect();
    assert_eq!(nets, ["10.0.0.0/8", "192.168.0.7/32", "fd00::/8"]);
    let f = base().merge(Toml::string("trusted_proxies = \"10.0.0.0/8, nonsense\""));
    let e = Config::from_figment(f).unwrap_err().to_string();
    assert!(
        e.contains("trusted_proxies") && e.contains("nonsense"),
        "{e}"
    );
}

/// Limits below what the server can honour, and a bad verify header, name their key.
#[test]
fn bad_limits_name_the_key() {
    for (toml, key) in [
        (
            "[limits]\nmax_header_bytes = 100",
            "limits.max_header_bytes",
        ),
        (
            "[limits]\nheader_read_timeout = \"0s\"",
            "limits.header_read_timeout",
        ),
        ("[limits]\nmax_connections = -1", "limits.max_connections"),
        (
            "[limits]\nmax_body_bytes = \"lots\"",
            "limits.max_body_bytes",
        ),
        ("[verify]\nuri_header = \"bad header\"", "verify.uri_header"),
    ] {
        let e = Config::from_figment(base().merge(Toml::string(toml)))
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{toml}: {e}");
    }
}

/// A short secret is rejected with a message naming the key, without echoing the value.
#[test]
fn short_secret() {
    let f = base().merge(Toml::string("[session]\nsecret = \"tooshort-value\""));
    let e = Config::from_figment(f).unwrap_err().to_string();
    assert!(e.contains("session.secret"), "{e}");
    assert!(!e.contains("tooshort-value"), "{e}");
}

/// Wrong types and unknown keys name the key.
#[test]
fn bad_values_name_the_key() {
    let f = base().merge(Toml::string("[session]\nttl = \"soon\""));
    let e = Config::from_figment(f).unwrap_err().to_string();
    assert!(e.contains("session.ttl"), "{e}");
    let f = base().merge(Toml::string("[access]\nskip_auth = [\"(\"]"));
    let e = Config::from_figment(f).unwrap_err().to_string();
    assert!(e.contains("access.skip_auth[0]"), "{e}");
    let f = base().merge(Toml::string("upstream = \"https://x\""));
    assert!(Config::from_figment(f).is_err());
}

/// Defaults keep their real values (redaction is only for display): redis_url loads as
/// its default and prints without a password.
#[test]
fn defaults_are_not_redacted() {
    let c = Config::from_figment(base()).unwrap();
    assert_eq!(c.session.redis_url.expose(), "redis://127.0.0.1:6379");
    let f = base().merge(Toml::string(
        "[session]\nredis_url = \"redis://:hunter2pass@10.0.0.1:6379/0\"",
    ));
    let t = Config::from_figment(f).unwrap().redacted_toml();
    assert!(!t.contains("hunter2pass"), "{t}");
    assert!(t.contains("session.redis_url = \"redis://"), "{t}");
}

/// Redacted output never contains either secret.
#[test]
fn redaction() {
    let c = Config::from_figment(base()).unwrap();
    let t = c.redacted_toml();
    assert!(t.contains("session.secret = \"<redacted>\""), "{t}");
    assert!(!t.contains("0123456789abcdef"), "{t}");
    assert!(!format!("{c:?}").contains("0123456789abcdef"));
}

/// Comma-separated lists work from a single (env-style) string.
#[test]
fn lists_from_strings() {
    let f = base().merge(Toml::string(
        "[access]\nallow_userids = \"a, b\"\nallow_dept_ids = \"1,2\"",
    ));
    let c = Config::from_figment(f).unwrap();
    assert_eq!(c.access.allow_userids, vec!["a", "b"]);
    assert_eq!(c.access.allow_dept_ids, vec![1, 2]);
}

/// `session.previous_secrets` comes as a list or one comma-separated (env) string, is shown
/// only as `<redacted>` per entry, and each entry must be as strong as `session.secret`.
#[test]
fn previous_secrets() {
    let old = "oldoldoldoldoldoldoldoldoldoldold1";
    let f = base().merge(Toml::string(&format!(
        "[session]\nprevious_secrets = \"{old}, {old}2\""
    )));
    let c = Config::from_figment(f).unwrap();
    assert_eq!(c.session.previous_secrets.len(), 2);
    assert_eq!(c.session.previous_secrets[1].expose(), format!("{old}2"));
    let t = c.redacted_toml();
    assert!(!t.contains("oldold"), "{t}");
    assert!(
        t.contains("session.previous_secrets = [\"<redacted>\",\"<redacted>\"]"),
        "{t}"
    );
    assert!(!format!("{c:?}").contains("oldold"));
    let f = base().merge(Toml::string(
        "[session]\nprevious_secrets = [\"shortsecretvalue\"]",
    ));
    let e = Config::from_figment(f).unwrap_err().to_string();
    assert!(e.contains("session.previous_secrets[0]"), "{e}");
    assert!(!e.contains("shortsecretvalue"), "{e}");
}

/// `[assertion]` defaults; its own header name; a sane ttl; keys that only matter when it is
/// on are refused while it is off; the audience defaults to the upstream's origin.
#[test]
fn assertion_keys() {
    let c = Config::from_figment(base()).unwrap();
    assert!(!c.assertion.enabled);
    assert_eq!(c.assertion.header, "X-DingTalk-Assertion");
    assert_eq!(c.assertion.ttl, Duration::from_secs(60));
    assert_eq!(c.assertion_audience(), "http://127.0.0.1:8080");
    let f = base().merge(Toml::string(
        "upstream = \"http://10.0.0.5:3000/app/\"\n[assertion]\nenabled = true\nkey_file = \"\"",
    ));
    let c = Config::from_figment(f).unwrap();
    assert_eq!(c.assertion.key_file, None);
    assert_eq!(c.assertion_audience(), "http://10.0.0.5:3000");
    for (toml, key) in [
        ("[assertion]\nheader = \"x_user_id\"", "assertion.header"),
        ("[assertion]\nheader = \"bad header\"", "assertion.header"),
        ("[assertion]\nttl = \"0s\"", "assertion.ttl"),
        ("[assertion]\nttl = \"2h\"", "assertion.ttl"),
        ("[assertion]\nkey_file = \"/k.pem\"", "assertion.key_file"),
        (
            "[assertion]\nprevious_key_files = \"/a.pem,/b.pem\"",
            "assertion.previous_key_files",
        ),
    ] {
        let e = Config::from_figment(base().merge(Toml::string(toml))).unwrap_err();
        assert!(e.to_string().contains(key), "{toml}: {e}");
    }
}

/// The problems of `f`, one string per line.
fn problem_lines(f: Figment) -> Vec<String> {
    match Config::from_figment(f) {
        Ok(_) => Vec::new(),
        Err(e) => e.lines(),
    }
}

/// An empty config lists all four required keys at once, each with how to set it.
#[test]
fn empty_config_lists_every_required_key() {
    let lines = problem_lines(Figment::from(Serialized::defaults(Config::default())));
    assert_eq!(lines.len(), 4, "{lines:#?}");
    for (line, key) in lines.iter().zip([
        "dingtalk.app_key",
        "dingtalk.app_secret",
        "dingtalk.corp_id",
        "session.secret",
    ]) {
        assert!(
            line.starts_with(&format!("config key `{key}`: is required")),
            "{line}"
        );
        assert!(line.contains(&env_name(key)), "{line}");
    }
    let e = Config::default().validate().unwrap_err();
    assert!(
        matches!(&e, ConfigError::Several(all) if all.len() == 4),
        "{e}"
    );
    assert_eq!(e.to_string().lines().count(), 4, "{e}");
}

/// Type errors and validation problems are all reported in one pass, sorted by key, and a
/// key with a bad value is not reported a second time for its default.
#[test]
fn every_problem_in_one_pass() {
    let f = base().merge(Toml::string(
        "listen = \"8080\"\nupstream = \"127.0.0.1:3000\"\nauth_prefix = \"x\"\n\
         [session]\nttl = \"8\"\nsecret = [\"a\"]\n[dingtalk]\nuser_api = \"v9\"\n",
    ));
    let lines = problem_lines(f);
    let keys: Vec<&str> = lines.iter().filter_map(|l| l.split('`').nth(1)).collect();
    assert_eq!(
        keys,
        [
            "auth_prefix",
            "dingtalk.user_api",
            "listen",
            "session.secret",
            "session.ttl",
            "upstream"
        ],
        "{lines:#?}"
    );
    assert!(lines[3].contains("not a list"), "{lines:#?}");
}

/// Edit distance counts an insertion, a deletion, a substitution or a swap of neighbours as
/// one edit, over characters rather than bytes.
#[test]
fn edit_distance_counts_single_edits() {
    assert_eq!(edit_distance("", ""), 0);
    assert_eq!(edit_distance("ttl", "ttl"), 0);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("cookie_nam", "cookie_name"), 1);
    assert_eq!(edit_distance("cookiename", "cookie_name"), 1);
    assert_eq!(edit_distance("tll", "ttl"), 1);
    assert_eq!(edit_distance("ttl", "tl"), 1);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(edit_distance("秘钥", "密钥"), 1);
}

/// Suggestions: the nearest known key when it is close, else a unique prefix, else nothing.
#[test]
fn suggestions_pick_the_nearest_known_key() {
    let session = fields_of("session");
    assert_eq!(nearest("cookie_nam", session), Some("cookie_name"));
    assert_eq!(nearest("Cookie-Name", session), Some("cookie_name"));
    assert_eq!(nearest("tll", session), Some("ttl"));
    assert_eq!(nearest("revalidat", session), Some("revalidate"));
    assert_eq!(nearest("zzzzzz", session), None);
    assert_eq!(nearest("x", session), None);
    assert_eq!(nearest("lisen", fields_of("")), Some("listen"));
    assert_eq!(only_prefix("cookie_n", session), Some("cookie_name"));
    assert_eq!(only_prefix("secret_key", session), Some("secret"));
    assert_eq!(only_prefix("re", session), None);
    assert_eq!(
        unknown_key("session", "cookie_nam", session),
        "unknown key; did you mean `cookie_name`?"
    );
    assert!(
        unknown_key("", "session_ttl", fields_of("")).contains("`session.ttl`"),
        "env-style single underscore"
    );
}

/// The known keys come from serde and match what `check-config` prints, key for key.
#[test]
fn known_keys_match_the_structs() {
    let keys = known_keys();
    assert_eq!(keys.len(), 57, "{keys:?}");
    for key in [
        "listen",
        "session.cookie_name",
        "headers.title",
        "verify.uri_header",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key}");
    }
    assert!(fields_of("listen").is_empty());
    let printed = Config::from_figment(base()).unwrap().redacted_toml();
    for line in printed.lines() {
        let key = line
            .trim_start_matches("# ")
            .split([' ', '='])
            .next()
            .unwrap_or_default();
        assert!(keys.iter().any(|k| k == key), "{line}");
    }
}

/// The allowed values named in messages are exactly the ones serde accepts.
#[test]
fn choices_match_serde() {
    for (key, choices) in CHOICE_KEYS {
        for choice in choices {
            let f = base().merge(Serialized::default(key, choice));
            assert!(Config::from_figment(f).is_ok(), "{key} = {choice}");
        }
        let f = base().merge(Serialized::default(key, "bogus"));
        let lines = problem_lines(f);
        assert_eq!(lines.len(), 1, "{lines:?}");
        for choice in choices {
            assert!(lines[0].contains(&format!("`{choice}`")), "{lines:?}");
        }
    }
}

/// A syntax error names the line and column and the key on that line, not its value; odd
/// spans (past the end, inside a character) do not panic.
#[test]
fn toml_syntax_names_line_and_key() {
    let text = "a = 1\r\n\r\n[session]\nsecret = \"s3cr3t\n";
    let e = Toml::from_str::<Dict>(text).unwrap_err();
    let m = toml_syntax(text, e.message(), e.span());
    assert!(m.starts_with("not valid TOML at line 4, column"), "{m}");
    assert!(m.contains("(in `secret`)"), "{m}");
    assert!(!m.contains("s3cr3t"), "{m}");
    assert!(toml_syntax("密 = x", "bad", Some(1..2)).contains("line 1, column 2"));
    assert!(toml_syntax("x", "bad\nthing", Some(99..100)).ends_with("bad; thing"));
    assert_eq!(toml_syntax("x", "bad", None), "is not valid TOML: bad");
}

/// Values are printed on one line, cut when long; passwords in URLs are hidden.
#[test]
fn values_are_shown_safely() {
    assert_eq!(shown("a\nb"), "a\\nb");
    assert_eq!(shown(&"密".repeat(100)).chars().count(), 81);
    assert_eq!(masked("http://u:pw@h:1/p@x"), "http://***@h:1/p@x");
    assert_eq!(masked("u:pw@h:1"), "***@h:1");
    assert_eq!(masked("h:1"), "h:1");
    let f = base().merge(Toml::string("upstream = \"https://u:pw@h\""));
    let lines = problem_lines(f);
    assert!(!lines.concat().contains("pw"), "{lines:?}");
}

/// `check-config` shows the origin in effect for an unset `public_url`, never `null`.
#[test]
fn redacted_toml_shows_effective_public_url() {
    let c = Config::from_figment(base()).unwrap();
    let t = c.redacted_toml();
    assert!(
        t.contains("\npublic_url = \"http://127.0.0.1:8080\"\n"),
        "{t}"
    );
    assert!(!t.contains("null"), "{t}");
    assert!(t.contains("# admin_listen is unset\n"), "{t}");
}

/// Property tests of loading.
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever value lands on whatever key (known or not), loading never panics and every
        /// problem is one non-empty line.
        #[test]
        fn any_value_on_any_key_gives_one_line_problems(
            key in prop_oneof![
                prop::sample::select(known_keys().to_vec()),
                "[a-z_]{1,12}(\\.[a-z_]{1,12})?",
            ],
            value in prop_oneof![
                any::<String>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<bool>().prop_map(Value::from),
                prop::collection::vec(".{0,8}", 0..3).prop_map(Value::from),
            ],
        ) {
            let f = base().merge(Serialized::default(&key, value));
            for line in problem_lines(f) {
                prop_assert!(!line.is_empty() && !line.contains('\n'), "{}", line);
            }
        }
    }
}

/// `[[routes]]` from TOML: headers and access per route over the top-level ones, unset keys
/// falling back; `""` turns a header off on one route only.
#[test]
fn routes_load_with_fallbacks() {
    let f = base().merge(Toml::string(
        r#"
        auth_host = "login.corp.example"
        [session]
        cookie_domain = ".corp.example"
        [access]
        allow_dept_ids = [7]
        [[routes]]
        host = "oa.corp.example"
        upstream = "http://10.0.0.5:8080"
        [routes.headers]
        user_id = "X-WEBAUTH-USER"
        mobile = ""
        [routes.access]
        allow_userids = ["zhangsan"]
        [[routes]]
        host = "*.corp.example"
        path_prefix = "/grafana"
        strip_prefix = true
        upstream = "http://10.0.0.6:3000"
        "#,
    ));
    let c = Config::from_figment(f).unwrap();
    assert_eq!(c.routes.len(), 2);
    let oa = &c.routes[0];
    let h = oa.headers.over(&c.headers);
    assert_eq!(h.get(Field::UserId), Some("X-WEBAUTH-USER"));
    assert_eq!(h.get(Field::Mobile), None);
    let a = c.access.merged(&oa.access);
    assert_eq!(a.allow_userids, ["zhangsan"]);
    assert_eq!(a.allow_dept_ids, [7], "unset keys fall back to [access]");
    assert_eq!(c.routes[1].path_prefix, "/grafana");
    assert_eq!(c.login_origin(), "http://login.corp.example:8080");
}

/// Every route mistake names its key: bad host, unsafe prefix, duplicates, a bad upstream,
/// strip_prefix with nothing to strip, upstream beside [[routes]], auth_host without or
/// outside the cookie domain, a route host the login could never reach.
#[test]
fn route_problems_name_the_key() {
    for (toml, key) in [
        (
            "[[routes]]\nhost = \"oa corp\"\nupstream = \"http://a\"",
            "routes[0].host",
        ),
        (
            "[[routes]]\npath_prefix = \"/a/../b\"\nupstream = \"http://a\"",
            "routes[0].path_prefix",
        ),
        (
            "[[routes]]\npath_prefix = \"/a;x\"\nupstream = \"http://a\"",
            "routes[0].path_prefix",
        ),
        (
            "[[routes]]\nupstream = \"http://a\"\n[[routes]]\nupstream = \"http://b\"",
            "routes[1].path_prefix",
        ),
        ("[[routes]]\nupstream = \"ftp://a\"", "routes[0].upstream"),
        (
            "[[routes]]\nupstream = \"http://u:pw@a\"",
            "routes[0].upstream",
        ),
        ("upstream = \"http://a/?x=1\"", "upstream"),
        (
            "[[routes]]\nupstream = \"http://a\"\nstrip_prefix = true",
            "routes[0].strip_prefix",
        ),
        (
            "[[routes]]\nupstream = \"http://a\"\n[routes.headers]\nuser_id = \"X User\"",
            "routes[0].headers.user_id",
        ),
        (
            "[[routes]]\nupstream = \"http://a\"\n[routes.access]\nskip_auth = [\"(\"]",
            "routes[0].access.skip_auth[0]",
        ),
        (
            "[[routes]]\nupstream = \"http://a\"\n[routes.access]\nallow_user = [\"x\"]",
            "routes[0].access.allow_user",
        ),
        (
            "upstream = \"http://a\"\n[[routes]]\nupstream = \"http://b\"",
            "upstream",
        ),
        (
            "upstream = \"http://a\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"http://b\"",
            "upstream",
        ),
        ("auth_host = \"login.corp.example\"", "auth_host"),
        (
            "auth_host = \"login.other.example\"\n[session]\ncookie_domain = \".corp.example\"",
            "auth_host",
        ),
        (
            "auth_host = \"https://login.corp.example\"\n[session]\ncookie_domain = \".corp.example\"",
            "auth_host",
        ),
        (
            "auth_host = \"login.corp.example\"\n[session]\ncookie_domain = \".corp.example\"\n\
             [[routes]]\nhost = \"oa.elsewhere.example\"\nupstream = \"http://a\"",
            "routes[0].host",
        ),
        ("[session]\ncookie_domain = \"corp example\"", "session.cookie_domain"),
    ] {
        let e = Config::from_figment(base().merge(Toml::string(toml)))
            .expect_err(toml)
            .to_string();
        assert!(e.contains(&format!("`{key}`")), "{toml}: {e}");
    }
}
