//! Snapshot tests locking the exact text of config errors: position, key path, message, hint.

fn error_of(src: &str) -> String {
    match weir_config::parse(src, "weir.toml") {
        Ok(_) => panic!("config unexpectedly valid:\n{src}"),
        Err(e) => e.to_string(),
    }
}

const BASE: &str = r#"
[[listeners]]
name = "main"
bind = "127.0.0.1:8080"

[[upstreams]]
name = "api"
endpoints = ["127.0.0.1:9001"]
"#;

fn with_base(rest: &str) -> String {
    format!("{BASE}{rest}")
}

#[test]
fn unknown_upstream_suggests_the_close_name() {
    insta::assert_snapshot!(error_of(&with_base(
        r#"
[[routes]]
match = { path_prefix = "/" }
proxy = { upstream = "apis" }
"#
    )));
}

#[test]
fn unknown_key_suggests_the_close_key() {
    insta::assert_snapshot!(error_of(&with_base(
        r#"
[[routes]]
proxy = { upstreem = "api" }
"#
    )));
}

#[test]
fn unknown_top_level_key_lists_expected() {
    insta::assert_snapshot!(error_of(&format!("foo = 1\n{BASE}")));
}

#[test]
fn bad_duration_points_at_the_value() {
    insta::assert_snapshot!(error_of(&with_base(
        r#"
[server]
header_read_timeout = "10 seconds"
"#
    )));
}

#[test]
fn bad_size_points_at_the_value() {
    insta::assert_snapshot!(error_of(&with_base(
        r#"
[server]
max_request_body_size = "10mb"
"#
    )));
}

#[test]
fn wrong_type() {
    insta::assert_snapshot!(error_of(&with_base(
        r#"
[[routes]]
respond = { status = "ok" }
"#
    )));
}

#[test]
fn unknown_balancer() {
    insta::assert_snapshot!(error_of(
        r#"
[[listeners]]
name = "main"
bind = "127.0.0.1:8080"

[[upstreams]]
name = "api"
endpoints = ["127.0.0.1:9001"]
balance = "round_robbin"
"#
    ));
}

#[test]
fn toml_syntax_error() {
    insta::assert_snapshot!(error_of("[[listeners]\nname = \"main\"\n"));
}

#[test]
fn several_semantic_errors_reported_together_in_file_order() {
    insta::assert_snapshot!(error_of(
        r#"
[[listeners]]
name = "main"
bind = "127.0.0.1:8080"

[[listeners]]
name = "main"
bind = "127.0.0.1:8080"

[[upstreams]]
name = "api"
endpoints = ["127.0.0.1", "bad host:80"]

[[routes]]
listeners = ["mian"]
match = { path = "api", path_regex = "(" , methods = ["GE T"] }
respond = { status = 200 }
redirect = { location = "/" }

[[routes]]
match = { hosts = ["*.*.example.com"] }
redirect = { status = 200, location = "/" }
"#
    ));
}

#[test]
fn missing_required_key() {
    insta::assert_snapshot!(error_of(
        r#"
[[listeners]]
name = "main"
"#
    ));
}

#[test]
fn no_listeners() {
    insta::assert_snapshot!(error_of("workers = 2\n"));
}

#[test]
fn route_without_action_and_missing_static_root() {
    insta::assert_snapshot!(error_of(&with_base(
        r#"
[[routes]]
name = "nothing"

[[routes]]
static = { root = "/definitely/not/here" }
"#
    )));
}

#[test]
fn bad_listen_address() {
    insta::assert_snapshot!(error_of(
        r#"
[[listeners]]
name = "main"
bind = "localhost"
"#
    ));
}

#[test]
fn quickstart_is_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    std::env::set_current_dir(dir).expect("repo root");
    let config =
        weir_config::parse(weir_config::QUICKSTART, "quickstart.toml").expect("quickstart valid");
    assert_eq!(config.listeners.len(), 3);
    assert_eq!(config.upstreams[0].endpoints.len(), 2);
}

#[test]
fn upstream_resilience_settings_are_checked_together() {
    insta::assert_snapshot!(error_of(
        r#"
[[listeners]]
name = "main"
bind = "127.0.0.1:8080"

[[upstreams]]
name = "api"
endpoints = ["127.0.0.1:9001", { address = "127.0.0.1:9002", weight = 0 }]
balance = "p2c"
hash_key = "header:x-user"
panic_threshold = 150
health.active = { path = "healthz", interval = "0" }
circuit_breaker = { failure_rate = 0 }
queue = { size = 10 }
sticky = { secret = "short" }
"#
    ));
}

#[test]
fn bad_retry_condition_and_status_range_point_at_the_value() {
    insta::assert_snapshot!(error_of(&with_base(
        r#"retry = { on = ["connect", "rest"] }
"#
    )));
    insta::assert_snapshot!(error_of(&with_base(
        r#"health.active = { expect_status = ["200-199"] }
"#
    )));
}

