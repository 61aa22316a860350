//! TLS and mutual TLS on the gRPC port, with certificates the tests make:
//! plaintext and clients that do not trust the server's CA fail, mutual TLS
//! wants a client certificate from the configured CA, a certificate rotated
//! on disk is served without a restart, the health service answers in
//! plaintext on `[server] health_listen`, and `registrar import` connects
//! with `--ca-file`, `--cert` and `--key`.

use std::{path::Path, time::Duration};

use crate::common::{
    certs::{Issued, TestCa},
    postgres::free_loopback_port,
    process::readiness,
    *,
};
use registrar::{api::pb, domain::VendorKind, sim::Simulator};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::health_check_response::ServingStatus;

fn tls_toml(server: &Issued, client_ca: Option<&Path>) -> String {
    let mut toml = format!(
        "[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        server.cert_file.display(),
        server.key_file.display()
    );
    if let Some(ca) = client_ca {
        toml.push_str(&format!("client_ca_file = \"{}\"\n", ca.display()));
    }
    toml
}

async fn start(dir: &Path, tls: &str, server_extra: &str) -> (Simulator, Registrar) {
    let simulator = start_simulator(vec![LCIC.sim(1000)]).await;
    let url = format!("sqlite://{}?mode=rwc", dir.join("audit.db").display());
    let registrar = Registrar::start_with_database(
        &LCIC.target("lcic", &simulator.endpoint(), "qps = 1000"),
        &url,
        &format!("{server_extra}\n{tls}"),
    )
    .await;
    (simulator, registrar)
}

/// A client over TLS that trusts `ca`, with `identity` for mutual TLS.
async fn tls_client(
    port: u16,
    ca: &Path,
    identity: Option<&Issued>,
) -> Result<pb::registration_service_client::RegistrationServiceClient<Channel>, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()))
        .domain_name("localhost");
    if let Some(identity) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(&identity.cert_file).unwrap(),
            std::fs::read(&identity.key_file).unwrap(),
        ));
    }
    let channel = Endpoint::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|error| format!("{error:?}"))?;
    Ok(pb::registration_service_client::RegistrationServiceClient::new(channel))
}

/// Whether ListTargets answers over TLS with this trust and identity.
async fn answers(port: u16, ca: &Path, identity: Option<&Issued>) -> bool {
    match tls_client(port, ca, identity).await {
        Ok(mut client) => tokio::time::timeout(
            Duration::from_secs(10),
            client.list_targets(pb::ListTargetsRequest {}),
        )
        .await
        .is_ok_and(|answer| answer.is_ok()),
        Err(_) => false,
    }
}

#[tokio::test]
async fn the_tls_port_refuses_plaintext_and_clients_that_do_not_trust_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "server");
    let other = TestCa::new(dir.path(), "other");
    let server = ca.server(dir.path(), "server");
    let (_simulator, mut registrar) = start(dir.path(), &tls_toml(&server, None), "").await;
    let port = registrar.addr.port();

    assert!(
        answers(port, &ca.pem_file, None).await,
        "TLS with the CA works"
    );
    assert!(
        !answers(port, &other.pem_file, None).await,
        "a client trusting another CA fails"
    );
    let plaintext = pb::registration_service_client::RegistrationServiceClient::connect(format!(
        "http://127.0.0.1:{port}"
    ))
    .await;
    let refused = match plaintext {
        Err(_) => true,
        Ok(mut client) => tokio::time::timeout(
            Duration::from_secs(10),
            client.list_targets(pb::ListTargetsRequest {}),
        )
        .await
        .map_or(true, |answer| answer.is_err()),
    };
    assert!(refused, "plaintext to the TLS port fails");
    registrar.stop().await;
}

#[tokio::test]
async fn mutual_tls_wants_a_client_certificate_from_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "server");
    let clients = TestCa::new(dir.path(), "clients");
    let stranger = TestCa::new(dir.path(), "stranger");
    let server = ca.server(dir.path(), "server");
    let (_simulator, mut registrar) =
        start(dir.path(), &tls_toml(&server, Some(&clients.pem_file)), "").await;
    let port = registrar.addr.port();
    let known = clients.client(dir.path(), "known", "spiffe://example.org/ns/app/sa/known");
    let unknown = stranger.client(
        dir.path(),
        "unknown",
        "spiffe://example.org/ns/app/sa/unknown",
    );

    assert!(
        !answers(port, &ca.pem_file, None).await,
        "no client certificate fails"
    );
    assert!(
        !answers(port, &ca.pem_file, Some(&unknown)).await,
        "a client certificate from another CA fails"
    );
    assert!(
        answers(port, &ca.pem_file, Some(&known)).await,
        "a client certificate from the client CA works"
    );
    registrar.stop().await;
}

#[tokio::test]
async fn a_certificate_rotated_on_disk_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = TestCa::new(dir.path(), "first");
    let second = TestCa::new(dir.path(), "second");
    let served = first.server(dir.path(), "server");
    let (_simulator, mut registrar) = start(dir.path(), &tls_toml(&served, None), "").await;
    let port = registrar.addr.port();
    assert!(answers(port, &first.pem_file, None).await);

    // cert-manager's way: new files moved into place
    let rotated = second.server(dir.path(), "rotated");
    std::fs::rename(&rotated.key_file, &served.key_file).unwrap();
    std::fs::rename(&rotated.cert_file, &served.cert_file).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !answers(port, &second.pem_file, None).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotated certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        !answers(port, &first.pem_file, None).await,
        "the old certificate is no longer served"
    );
    registrar.stop().await;
}

