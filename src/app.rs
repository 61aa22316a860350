//! Assembles a running registrar from its configuration: the audit store,
//! the targets' vendor modules, the engine, and, for the embedded default,
//! the built-in simulator with demo targets pointing at it.

use std::{net::SocketAddr, sync::Arc};

use secrecy::SecretString;

use crate::{
    audit::AuditStore,
    config::{CliOverrides, Config, ConfigError},
    domain::VendorKind,
    engine::{Engine, target::TargetSpec},
    sim::{SimAccount, SimConfig, Simulator},
};

/// The demo account of each vendor kind the embedded simulator knows. These
/// credentials exist only inside the simulator; they are not secrets.
pub fn demo_accounts() -> Vec<SimAccount> {
    let account =
        |vendor: VendorKind, app_id: u64, user_store_id: &str, secret_id: &str| SimAccount {
            vendor,
            app_id,
            user_store_id: user_store_id.to_owned(),
            secret_id: secret_id.to_owned(),
            secret_key: SecretString::from(format!("registrar-demo-{vendor}-secret")),
            qps: vendor.default_qps(),
        };
    vec![
        account(
            VendorKind::TencentLcic,
            1_400_000_001,
            "",
            "AKIDregistrarDEMOlcic0000000000000000",
        ),
        account(VendorKind::ZegoZim, 1_000_000_001, "", ""),
        account(
            VendorKind::VolcRtc,
            600_000_001,
            "",
            "AKLTregistrarDEMOvolc000000000000000",
        ),
        account(
            VendorKind::TencentCiam,
            1,
            "demo-user-store",
            "AKIDregistrarDEMOciam0000000000000000",
        ),
        account(
            VendorKind::TencentCiamImport,
            2,
            "demo-import-store",
            "AKIDregistrarDEMOciamimport0000000000",
        ),
    ]
}

/// The embedded default configuration: one demo target per vendor, named after it.
pub fn embedded_config_toml(sim_endpoint: &str) -> String {
    use secrecy::ExposeSecret;
    demo_accounts()
        .iter()
        .map(|account| {
            let vendor = account.vendor;
            let secret = account.secret_key.expose_secret();
            let identity = match vendor {
                VendorKind::TencentLcic => format!(
                    "app_id = {}\nsecret_id = \"{}\"\nsecret_key = \"{secret}\"",
                    account.app_id, account.secret_id
                ),
                VendorKind::ZegoZim => {
                    format!("app_id = {}\nserver_secret = \"{secret}\"", account.app_id)
                }
                VendorKind::VolcRtc => format!(
                    "app_id = {}\nregion = \"cn-north-1\"\nsecret_id = \"{}\"\nsecret_key = \"{secret}\"",
                    account.app_id, account.secret_id
                ),
                VendorKind::TencentCiam | VendorKind::TencentCiamImport => format!(
                    "user_store_id = \"{}\"\nregion = \"ap-guangzhou\"\nsecret_id = \"{}\"\nsecret_key = \"{secret}\"",
                    account.user_store_id, account.secret_id
                ),
            };
            format!(
                "[[targets]]\nname = \"{vendor}\"\nvendor = \"{vendor}\"\nendpoint = \"{sim_endpoint}\"\n{identity}\n\n"
            )
        })
        .collect()
}

/// Starts the simulator on loopback and loads the embedded default around it.
pub async fn start_embedded(overrides: &CliOverrides) -> anyhow::Result<(Config, Simulator)> {
    let simulator = Simulator::start(SimConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        accounts: demo_accounts(),
    })
    .await?;
    let config = Config::load(
        None,
        Some(&embedded_config_toml(&simulator.endpoint())),
        overrides,
    )?;
    tracing::info!(
        simulator = %simulator.endpoint(),
        "no --config given: serving the embedded default (built-in simulator, demo targets, SQLite audit)"
    );
    Ok((config, simulator))
}

/// Simulator accounts matching every target of a configuration, so that
/// `registrar sim --config FILE` can stand in for the vendors it names.
pub fn accounts_for(config: &Config) -> Result<Vec<SimAccount>, ConfigError> {
    use crate::config::{target_identifier, target_secret};
    config
        .targets
        .iter()
        .enumerate()
        .map(|(position, target)| {
            Ok(SimAccount {
                vendor: target.vendor,
                // CIAM user stores have no numeric id: they are kept under the target's position
                app_id: target.app_id.unwrap_or(position as u64 + 1),
                user_store_id: target.user_store_id.clone().unwrap_or_default(),
                secret_id: match &target.secret_id {
                    Some(_) => target_identifier(target, "secret_id", &target.secret_id)?,
                    None => String::new(),
                },
                secret_key: match target.vendor {
                    VendorKind::ZegoZim => {
                        target_secret(target, "server_secret", &target.server_secret)?
                    }
                    _ => target_secret(target, "secret_key", &target.secret_key)?,
                },
                qps: target.qps(),
            })
        })
        .collect()
}

/// Connects the audit store (applying migrations) and starts the engine.
pub async fn start_engine(config: &Config) -> anyhow::Result<Arc<Engine>> {
    let url = config.audit.database_url.resolve("audit.database_url")?;
    let audit = AuditStore::connect(&url, config.audit.max_connections).await?;
    let specs = config
        .targets
        .iter()
        .map(TargetSpec::from_config)
        .collect::<Result<Vec<_>, _>>()?;
    for spec in &specs {
        tracing::info!(
            target = %spec.name,
            vendor = %spec.vendor_kind,
            qps = spec.qps.get(),
            max_batch = spec.max_batch,
            "target ready"
        );
    }
    Ok(Arc::new(Engine::start(
        specs,
        audit,
        config.server.max_unary_users,
    )))
}
