//! Only known callers get in: bearer tokens (their SHA-256 in `[[callers]]`)
//! name the caller, the caller's targets bound what it may send, batches are
//! the caller's own (NOT_FOUND to others, readable by an admin), and
//! idempotency keys are scoped per caller. A config file without callers
//! refuses to start unless it says `allow_unauthenticated = true`.

use crate::common::*;
use registrar::api::pb;

const TOKEN_A: &str = "token-of-caller-a";
const TOKEN_B: &str = "token-of-caller-b";
const TOKEN_ADMIN: &str = "token-of-the-admin";

fn callers_toml() -> String {
    format!(
        "[[callers]]\nname = \"a\"\ntoken_sha256 = \"{}\"\ntargets = [\"lcic-*\"]\n\n\
         [[callers]]\nname = \"b\"\ntoken_sha256 = \"{}\"\ntargets = [\"*\"]\n\n\
         [[callers]]\nname = \"ops\"\ntoken_sha256 = \"{}\"\ntargets = [\"lcic-a\"]\nadmin = true\n",
        sha256_hex(TOKEN_A),
        sha256_hex(TOKEN_B),
        sha256_hex(TOKEN_ADMIN)
    )
}

async fn start() -> (registrar::sim::Simulator, Registrar) {
    let simulator = start_simulator(vec![LCIC.sim(1000)]).await;
    let targets = format!(
        "{}\n{}\n{}",
        LCIC.target("lcic-a", &simulator.endpoint(), "qps = 1000"),
        LCIC.target("other", &simulator.endpoint(), "qps = 1000"),
        callers_toml()
    );
    let registrar = Registrar::start(&targets).await;
    (simulator, registrar)
}

fn get(batch_id: &str, token: &str) -> tonic::Request<pb::GetBatchRequest> {
    with_token(
        pb::GetBatchRequest {
            batch_id: batch_id.to_owned(),
        },
        token,
    )
}

#[tokio::test]
async fn no_token_or_an_unknown_one_is_unauthenticated_and_nothing_is_sent() {
    let (simulator, mut registrar) = start().await;
    let no_token = batch_register(&mut registrar.client, request(&["lcic-a"], users("n", 3)))
        .await
        .unwrap_err();
    assert_eq!(
        no_token.code(),
        tonic::Code::Unauthenticated,
        "{no_token:?}"
    );
    let wrong = batch_register(
        &mut registrar.client,
        with_token(request(&["lcic-a"], users("n", 3)), "not-a-token"),
    )
    .await
    .unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
    assert!(!wrong.message().contains("not-a-token"), "{wrong:?}");
    let listed = registrar
        .client
        .list_targets(pb::ListTargetsRequest {})
        .await
        .unwrap_err();
    assert_eq!(listed.code(), tonic::Code::Unauthenticated);
    assert!(simulator.calls().is_empty(), "the simulator saw nothing");
    registrar.stop().await;
}

#[tokio::test]
async fn a_caller_uses_and_lists_only_its_targets() {
    let (simulator, mut registrar) = start().await;
    let denied = batch_register(
        &mut registrar.client,
        with_token(request(&["lcic-a", "other"], users("d", 5)), TOKEN_A),
    )
    .await
    .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    assert!(
        denied.message().contains("\"other\""),
        "names the target: {denied:?}"
    );
    assert!(simulator.calls().is_empty(), "nothing was accepted or sent");

    let targets: Vec<String> = registrar
        .client
        .list_targets(with_token(pb::ListTargetsRequest {}, TOKEN_A))
        .await
        .unwrap()
        .into_inner()
        .targets
        .into_iter()
        .map(|target| target.name)
        .collect();
    assert_eq!(targets, ["lcic-a"]);

    // an unknown target the pattern allows lists only the caller's targets
    let unknown = batch_register(
        &mut registrar.client,
        with_token(request(&["lcic-zzz"], users("u", 1)), TOKEN_A),
    )
    .await
    .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::InvalidArgument);
    assert!(!unknown.message().contains("other"), "{unknown:?}");

    let allowed = batch_register(
        &mut registrar.client,
        with_token(request(&["lcic-a"], users("ok", 5)), TOKEN_A),
    )
    .await
    .unwrap();
    assert_eq!(allowed.with_outcome(pb::Outcome::Registered).len(), 5);
    registrar.stop().await;
}