#[tokio::test]
async fn health_answers_in_plaintext_on_health_listen_beside_the_tls_port() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "server");
    let server = ca.server(dir.path(), "server");
    let health_port = free_loopback_port();
    let (_simulator, mut registrar) = start(
        dir.path(),
        &tls_toml(&server, None),
        &format!("health_listen = \"127.0.0.1:{health_port}\""),
    )
    .await;
    let health = std::net::SocketAddr::from(([127, 0, 0, 1], health_port));
    assert_eq!(readiness(health).await, Some(ServingStatus::Serving));
    assert_eq!(
        readiness(registrar.addr).await,
        None,
        "the TLS port does not answer plaintext"
    );
    registrar.stop().await;
}

#[tokio::test]
async fn registrar_import_connects_with_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "server");
    let clients = TestCa::new(dir.path(), "clients");
    let server = ca.server(dir.path(), "server");
    let (simulator, mut registrar) =
        start(dir.path(), &tls_toml(&server, Some(&clients.pem_file)), "").await;
    let known = clients.client(
        dir.path(),
        "importer",
        "spiffe://example.org/ns/ops/sa/importer",
    );
    let input = dir.path().join("users.csv");
    let mut csv = String::from("userId,displayName\n");
    for n in 0..2_000 {
        csv.push_str(&format!("t{n:05},TLS user {n}\n"));
    }
    std::fs::write(&input, csv).unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_registrar"))
        .arg("import")
        .arg(&input)
        .args(["--target", "lcic"])
        .args([
            "--server",
            &format!("https://localhost:{}", registrar.addr.port()),
        ])
        .arg("--ca-file")
        .arg(&ca.pem_file)
        .arg("--cert")
        .arg(&known.cert_file)
        .arg("--key")
        .arg(&known.key_file)
        .args(["--retries", "0"])
        .output()
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        simulator
            .registered(VendorKind::TencentLcic, LCIC_APP_ID)
            .len(),
        2_000
    );
    registrar.stop().await;
}

#[tokio::test]
async fn a_client_certificates_san_names_its_caller() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "server");
    let clients = TestCa::new(dir.path(), "clients");
    let server = ca.server(dir.path(), "server");
    let simulator = start_simulator(vec![LCIC.sim(1000)]).await;
    let targets = format!(
        "{}\n[[callers]]\nname = \"billing\"\ntls_identity = \"spiffe://example.org/ns/billing/sa/api\"\ntargets = [\"lcic\"]\n",
        LCIC.target("lcic", &simulator.endpoint(), "qps = 1000")
    );
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("audit.db").display()
    );
    let mut registrar =
        Registrar::start_with_database(&targets, &url, &tls_toml(&server, Some(&clients.pem_file)))
            .await;
    let port = registrar.addr.port();
    let billing = clients.client(
        dir.path(),
        "billing",
        "spiffe://example.org/ns/billing/sa/api",
    );
    let other = clients.client(dir.path(), "other", "spiffe://example.org/ns/other/sa/api");

    let mut client = tls_client(port, &ca.pem_file, Some(&billing))
        .await
        .unwrap();
    let collected = batch_register(&mut client, request(&["lcic"], users("m", 3)))
        .await
        .unwrap();
    assert_eq!(collected.with_outcome(pb::Outcome::Registered).len(), 3);

    let mut stranger = tls_client(port, &ca.pem_file, Some(&other)).await.unwrap();
    let refused = stranger
        .list_targets(pb::ListTargetsRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    registrar.stop().await;
}

/// `registrar health` with these arguments: its exit code and stdout.
async fn health_command(args: &[&str]) -> (Option<i32>, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_registrar"))
        .arg("health")
        .args(args)
        .output()
        .await
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test]
async fn registrar_health_checks_a_mutual_tls_server_as_the_helm_test_does() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "server-ca");
    let server = ca.server(dir.path(), "server");
    let clients = TestCa::new(dir.path(), "client-ca");
    let client = clients.client(dir.path(), "helm-test", "spiffe://example.org/helm-test");
    let (_simulator, mut registrar) =
        start(dir.path(), &tls_toml(&server, Some(&clients.pem_file)), "").await;
    let url = format!("https://127.0.0.1:{}", registrar.addr.port());
    let (ca_file, cert, key) = (
        ca.pem_file.display().to_string(),
        client.cert_file.display().to_string(),
        client.key_file.display().to_string(),
    );

    // as the chart's test pod runs it: the Service's name is not the URL's host
    let (code, stdout) = health_command(&[
        "--server",
        &url,
        "--ca-file",
        &ca_file,
        "--cert",
        &cert,
        "--key",
        &key,
        "--server-name",
        "localhost",
    ])
    .await;
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.starts_with("registrar.v1.RegistrationService: SERVING\n"),
        "{stdout}"
    );
    for service in [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "registrar.v1.RegistrationService",
    ] {
        assert!(stdout.contains(&format!("  {service}\n")), "{stdout}");
    }

    // no client certificate: the handshake is refused, no answer
    let (code, _) = health_command(&[
        "--server",
        &url,
        "--ca-file",
        &ca_file,
        "--server-name",
        "localhost",
    ])
    .await;
    assert_eq!(code, Some(2));
    // nothing listening: no answer either
    let closed = format!("http://127.0.0.1:{}", free_loopback_port());
    let (code, _) = health_command(&["--server", &closed]).await;
    assert_eq!(code, Some(2));
    registrar.stop().await;
}
