//! A vendor quota shared by every replica through Redis: GCRA kept in one
//! Redis key per vendor kind, account and API, advanced by a small Lua
//! script (run with EVALSHA) on Redis's own clock (`TIME`), never a pod's.
//! Each call reserves the next slot of the key's schedule and learns how long
//! to wait for it, so replicas share one evenly spaced schedule: together
//! they never put more than the quota into any one-second window, whatever
//! each replica's clock says.
//!
//! The first step of the shared quota (issue: scale out): the reservation
//! itself. The target's limiter does not use it yet; the throttle slowdown
//! in Redis, the heartbeat and the fallback share when Redis is away come
//! with it.

use std::time::Duration;

use redis::{Script, aio::ConnectionManager};

/// The GCRA step. KEYS[1]: the quota's key. ARGV[1]: the spacing of permits
/// in microseconds. Reserves the next slot: the theoretical arrival time
/// (TAT) moves one spacing on from `max(TAT, now)`, and the answer is how
/// many microseconds the caller waits for its slot (0: now). The key
/// expires a second after its last slot, so an idle quota leaves nothing.
const GCRA: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local spacing = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end
local next_tat = tat + spacing
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.floor((next_tat - now) / 1000) + 1000)
return tat - now
";

/// Which quota a target spends: the vendor's quota is per account and per
/// API, so two targets on one account and API share a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QuotaKey {
    pub vendor: String,
    pub account: String,
    pub api: String,
}

impl QuotaKey {
    /// The Redis key of the quota's schedule.
    pub fn redis_key(&self) -> String {
        format!(
            "registrar:quota:{}:{}:{}",
            self.vendor, self.account, self.api
        )
    }
}

/// One quota's schedule in Redis.
#[derive(Clone)]
pub struct SharedQuota {
    connection: ConnectionManager,
    script: Script,
    key: String,
    spacing_micros: u64,
}

impl SharedQuota {
    /// `calls_per_second` permits a second, each spaced by the margin too
    /// (a share, e.g. 0.02), as the in-process limiter spaces them.
    pub fn new(
        connection: ConnectionManager,
        key: &QuotaKey,
        calls_per_second: f64,
        margin: f64,
    ) -> SharedQuota {
        let spacing = Duration::from_secs(1)
            .div_f64(calls_per_second.max(f64::MIN_POSITIVE))
            .mul_f64(1.0 + margin.max(0.0));
        SharedQuota {
            connection,
            script: Script::new(GCRA),
            key: key.redis_key(),
            spacing_micros: u64::try_from(spacing.as_micros())
                .unwrap_or(u64::MAX)
                .max(1),
        }
    }

    /// Reserves the next permit: how long to wait before the call may leave.
    pub async fn reserve(&self) -> redis::RedisResult<Duration> {
        let mut connection = self.connection.clone();
        let wait: i64 = self
            .script
            .key(&self.key)
            .arg(self.spacing_micros)
            .invoke_async(&mut connection)
            .await?;
        Ok(Duration::from_micros(u64::try_from(wait).unwrap_or(0)))
    }

    /// Reserves a permit and waits for its slot.
    pub async fn acquire(&self) -> redis::RedisResult<()> {
        let wait = self.reserve().await?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }
}
