//! Assembles a running registrar from its configuration: the audit store,
//! the targets' vendor modules, the engine, and, for the embedded default,
//! the built-in simulator with demo targets pointing at it.

use std::{net::SocketAddr, sync::Arc};

use secrecy::SecretString;

use crate::{
    audit::AuditStore,
    config::{CliOverrides, Config, ConfigError},
    engine::{Durability, Engine, target::TargetSpec},
    outbound::shared_quota::{QuotaStore, QuotaStoreSettings},
    sim::{SimAccount, SimConfig, Simulator},
    vendor_api::{
        registry::{self, VENDOR_KINDS},
        settings::TargetSettings,
    },
};

/// The demo account of each vendor kind the embedded simulator knows. These
/// credentials exist only inside the simulator; they are not secrets.
pub fn demo_accounts() -> Vec<SimAccount> {
    VENDOR_KINDS
        .iter()
        .map(|spec| SimAccount {
            vendor: spec.kind,
            app_id: spec.demo.app_id,
            user_store_id: spec.demo.user_store_id.to_owned(),
            secret_id: spec.demo.secret_id.to_owned(),
            secret_key: SecretString::from(format!("registrar-demo-{}-secret", spec.kind)),
            qps: spec.default_qps,
        })
        .collect()
}

/// The embedded default configuration: one demo target per vendor, named after it.
pub fn embedded_config_toml(sim_endpoint: &str) -> String {
    use secrecy::ExposeSecret;
    // open to anyone for trying it, so reachable from this machine only
    let server = format!(
        "[server]\nlisten = \"{EMBEDDED_LISTEN}\"\n\n[metrics]\nlisten = \"{EMBEDDED_METRICS_LISTEN}\"\n\n"
    );
    let targets: String = demo_accounts()
        .iter()
        .map(|account| {
            let vendor = account.vendor;
            let spec = registry::spec(vendor);
            let mut lines = vec![
                "[[targets]]".to_owned(),
                format!("name = \"{vendor}\""),
                format!("vendor = \"{vendor}\""),
                format!("endpoint = \"{sim_endpoint}\""),
            ];
            if let Some(region) = spec.demo.region {
                lines.push(format!("region = \"{region}\""));
            }
            for key in spec.required_keys {
                let value = match *key {
                    "app_id" => account.app_id.to_string(),
                    "user_store_id" => format!("\"{}\"", account.user_store_id),
                    "secret_id" => format!("\"{}\"", account.secret_id),
                    "region" => continue,
                    // the signing secret, whatever the kind calls it
                    _ => format!("\"{}\"", account.secret_key.expose_secret()),
                };
                lines.push(format!("{key} = {value}"));
            }
            lines.join("\n") + "\n\n"
        })
        .collect();
    server + &targets
}

/// Where the embedded default listens: loopback, since it has no callers.
pub const EMBEDDED_LISTEN: &str = "127.0.0.1:50051";
/// Where the embedded default serves /metrics: loopback too.
pub const EMBEDDED_METRICS_LISTEN: &str = "127.0.0.1:9464";

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
    use crate::config::target_identifier;
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
                secret_key: target
                    .secret(target.vendor_spec().signing_secret_key)
                    .map_err(|error| target.setting_error(error))?,
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
    let quota = match &config.quota {
        Some(quota) => Some(shared_quota(quota, &config.server.instance_name()).await?),
        None => None,
    };
    let engine = Engine::start(
        specs,
        audit,
        config.server.max_unary_users,
        Durability {
            instance_name: config.server.instance_name(),
            batch_lease: config.server.batch_lease,
        },
        quota,
    );
    engine.recover().await?;
    Ok(Arc::new(engine))
}

/// The store of the quota shared through Redis, after its first heartbeat:
/// answered, the targets start on the shared quota; not, they start at
/// their fallback share, and move to the shared quota once Redis answers.
async fn shared_quota(
    quota: &crate::config::QuotaConfig,
    instance: &str,
) -> anyhow::Result<Arc<QuotaStore>> {
    let store = QuotaStore::new(QuotaStoreSettings {
        redis_url: quota.redis_url.resolve("quota.redis_url")?,
        permit_timeout: quota.permit_timeout,
        heartbeat_interval: quota.heartbeat_interval,
        fallback_replicas: quota.fallback_replicas,
        instance: instance.to_owned(),
    })
    .map_err(|reason| ConfigError::Invalid {
        key: "quota.redis_url".to_owned(),
        reason,
    })?;
    if let Ok(replicas) = store.beat().await {
        tracing::info!(replicas, "quota shared through Redis");
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_is_open_so_it_listens_on_loopback_only() {
        let config = Config::load(
            None,
            Some(&embedded_config_toml("http://127.0.0.1:9")),
            &CliOverrides::default(),
        )
        .unwrap();
        assert!(config.callers.is_empty());
        assert_eq!(config.server.listen.to_string(), EMBEDDED_LISTEN);
        assert!(config.server.listen.ip().is_loopback());
    }
}
