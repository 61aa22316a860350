//! Configuration loading: `Config::load` (figment over TOML text, the
//! environment and the CLI, then `check()`) returns a configuration or an
//! error for any text an operator could write, and never panics. Beyond no
//! panic: a configuration that loads keeps the promises `check()` makes
//! (unique target names, caps, quotas and margins in range), every loaded
//! target builds its vendor module or names the setting at fault, and CLI
//! overrides of the embedded default always load and win.
//!
//! Inputs go from blind to informed: any Unicode text, TOML-ish lines made
//! of real section headers and `key = value` pairs, valid documents (which
//! must load: `check()` refuses nothing it documents as valid), then valid
//! documents with one real key holding another value of its kind, a value of
//! any other type (strings, integers at their extremes, floats including
//! `nan` and `inf`, booleans, arrays, inline tables, datetimes), left out, or
//! joined by an unknown key.

use std::{collections::HashSet, net::SocketAddr};

use proptest::prelude::*;
use registrar::config::{CliOverrides, Config};

use crate::support::{cases, unicode_text};

/// A path no test machine has, for `{ file = ... }` credentials: building a
/// vendor module resolves credentials, and a generated path must never name
/// a real file (`/dev/zero` would never end).
const MISSING_FILE: &str = "/nonexistent/registrar-properties/secret";

/// A TOML basic string of `text`. JSON escapes are TOML escapes; the rare
/// character TOML wants escaped and JSON does not (DEL) makes the document
/// invalid, which is one more input to refuse.
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

/// Any TOML value, written as TOML text.
fn any_toml_value() -> BoxedStrategy<String> {
    let scalar = prop_oneof![
        unicode_text(12).prop_map(|text| toml_string(&text)),
        any::<i64>().prop_map(|n| n.to_string()),
        prop::sample::select(vec!["0", "-1", "1", "4294967296", "18446744073709551615"])
            .prop_map(str::to_owned),
        any::<f64>().prop_map(|x| {
            if x.is_nan() {
                "nan".to_owned()
            } else if x.is_infinite() {
                if x > 0.0 { "inf" } else { "-inf" }.to_owned()
            } else {
                format!("{x:?}")
            }
        }),
        prop::sample::select(vec!["0.02", "0.5", "0.51", "-0.0", "nan", "inf", "1e400"])
            .prop_map(str::to_owned),
        any::<bool>().prop_map(|b| b.to_string()),
        Just("1979-05-27T07:32:00Z".to_owned()),
        Just("07:32:00".to_owned()),
    ];
    scalar
        .prop_recursive(2, 12, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|items| format!("[{}]", items.join(", "))),
                prop::collection::vec(
                    (
                        prop::sample::select(vec!["env", "file", "x", "name"]),
                        inner
                    ),
                    0..3
                )
                .prop_map(|fields| {
                    let fields: Vec<String> = fields
                        .into_iter()
                        .map(|(key, value)| {
                            // a file credential always names the missing file
                            let value = if key == "file" {
                                toml_string(MISSING_FILE)
                            } else {
                                value
                            };
                            format!("{key} = {value}")
                        })
                        .collect();
                    format!("{{ {} }}", fields.join(", "))
                }),
            ]
        })
        .boxed()
}