#[test]
fn unknown_hash_table_suggests_the_close_one() {
    insta::assert_snapshot!(error_of(&with_base(
        r#"balance = "consistent_hash"
hash = "maglef"
"#
    )));
}

#[test]
fn tls_files_and_forward_patterns_are_checked() {
    insta::assert_snapshot!(error_of(
        r#"
[[listeners]]
name = "main"
bind = "127.0.0.1:8443"
tls = { certificates = [{ cert = "/nonexistent/site.pem", key = "Cargo.toml" }] }
hsts = "forever"

[[listeners]]
name = "egress"
bind = "127.0.0.1:3128"
mode = "forward"
forward = { allow = ["*.example.com", "pypi.org:99999"] }

[[upstreams]]
name = "api"
endpoints = ["127.0.0.1:9001"]
protocol = "h2"
"#
    ));
}

#[test]
fn the_effective_config_serializes_back_to_the_same_config() {
    let src = format!(
        "{BASE}balance = \"consistent_hash\"\nhash_key = \"header:x-user\"\nretry = {{ on = [\"connect\", 503] }}\nhealth.active = {{ expect_status = [\"200-299\", 404] }}\ncircuit_breaker = {{}}\n"
    );
    let config = weir_config::parse(&src, "weir.toml").expect("valid");
    let text = toml::to_string(&config).expect("serializes");
    let again =
        weir_config::parse(&text, "effective.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(config, again);
}

#[test]
fn jwt_policies_refuse_none_mixed_families_and_short_secrets() {
    insta::assert_snapshot!(error_of(&with_base(
        r#"
[[policies]]
name = "jwt"
jwt = { algorithms = ["none", "HS256", "RS256", "HS265"], keys = [{ secret = "short" }] }
"#
    )));
}

#[test]
fn policy_service_tls_needs_an_https_url_and_loadable_files() {
    insta::assert_snapshot!(error_of(&with_base(
        r#"
[[policies]]
name = "ext"
ext_auth = { url = "http://auth.internal/check", tls = { ca = "/nonexistent/ca.pem" } }

[[policies]]
name = "jwt"
jwt = { algorithms = ["RS256"], keys = [{ pem = "x" }], jwks_tls = { sni = "bad name" } }
"#
    )));
}

#[test]
fn otlp_tls_and_metadata_are_checked() {
    insta::assert_snapshot!(error_of(&with_base(
        r#"
[tracing]
otlp_endpoint = "http://collector:4317"
otlp_tls = { ca = "/nonexistent/ca.pem", insecure_skip_verify = true }
otlp_headers = { "X-Api-Key" = "k" }
"#
    )));
}

#[test]
fn gateway_policies_are_checked_with_positions() {
    insta::assert_snapshot!(error_of(&with_base(
        r#"
[[consumers]]
name = "acme"
api_keys = ["sha256:abc", "tiny"]

[[policies]]
name = "cors"
cors = { allow_origins = ["*", "app.example.com"], allow_credentials = true }

[[policies]]
name = "hdr"
headers = { request = { set = { "x-user" = "$user" } } }

[[policies]]
name = "shared"
rate_limit = { limit = 10, period = "1s", store = "redis", key = ["consumer", "consumer"], ipv6_prefix = 0 }

[[policies]]
name = "two"
ip = { allow = ["10.0.0.0/8"] }
cors = { allow_origins = ["*"] }

[[policies]]
name = "basic"
basic_auth = { users = { alice = "plaintext" } }

[[policies]]
name = "idem"
idempotency = { statuses = ["2xx", "6xx"], on_store_error = "local" }

[[routes]]
rewrite = { regex = "(" }
respond = { body = "x" }
"#
    )));
}

#[test]
fn a_missing_secret_variable_is_a_config_error() {
    insta::assert_snapshot!(error_of(&with_base(
        r#"
[redis]
url = "redis://:${WEIR_TEST_SURELY_UNSET}@127.0.0.1:6379"
"#
    )));
}

#[test]
fn a_purge_method_must_name_who_may_purge() {
    insta::assert_snapshot!(error_of(&with_base(
        r#"
[[caches]]
name = "open"
purge_method = {}

[[caches]]
name = "deny-only"
purge_method = { deny = ["10.0.0.0/8"] }

[[routes]]
cache = "open"
proxy = { upstream = "api" }
"#
    )));
}

#[test]
fn discovery_settings_are_checked_where_they_are_written() {
    insta::assert_snapshot!(error_of(
        r#"
[[listeners]]
name = "main"
bind = "127.0.0.1:8080"

[[upstreams]]
name = "dns"
discovery = { dns = { name = "api.internal", resolver = "dns.local", min_ttl = "10s", max_ttl = "5s" } }

[[upstreams]]
name = "both"
discovery = { dns = { srv = "_http._tcp.api" }, file = { path = "/etc/weir/api.json" } }

[[upstreams]]
name = "etcd"
discovery = { etcd = { endpoints = ["127.0.0.1:2379"], prefix = "" } }
"#
    ));
}

#[test]
fn a_misspelt_provider_is_named() {
    insta::assert_snapshot!(error_of(&with_base(
        r#"
[[upstreams]]
name = "typo"
discovery = { fille = { path = "x.json" } }
"#
    )));
}

#[test]
fn every_unset_variable_in_any_string_is_reported_at_once() {
    insta::assert_snapshot!(error_of(
        r#"
admin = { bind = "127.0.0.1:9901", token = "${WEIR_TEST_UNSET_TOKEN}" }

[[listeners]]
name = "main"
bind = "127.0.0.1:${WEIR_TEST_UNSET_PORT}"

[[upstreams]]
name = "api"
endpoints = ["${WEIR_TEST_UNSET_HOST}:9001"]
"#
    ));
}

/// `${NAME}` works in any string (a bind address, an endpoint, the admin token) and `$${NAME}`
/// is a literal; the templates' own `${claim.sub}` is left to them.
#[test]
fn environment_variables_expand_in_any_string() {
    std::env::set_var("WEIR_TEST_ENV_PORT", "18081");
    std::env::set_var("WEIR_TEST_ENV_HOST", "10.1.2.3");
    std::env::set_var("WEIR_TEST_ENV_TOKEN", "a-token-of-sixteen-chars");
    let config = weir_config::parse(
        r#"
admin = { bind = "127.0.0.1:9901", token = "${WEIR_TEST_ENV_TOKEN}" }

[[listeners]]
name = "main"
bind = "127.0.0.1:${WEIR_TEST_ENV_PORT}"

[[upstreams]]
name = "api"
endpoints = ["${WEIR_TEST_ENV_HOST}:9001"]

[[routes]]
respond = { status = 200, body = "$${WEIR_TEST_ENV_PORT} ${claim.sub}" }
"#,
        "weir.toml",
    )
    .expect("valid once expanded");
    assert_eq!(config.listeners[0].bind.to_string(), "127.0.0.1:18081");
    let json = serde_json::to_value(&config).expect("json");
    assert_eq!(
        json["upstreams"][0]["endpoints"][0]["address"],
        "10.1.2.3:9001"
    );
    assert_eq!(
        json["routes"][0]["respond"]["body"],
        "${WEIR_TEST_ENV_PORT} ${claim.sub}"
    );
    let token = config
        .admin
        .as_ref()
        .and_then(|a| a.token.as_ref())
        .expect("token");
    assert_eq!(token.expose(), "a-token-of-sixteen-chars");
}

/// `:PORT`, `*:PORT` and `localhost:PORT` are accepted as Caddy and Traefik users write them:
/// the IPv4 address first, and its IPv6 companion on the same port.
#[test]
fn bind_shorthands() {
    for (given, shown, first, companion) in [
        (":8080", ":8080", "0.0.0.0:8080", Some("[::]:8080")),
        ("*:8081", ":8081", "0.0.0.0:8081", Some("[::]:8081")),
        (
            "localhost:8082",
            "localhost:8082",
            "127.0.0.1:8082",
            Some("[::1]:8082"),
        ),
        ("[::1]:8083", "[::1]:8083", "[::1]:8083", None),
        ("[::]:8084", "[::]:8084", "[::]:8084", None),
    ] {
        let config = weir_config::parse(
            &format!("[[listeners]]\nname = \"main\"\nbind = \"{given}\"\n[[routes]]\nrespond = {{ status = 200 }}\n"),
            "weir.toml",
        )
        .unwrap_or_else(|e| panic!("{given}: {e}"));
        let bind = &config.listeners[0].bind;
        assert_eq!(bind.to_string(), shown, "{given}");
        assert_eq!(bind.0.to_string(), first, "{given}");
        assert_eq!(
            bind.companions(bind.0.port())
                .map(|a| a.to_string())
                .as_deref(),
            companion,
            "{given}"
        );
    }
}

/// Wrong types, unknown keys and missing keys are all reported in one pass, in file order, in
/// Weir's words with an example — not only the first one.
#[test]
fn every_structural_problem_at_once() {
    insta::assert_snapshot!(error_of(
        r#"
workers = "four"

[[listeners]]
name = "main"
bind = "127.0.0.1:8080"
max_connections = -3
keepalive = "10s"

[[listeners]]
bind = "127.0.0.1:8081"

[[upstreams]]
name = "api"
endpoints = "10.0.0.1:80"

[[routes]]
match = { path = 5 }
respond = { status = "ok" }
"#
    ));
}