#[tokio::test]
async fn a_batch_is_its_callers_own_and_an_admin_reads_every_one() {
    let (_simulator, mut registrar) = start().await;
    let of_a = batch_register(
        &mut registrar.client,
        with_token(request(&["lcic-a"], users("own", 4)), TOKEN_A),
    )
    .await
    .unwrap();
    let batch_id = of_a.batch_id();
    let mut client = registrar.client.clone();

    assert_eq!(
        client
            .get_batch(get(&batch_id, TOKEN_A))
            .await
            .unwrap()
            .into_inner()
            .batch
            .unwrap()
            .batch_id,
        batch_id
    );
    let hidden = client.get_batch(get(&batch_id, TOKEN_B)).await.unwrap_err();
    assert_eq!(hidden.code(), tonic::Code::NotFound, "{hidden:?}");
    let rows = |token: &str, batch_id: &str| {
        with_token(
            pb::ListRegistrationsRequest {
                batch_id: batch_id.to_owned(),
                ..pb::ListRegistrationsRequest::default()
            },
            token,
        )
    };
    let hidden_rows = client
        .list_registrations(rows(TOKEN_B, &batch_id))
        .await
        .unwrap_err();
    assert_eq!(hidden_rows.code(), tonic::Code::NotFound);
    let across = client
        .list_registrations(rows(TOKEN_B, ""))
        .await
        .unwrap_err();
    assert_eq!(across.code(), tonic::Code::InvalidArgument, "{across:?}");

    // the admin reads it, and lists across batches
    let batch = client
        .get_batch(get(&batch_id, TOKEN_ADMIN))
        .await
        .unwrap()
        .into_inner()
        .batch
        .unwrap();
    assert_eq!(batch.user_count, 4);
    let listed = client
        .list_registrations(rows(TOKEN_ADMIN, ""))
        .await
        .unwrap()
        .into_inner()
        .registrations;
    assert_eq!(listed.len(), 4);
    let own_rows = client
        .list_registrations(rows(TOKEN_A, &batch_id))
        .await
        .unwrap()
        .into_inner()
        .registrations;
    assert_eq!(own_rows.len(), 4);
    registrar.stop().await;
}

#[tokio::test]
async fn one_idempotency_key_used_by_two_callers_gives_two_batches() {
    let (_simulator, mut registrar) = start().await;
    let keyed = |token: &str, prefix: &str| {
        let mut message = request(&["lcic-a"], users(prefix, 3));
        message.idempotency_key = "nightly-sync".to_owned();
        with_token(message, token)
    };
    let first = batch_register(&mut registrar.client, keyed(TOKEN_A, "ka"))
        .await
        .unwrap();
    let second = batch_register(&mut registrar.client, keyed(TOKEN_B, "kb"))
        .await
        .unwrap();
    assert_ne!(first.batch_id(), second.batch_id(), "two batches");
    assert_eq!(second.with_outcome(pb::Outcome::Registered).len(), 3);
    // each caller's replay finds its own batch
    let replay = batch_register(&mut registrar.client, keyed(TOKEN_A, "ka"))
        .await
        .unwrap();
    assert_eq!(replay.batch_id(), first.batch_id());
    assert!(replay.results.iter().all(|result| result.replayed));
    let batch = registrar
        .client
        .clone()
        .get_batch(get(&second.batch_id(), TOKEN_B))
        .await
        .unwrap()
        .into_inner()
        .batch
        .unwrap();
    assert_eq!(
        batch.idempotency_key, "nightly-sync",
        "the key as the caller gave it"
    );
    registrar.stop().await;
}

#[tokio::test]
async fn a_config_file_without_callers_refuses_to_start_naming_both_ways_out() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("open.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n{}",
            LCIC.target("lcic", "http://127.0.0.1:9", "")
        ),
    )
    .unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args(["serve", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("[[callers]]") && stderr.contains("allow_unauthenticated = true"),
        "{stderr}"
    );
}

#[tokio::test]
async fn registrar_import_sends_the_token_from_its_file_or_the_environment() {
    let (simulator, mut registrar) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("users.csv");
    std::fs::write(&input, "userId,displayName\nt1,One\nt2,Two\n").unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN_A}\n")).unwrap();
    let server = format!("http://{}", registrar.addr);
    let import = |extra: &[&str], token_env: Option<&str>| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_registrar"));
        command
            .arg("import")
            .arg(&input)
            .args(["--target", "lcic-a", "--server", &server, "--retries", "0"])
            .args(extra)
            .env_remove("REGISTRAR_TOKEN");
        if let Some(token) = token_env {
            command.env("REGISTRAR_TOKEN", token);
        }
        command.output()
    };
    let without = import(&[], None).await.unwrap();
    assert_eq!(without.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&without.stderr).contains("Unauthenticated"));
    assert!(simulator.calls().is_empty());

    let from_file = import(&["--token-file", token_file.to_str().unwrap()], None)
        .await
        .unwrap();
    assert_eq!(
        from_file.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&from_file.stderr)
    );
    let from_env = import(&[], Some(TOKEN_A)).await.unwrap();
    assert_eq!(from_env.status.code(), Some(0));
    assert_eq!(
        simulator
            .registered(registrar::domain::VendorKind::TencentLcic, LCIC_APP_ID)
            .len(),
        2
    );
    for output in [&without, &from_file, &from_env] {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!text.contains(TOKEN_A), "the token is never printed");
    }
    registrar.stop().await;
}