fn pick(values: &[&'static str]) -> BoxedStrategy<String> {
    prop::sample::select(values.to_vec())
        .prop_map(toml_string)
        .boxed()
}

/// A credential: a literal, an environment variable that is not set, or the missing file.
fn credential() -> BoxedStrategy<String> {
    prop_oneof![
        3 => pick(&["AKIDregistrarDEMO", "secret", ""]),
        1 => Just(r#"{ env = "REGISTRAR_PROPERTIES_UNSET_VARIABLE" }"#.to_owned()),
        1 => Just(format!("{{ file = {} }}", toml_string(MISSING_FILE))),
    ]
    .boxed()
}

fn duration() -> BoxedStrategy<String> {
    pick(&[
        "10s",
        "5ms",
        "1h 2m",
        "0s",
        "",
        "-1s",
        "1.5s",
        "99999999999999999999999s",
        "10 parsecs",
    ])
}

fn socket_address() -> BoxedStrategy<String> {
    prop_oneof![
        pick(&[
            "127.0.0.1:50051",
            "[::1]:0",
            "0.0.0.0:65535",
            "localhost:1",
            ":80",
            "1.2.3.4"
        ]),
        any::<SocketAddr>().prop_map(|address| toml_string(&address.to_string())),
    ]
    .boxed()
}

fn small_integer() -> BoxedStrategy<String> {
    prop_oneof![
        4 => (0u64..=1200).prop_map(|n| n.to_string()),
        1 => Just("0".to_owned()),
    ]
    .boxed()
}

/// The right kind of value for a real key, often a wrong one of that kind
/// (a zero quota, a cap too big, an unknown vendor); nearly any key.
fn right_value(section: &str, key: &str) -> BoxedStrategy<String> {
    match (section, key) {
        ("server", "listen" | "health_listen") => socket_address(),
        ("server", "shutdown_grace" | "batch_lease") | ("targets", "timeout" | "linger") => {
            duration()
        }
        ("server", "max_unary_users") | ("audit", "max_connections") => small_integer(),
        ("server", "instance_name") => pick(&["replica-1", ""]),
        ("server", "allow_unauthenticated") | ("callers", "admin") => {
            any::<bool>().prop_map(|b| b.to_string()).boxed()
        }
        ("tls", _) => pick(&["/nonexistent/cert.pem", ""]),
        ("audit", "database_url") => credential(),
        ("telemetry", "log_format") => pick(&["text", "json", "yaml"]),
        ("telemetry", "otlp_endpoint") => pick(&["http://127.0.0.1:4317", "not a url"]),
        ("targets", "name") => pick(&["lcic", "zim", "volc", "ciam", "import", " ", ""]),
        ("targets", "vendor") => pick(&[
            "tencent-lcic",
            "zego-zim",
            "volc-rtc",
            "tencent-ciam",
            "tencent-ciam-import",
            "tencent",
        ]),
        ("targets", "endpoint") => pick(&[
            "http://127.0.0.1:9",
            "https://lcic.tencentcloudapi.com",
            "ftp://127.0.0.1",
            "127.0.0.1:9",
            "",
        ]),
        ("targets", "app_id") => prop_oneof![
            (0u64..=10).prop_map(|n| n.to_string()),
            Just("4294967296".to_owned()),
            Just("18446744073709551615".to_owned()),
        ]
        .boxed(),
        ("targets", "user_store_id" | "region") => pick(&["demo-user-store", "ap-guangzhou", ""]),
        ("targets", "secret_id" | "secret_key" | "server_secret") => credential(),
        ("targets", "qps" | "max_batch" | "max_in_flight" | "max_attempts") => small_integer(),
        ("targets", "rate_margin") => rate_margin(),
        ("callers", "name") => pick(&["ops", "batch.job-1", "", "bad name"]),
        ("callers", "token_sha256") => prop_oneof![
            "[0-9a-f]{64}".prop_map(|hash| toml_string(&hash)),
            pick(&["abc", ""]),
        ]
        .boxed(),
        ("callers", "tls_identity") => pick(&["spiffe://example.org/ops", ""]),
        ("callers", "targets") => prop::collection::vec(
            prop::sample::select(vec!["*", "lcic", "z*", "nothing"]),
            0..3,
        )
        .prop_map(|patterns| {
            let patterns: Vec<String> = patterns.into_iter().map(toml_string).collect();
            format!("[{}]", patterns.join(", "))
        })
        .boxed(),
        _ => any_toml_value(),
    }
}

/// `rate_margin` is a float; the right values straddle its [0, 0.5] range.
fn rate_margin() -> BoxedStrategy<String> {
    prop::sample::select(vec![
        "0.0", "0.02", "0.5", "0.500001", "-0.01", "nan", "inf",
    ])
    .prop_map(str::to_owned)
    .boxed()
}

const SERVER_KEYS: &[&str] = &[
    "listen",
    "shutdown_grace",
    "max_unary_users",
    "instance_name",
    "batch_lease",
    "health_listen",
    "allow_unauthenticated",
];
const TLS_KEYS: &[&str] = &["cert_file", "key_file", "client_ca_file"];
const AUDIT_KEYS: &[&str] = &["database_url", "max_connections"];
const TELEMETRY_KEYS: &[&str] = &["log_format", "otlp_endpoint"];
const TARGET_KEYS: &[&str] = &[
    "name",
    "vendor",
    "endpoint",
    "app_id",
    "user_store_id",
    "region",
    "secret_id",
    "secret_key",
    "server_secret",
    "qps",
    "max_batch",
    "timeout",
    "linger",
    "max_in_flight",
    "max_attempts",
    "rate_margin",
];
const CALLER_KEYS: &[&str] = &["name", "token_sha256", "tls_identity", "targets", "admin"];

/// A section of a document: its header and its `key = value` lines, as TOML text.
#[derive(Debug, Clone)]
struct Section {
    header: &'static str,
    /// The key set of `right_value`: `server`, `tls`, `audit`, `telemetry`, `targets`, `callers`.
    kind: &'static str,
    lines: Vec<(String, String)>,
}

fn render(sections: &[Section]) -> String {
    let mut text = String::new();
    for section in sections {
        text.push_str(section.header);
        text.push('\n');
        for (key, value) in &section.lines {
            text.push_str(&format!("{key} = {value}\n"));
        }
        text.push('\n');
    }
    text
}

fn line(key: &str, value: impl Into<String>) -> (String, String) {
    (key.to_owned(), value.into())
}

/// A `[[targets]]` entry that `check()` accepts: its vendor's required keys,
/// and optional ones within their ranges.
fn valid_target(position: usize) -> BoxedStrategy<Section> {
    (
        prop::sample::select(registrar::domain::VendorKind::ALL.to_vec()),
        prop::sample::select(vec![
            "http://127.0.0.1:9",
            "https://api.example.com:8443/base",
        ]),
        1u64..=u64::from(u32::MAX),
        prop::option::of(1u32..=100),
        any::<prop::sample::Index>(),
        prop::option::of(1u32..=10),
        prop::option::of(0.0f64..=0.5),
        prop::option::of(prop::sample::select(vec!["10s", "250ms", "1m 30s"])),
    )
        .prop_map(
            move |(kind, endpoint, app_id, qps, batch, attempts, margin, timeout)| {
                let spec = registrar::vendor_api::registry::spec(kind);
                let mut lines = vec![
                    line("name", toml_string(&format!("target-{position}"))),
                    line("vendor", toml_string(kind.as_str())),
                    line("endpoint", toml_string(endpoint)),
                ];
                for key in spec.required_keys {
                    let value = match *key {
                        "app_id" => app_id.min(spec.max_app_id).to_string(),
                        "region" => toml_string("ap-guangzhou"),
                        other => toml_string(&format!("{other}-value")),
                    };
                    lines.push(line(key, value));
                }
                if let Some(qps) = qps {
                    lines.push(line("qps", qps.to_string()));
                }
                // 1..=cap: Index picks a size in range whatever the cap
                lines.push(line(
                    "max_batch",
                    (batch.index(spec.max_batch as usize) + 1).to_string(),
                ));
                if let Some(attempts) = attempts {
                    lines.push(line("max_attempts", attempts.to_string()));
                }
                if let Some(margin) = margin {
                    lines.push(line("rate_margin", format!("{margin:?}")));
                }
                if let Some(timeout) = timeout {
                    lines.push(line("timeout", toml_string(timeout)));
                }
                Section {
                    header: "[[targets]]",
                    kind: "targets",
                    lines,
                }
            },
        )
        .boxed()
}

/// A whole document that loads: any of the optional sections, up to three
/// targets, and callers allowed to use them.
fn valid_document() -> impl Strategy<Value = Vec<Section>> {
    let server = (socket_address_valid(), any::<bool>(), 1usize..=100_000).prop_map(
        |(listen, open, max_unary_users)| Section {
            header: "[server]",
            kind: "server",
            lines: vec![
                line("listen", listen),
                line("allow_unauthenticated", open.to_string()),
                line("max_unary_users", max_unary_users.to_string()),
                line("shutdown_grace", toml_string("30s")),
            ],
        },
    );
    let audit = (1u32..=64).prop_map(|connections| Section {
        header: "[audit]",
        kind: "audit",
        lines: vec![
            line(
                "database_url",
                toml_string("sqlite://registrar.db?mode=rwc"),
            ),
            line("max_connections", connections.to_string()),
        ],
    });
    let telemetry = prop::sample::select(vec!["text", "json"]).prop_map(|format| Section {
        header: "[telemetry]",
        kind: "telemetry",
        lines: vec![line("log_format", toml_string(format))],
    });
    let targets =
        (0usize..=3).prop_flat_map(|count| (0..count).map(valid_target).collect::<Vec<_>>());
    (
        prop::option::of(server),
        prop::option::of(audit),
        prop::option::of(telemetry),
        targets,
        0usize..=2,
        "[0-9a-f]{64}",
    )
        .prop_map(|(server, audit, telemetry, targets, callers, hash)| {
            let callers = if targets.is_empty() { 0 } else { callers };
            let callers = (0..callers).map(|position| Section {
                header: "[[callers]]",
                kind: "callers",
                lines: vec![
                    line("name", toml_string(&format!("caller-{position}"))),
                    line("token_sha256", toml_string(&hash)),
                    line("targets", r#"["target-*"]"#),
                ],
            });
            [server, audit, telemetry]
                .into_iter()
                .flatten()
                .chain(targets)
                .chain(callers)
                .collect()
        })
}

fn socket_address_valid() -> BoxedStrategy<String> {
    prop::sample::select(vec!["127.0.0.1:50051", "[::1]:0", "0.0.0.0:65535"])
        .prop_map(toml_string)
        .boxed()
}

/// How one real key of a valid document is made wrong.
#[derive(Debug, Clone)]
enum Mutation {
    /// Its value becomes another of its kind (an unknown vendor, a zero quota, ...).
    NearValue(String),
    /// Its value becomes any TOML value of any type.
    AnyValue(String),
    /// It is left out.
    Removed,
    /// A key the section does not have is added.
    UnknownKey(String),
}

/// A valid document with one key of one section mutated, and the mutation said.
fn document_with_one_key_wrong() -> impl Strategy<Value = (Vec<Section>, String)> {
    (
        valid_document().prop_filter("a section to mutate", |sections| !sections.is_empty()),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
    )
        .prop_flat_map(|(sections, which, key)| {
            let at = which.index(sections.len());
            let lines = &sections[at].lines;
            let key = (!lines.is_empty()).then(|| key.index(lines.len()));
            let name = key.map(|key| lines[key].0.clone()).unwrap_or_default();
            let mutation = prop_oneof![
                3 => right_value(sections[at].kind, &name).prop_map(Mutation::NearValue),
                3 => any_toml_value().prop_map(Mutation::AnyValue),
                1 => Just(Mutation::Removed),
                1 => any_toml_value().prop_map(Mutation::UnknownKey),
            ];
            (Just(sections), Just(at), Just(key), mutation)
        })
        .prop_map(|(mut sections, at, key, mutation)| {
            let lines = &mut sections[at].lines;
            let described = match (mutation, key) {
                (Mutation::NearValue(value) | Mutation::AnyValue(value), Some(key)) => {
                    lines[key].1 = value;
                    format!("{} = {}", lines[key].0, lines[key].1)
                }
                (Mutation::Removed, Some(key)) => format!("{} removed", lines.remove(key).0),
                (Mutation::Removed, None) => "nothing to remove".to_owned(),
                (
                    Mutation::UnknownKey(value)
                    | Mutation::NearValue(value)
                    | Mutation::AnyValue(value),
                    _,
                ) => {
                    lines.push(line("unknown_key", value.clone()));
                    format!("unknown_key = {value}")
                }
            };
            (sections, described)
        })
}

/// Lines that look like TOML: real headers, `key = value` with real keys, and junk.
fn tomlish_text() -> impl Strategy<Value = String> {
    let all_keys: Vec<&'static str> = [
        SERVER_KEYS,
        TLS_KEYS,
        AUDIT_KEYS,
        TELEMETRY_KEYS,
        TARGET_KEYS,
        CALLER_KEYS,
    ]
    .concat();
    let line = prop_oneof![
        prop::sample::select(vec![
            "[server]",
            "[server.tls]",
            "[audit]",
            "[telemetry]",
            "[[targets]]",
            "[[callers]]",
            "[targets]",
            "[[server]]",
            "[",
            "[[",
            "]]",
        ])
        .prop_map(str::to_owned),
        (prop::sample::select(all_keys), any_toml_value())
            .prop_map(|(key, value)| format!("{key} = {value}")),
        (
            prop::sample::select(vec!["=", " = ", "==", ""]),
            unicode_text(10),
            unicode_text(10)
        )
            .prop_map(|(equals, key, value)| format!("{key}{equals}{value}")),
        unicode_text(20),
    ];
    prop::collection::vec(line, 0..16).prop_map(|lines| lines.join("\n"))
}

/// Loads `text` as the only TOML layer, without a file or CLI overrides.
fn load(text: &str) -> Result<Config, registrar::config::ConfigError> {
    Config::load(None, Some(text), &CliOverrides::default())
}

/// What a configuration that loaded must keep of `check()`'s promises, and
/// every target builds its vendor module or fails naming the setting.
fn check_loaded(config: &Config) -> Result<(), TestCaseError> {
    prop_assert!(
        config.check().is_ok(),
        "a loaded configuration checks again"
    );
    let mut names = HashSet::new();
    for target in &config.targets {
        prop_assert!(
            names.insert(target.name.clone()),
            "duplicate target {}",
            target.name
        );
        prop_assert!(!target.name.trim().is_empty());
        let spec = target.vendor_spec();
        prop_assert!(target.qps() >= 1);
        prop_assert!(target.max_batch() >= 1);
        if spec.max_batch_is_cap {
            prop_assert!(target.max_batch() <= spec.max_batch, "{}", target.name);
        }
        prop_assert!(target.max_attempts >= 1);
        prop_assert!((0.0..=0.5).contains(&target.rate_margin));
        prop_assert!(target.app_id.is_none_or(|app_id| app_id <= spec.max_app_id));
        if let Err(error) = (spec.build)(target) {
            prop_assert!(!error.key().is_empty());
            prop_assert!(!target.setting_error(error).to_string().is_empty());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(256))]

    /// 256 cases: any Unicode text is a configuration or an error.
    #[test]
    fn any_text_loads_or_is_refused_without_panicking(text in unicode_text(200)) {
        match load(&text) {
            Ok(config) => check_loaded(&config)?,
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }

    /// 256 cases: TOML-ish lines with real headers and keys.
    #[test]
    fn tomlish_text_loads_or_is_refused_without_panicking(text in tomlish_text()) {
        match load(&text) {
            Ok(config) => check_loaded(&config)?,
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }

    /// 256 cases: documents that follow every rule load, and keep check()'s
    /// promises (check() refuses nothing it documents as valid).
    #[test]
    fn valid_documents_load(sections in valid_document()) {
        let text = render(&sections);
        let config = load(&text)
            .map_err(|error| TestCaseError::fail(format!("{error}\n{text}")))?;
        check_loaded(&config)?;
    }

    /// 256 cases: a valid document with one real key holding a value of
    /// another kind or type, left out, or an unknown key added: it loads or
    /// is refused, and a document that loads keeps check()'s promises.
    #[test]
    fn documents_with_one_real_key_wrong_load_or_are_refused(
        (sections, mutated) in document_with_one_key_wrong(),
    ) {
        match load(&render(&sections)) {
            Ok(config) => check_loaded(&config)?,
            Err(error) => prop_assert!(!error.to_string().is_empty(), "{}", mutated),
        }
    }

    /// 256 cases: the embedded default with any CLI listen address and
    /// database URL always loads, and the CLI wins.
    #[test]
    fn cli_overrides_of_the_embedded_default_always_load(
        listen in any::<SocketAddr>(),
        database_url in prop::option::of(unicode_text(40)),
    ) {
        // The CLI parses --listen from text, which carries no IPv6 flow label.
        let mut listen = listen;
        if let SocketAddr::V6(address) = &mut listen {
            address.set_flowinfo(0);
        }
        let text = registrar::app::embedded_config_toml("http://127.0.0.1:9");
        let overrides = CliOverrides { listen: Some(listen), database_url };
        let config = Config::load(None, Some(&text), &overrides)
            .map_err(|error| TestCaseError::fail(format!("the embedded default refused: {error}")))?;
        prop_assert_eq!(config.server.listen, listen);
        check_loaded(&config)?;
    }
}
