//! A vendor quota shared by every replica through Redis: the Redis side.
//!
//! Each quota (vendor kind, account, API) has three keys, advanced only by
//! our small Lua scripts (run with EVALSHA) on Redis's own clock (`TIME`),
//! never a pod's: the GCRA schedule (each call reserves the next slot and
//! learns how long to wait for it, so replicas share one evenly spaced
//! schedule), the send log (the last window of sends of every replica, the
//! shared form of the send guard right before each call leaves), and the
//! adaptive rate (lowered by any replica's throttle answer, recovered by
//! every replica's successes). One more key holds every replica's
//! heartbeat, so that a replica cut off from Redis knows how many share the
//! quota with it.
//!
//! `QuotaStore` is the connection and the reachability the targets' limiters
//! read: a call Redis cannot answer within `permit_timeout` marks it
//! unreachable; the heartbeat marks it reachable again. The limiter that uses
//! it, with its fallback share, is `shared_limiter`.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::{
    Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::rate_limit::Adaptation;
use crate::metrics;

/// The GCRA step. KEYS: the schedule, the adaptive rate. ARGV: the quota
/// in calls per second, the margin (a share), how far ahead a slot may be
/// reserved (µs). The spacing follows the adaptive rate when a throttle
/// answer lowered it. Answers `{0, wait µs, rate × 1000}` for a reserved
/// slot, or `{1, retry in µs, rate × 1000}` when the schedule is booked
/// further ahead than allowed (nothing reserved). The key expires a second
/// after its last slot, so an idle quota leaves nothing behind.
const RESERVE: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local quota = tonumber(ARGV[1])
local rate = tonumber(redis.call('HGET', KEYS[2], 'rate')) or quota
if rate > quota then rate = quota end
local spacing = math.floor(1000000 / rate * (1 + tonumber(ARGV[2])))
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local ahead = tat - now
local max_ahead = tonumber(ARGV[3])
if ahead > max_ahead then
  return {1, ahead - max_ahead, math.floor(rate * 1000)}
end
local next_tat = tat + spacing
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.floor((next_tat - now) / 1000) + 1000)
return {0, ahead, math.floor(rate * 1000)}
";

/// The send guard. KEYS: the send log (a sorted set of send instants).
/// ARGV: the most sends in one window, the window (µs), a member unique to
/// this send. Records the send and answers 0 when the last window holds
/// fewer than the limit; otherwise answers how many µs until its oldest
/// counted send leaves the window.
const SEND: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.floor(window / 1000) + 1000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
";

/// A throttle answer. KEYS: the adaptive rate. ARGV: the quota, the share
/// the rate falls to, the debounce (µs: answers of calls already in flight
/// are one episode), the floor, how long the rate is kept (µs). Answers the
/// rate × 1000.
const THROTTLED: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local quota = tonumber(ARGV[1])
local rate = tonumber(redis.call('HGET', KEYS[1], 'rate')) or quota
local last = tonumber(redis.call('HGET', KEYS[1], 'last_decrease'))
if last ~= nil and now - last < tonumber(ARGV[3]) then
  return math.floor(rate * 1000)
end
local slower = math.max(rate * tonumber(ARGV[2]), math.min(tonumber(ARGV[4]), quota))
redis.call('HSET', KEYS[1], 'rate', tostring(slower), 'last_decrease', string.format('%d', now),
  'throttled_rate', tostring(rate), 'throttled_at', string.format('%d', now))
redis.call('PEXPIRE', KEYS[1], math.floor(tonumber(ARGV[5]) / 1000))
return math.floor(slower * 1000)
";

/// A call answered without a throttle. KEYS: the adaptive rate. ARGV: the
/// quota, the rise per success (a share of the quota), the share of the
/// last throttled rate not to pass while it is remembered, how long it is
/// remembered (µs). Back at the quota the key goes. Answers the rate × 1000.
const SUCCEEDED: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local quota = tonumber(ARGV[1])
local rate = tonumber(redis.call('HGET', KEYS[1], 'rate'))
if rate == nil then return math.floor(quota * 1000) end
local limit = quota
local throttled_rate = tonumber(redis.call('HGET', KEYS[1], 'throttled_rate'))
local throttled_at = tonumber(redis.call('HGET', KEYS[1], 'throttled_at'))
if throttled_rate ~= nil and throttled_at ~= nil then
  if now - throttled_at < tonumber(ARGV[4]) then
    limit = math.min(limit, throttled_rate * tonumber(ARGV[3]))
  else
    redis.call('HDEL', KEYS[1], 'throttled_rate', 'throttled_at')
  end
end
local faster = math.min(rate + quota * tonumber(ARGV[2]), math.max(limit, rate))
if faster >= quota then
  redis.call('DEL', KEYS[1])
  return math.floor(quota * 1000)
end
redis.call('HSET', KEYS[1], 'rate', tostring(faster))
return math.floor(faster * 1000)
";

/// A replica's heartbeat. KEYS: the replicas (a sorted set of last beats).
/// ARGV: this replica's name, how long a replica counts as alive after its
/// last beat (µs). Answers how many replicas are alive.
const HEARTBEAT: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local alive = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - alive)
redis.call('PEXPIRE', KEYS[1], math.floor(alive / 1000) * 2)
return redis.call('ZCARD', KEYS[1])
";

/// Where every replica's heartbeat is kept.
const REPLICAS_KEY: &str = "registrar:replicas";

/// Which quota a target spends: the vendor's quota is per account and per
/// API, so two targets on one account and API share one quota. The account
/// is hashed into the keys: Redis never holds an app id or a SecretId.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QuotaKey {
    /// The keys' common part, `{vendor:account hash:API}` (braced: a Redis
    /// Cluster hash tag, so one script's keys are on one node).
    tag: String,
}

impl QuotaKey {
    pub fn new(vendor: &str, account: &str, api: &str) -> QuotaKey {
        let account = hex::encode(&Sha256::digest(account.as_bytes())[..8]);
        QuotaKey {
            tag: format!("{{{vendor}:{account}:{api}}}"),
        }
    }

    /// The GCRA schedule's key.
    pub fn schedule(&self) -> String {
        format!("registrar:quota:{}:schedule", self.tag)
    }

    fn sends(&self) -> String {
        format!("registrar:quota:{}:sends", self.tag)
    }

    fn rate(&self) -> String {
        format!("registrar:quota:{}:rate", self.tag)
    }
}

/// The answer to a reservation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reservation {
    /// A slot is this replica's: the call may leave after `wait`.
    Reserved { wait: Duration, rate: f64 },
    /// The schedule is booked too far ahead: ask again after `retry_in`.
    Booked { retry_in: Duration, rate: f64 },
}

/// Why Redis did not answer.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// The settings of the shared quota (`[quota]`).
#[derive(Debug, Clone)]
pub struct QuotaStoreSettings {
    pub redis_url: SecretString,
    /// A Redis answer not had within this counts as Redis down.
    pub permit_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// Replicas assumed before any heartbeat was answered.
    pub fallback_replicas: u32,
    /// This replica's name in the heartbeats (unique among the replicas).
    pub instance: String,
}

/// Whether Redis is answering, as the limiters see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reach {
    pub up: bool,
    /// When it last changed.
    pub since: Instant,
    /// Counts the changes, so that a limiter notices each one.
    pub epoch: u64,
    /// The replicas alive at the last heartbeat answered.
    pub replicas: u32,
}

/// The Redis connection every shared limiter of this replica uses, and
/// whether it is answering.
pub struct QuotaStore {
    connection: ConnectionManager,
    reserve: Script,
    send: Script,
    throttled: Script,
    succeeded: Script,
    heartbeat: Script,
    settings: QuotaStoreSettings,
    reach: Mutex<Reach>,
    /// Makes each send's member of the send log unique.
    sends: AtomicU64,
}

impl QuotaStore {
    /// The store, not yet connected (the connection is made on first use
    /// and remade after a failure); it starts as unreachable until the
    /// first heartbeat is answered. A URL Redis cannot parse is an error;
    /// its text never appears in it.
    pub fn new(settings: QuotaStoreSettings) -> Result<Arc<QuotaStore>, String> {
        let client = redis::Client::open(settings.redis_url.expose_secret()).map_err(|error| {
            // the kind only: the error's text may quote the URL, password and all
            format!("is not a Redis URL ({:?})", error.kind())
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.permit_timeout))
            .set_response_timeout(Some(settings.permit_timeout))
            .set_number_of_retries(1)
            .set_max_delay(settings.heartbeat_interval);
        let connection = client
            .get_connection_manager_lazy(config)
            .map_err(|error| format!("cannot set up the Redis connection ({:?})", error.kind()))?;
        let replicas = settings.fallback_replicas.max(1);
        metrics::global()
            .shared_quota_replicas
            .set(i64::from(replicas));
        Ok(Arc::new(QuotaStore {
            connection,
            reserve: Script::new(RESERVE),
            send: Script::new(SEND),
            throttled: Script::new(THROTTLED),
            succeeded: Script::new(SUCCEEDED),
            heartbeat: Script::new(HEARTBEAT),
            settings,
            reach: Mutex::new(Reach {
                up: false,
                since: Instant::now(),
                epoch: 0,
                replicas,
            }),
            sends: AtomicU64::new(0),
        }))
    }

    pub fn settings(&self) -> &QuotaStoreSettings {
        &self.settings
    }

    pub fn reach(&self) -> Reach {
        *self
            .reach
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks Redis unreachable (once per episode, with a log line).
    pub fn mark_down(&self, error: &QuotaError) {
        let mut reach = self
            .reach
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !reach.up && reach.epoch > 0 {
            return;
        }
        reach.up = false;
        reach.since = Instant::now();
        reach.epoch += 1;
        metrics::global().shared_quota_reachable.set(0);
        tracing::warn!(
            %error,
            replicas = reach.replicas,
            "shared quota unreachable: every target paces at its share of its quota (qps / replicas) until Redis answers again"
        );
    }

    fn mark_up(&self, replicas: u32) {
        let mut reach = self
            .reach
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        reach.replicas = replicas.max(1);
        metrics::global()
            .shared_quota_replicas
            .set(i64::from(reach.replicas));
        if reach.up {
            return;
        }
        reach.up = true;
        reach.since = Instant::now();
        reach.epoch += 1;
        metrics::global().shared_quota_reachable.set(1);
        tracing::info!(
            replicas = reach.replicas,
            "shared quota reachable: targets pace on the quota shared through Redis"
        );
    }

    /// Runs one script under the permit timeout.
    async fn run<T: redis::FromRedisValue>(
        &self,
        request: &'static str,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, QuotaError> {
        let mut connection = self.connection.clone();
        let timeout = self.settings.permit_timeout;
        let started = Instant::now();
        let answer =
            match tokio::time::timeout(timeout, invocation.invoke_async(&mut connection)).await {
                Ok(answer) => answer.map_err(QuotaError::from),
                Err(_) => Err(QuotaError::Timeout(timeout)),
            };
        metrics::global().shared_quota_request(
            request,
            answer.is_ok(),
            started.elapsed().as_secs_f64(),
        );
        answer
    }

    /// Reserves the next slot of `key`'s schedule.
    pub async fn reserve(
        &self,
        key: &QuotaKey,
        quota: f64,
        margin: f64,
        max_ahead: Duration,
    ) -> Result<Reservation, QuotaError> {
        let mut invocation = self.reserve.prepare_invoke();
        invocation
            .key(key.schedule())
            .key(key.rate())
            .arg(quota)
            .arg(margin)
            .arg(micros(max_ahead));
        let (booked, micros_, rate): (i64, i64, i64) = self.run("reserve", invocation).await?;
        let after = Duration::from_micros(u64::try_from(micros_).unwrap_or(0));
        let rate = rate as f64 / 1000.0;
        Ok(if booked == 0 {
            Reservation::Reserved { wait: after, rate }
        } else {
            Reservation::Booked {
                retry_in: after,
                rate,
            }
        })
    }

    /// Records a send in `key`'s send log if its last `window` holds fewer
    /// than `limit` sends; otherwise how long until one leaves it.
    pub async fn send(
        &self,
        key: &QuotaKey,
        limit: u32,
        window: Duration,
    ) -> Result<Option<Duration>, QuotaError> {
        let member = format!(
            "{}:{}",
            self.settings.instance,
            self.sends.fetch_add(1, Ordering::Relaxed)
        );
        let mut invocation = self.send.prepare_invoke();
        invocation
            .key(key.sends())
            .arg(limit.max(1))
            .arg(micros(window))
            .arg(member);
        let wait: i64 = self.run("send", invocation).await?;
        Ok((wait > 0).then(|| Duration::from_micros(wait.unsigned_abs())))
    }

    /// A throttle answer: lowers `key`'s shared rate. Answers the rate.
    pub async fn throttled(
        &self,
        key: &QuotaKey,
        quota: f64,
        adaptive: &Adaptation,
    ) -> Result<f64, QuotaError> {
        let mut invocation = self.throttled.prepare_invoke();
        invocation
            .key(key.rate())
            .arg(quota)
            .arg(adaptive.decrease)
            .arg(micros(adaptive.debounce))
            .arg(adaptive.min_rate)
            .arg(micros(adaptive.memory * 2));
        let rate: i64 = self.run("throttled", invocation).await?;
        Ok(rate as f64 / 1000.0)
    }

    /// A call answered without a throttle: raises `key`'s shared rate
    /// gradually. Answers the rate.
    pub async fn succeeded(
        &self,
        key: &QuotaKey,
        quota: f64,
        adaptive: &Adaptation,
    ) -> Result<f64, QuotaError> {
        let mut invocation = self.succeeded.prepare_invoke();
        invocation
            .key(key.rate())
            .arg(quota)
            .arg(adaptive.increase_per_success)
            .arg(adaptive.below_throttled_rate)
            .arg(micros(adaptive.memory));
        let rate: i64 = self.run("succeeded", invocation).await?;
        Ok(rate as f64 / 1000.0)
    }

    /// One heartbeat: answers how many replicas are alive, and marks Redis
    /// reachable or not.
    pub async fn beat(&self) -> Result<u32, QuotaError> {
        let alive = self.settings.heartbeat_interval * 3;
        let mut invocation = self.heartbeat.prepare_invoke();
        invocation
            .key(REPLICAS_KEY)
            .arg(&self.settings.instance)
            .arg(micros(alive));
        match self.run::<u32>("heartbeat", invocation).await {
            Ok(replicas) => {
                self.mark_up(replicas);
                Ok(replicas)
            }
            Err(error) => {
                self.mark_down(&error);
                Err(error)
            }
        }
    }

    /// Beats every `heartbeat_interval` until `exit`, then takes this
    /// replica out of the heartbeats, so that the others count it gone at once.
    pub async fn keep_beating(self: Arc<Self>, exit: CancellationToken) {
        let mut ticks = tokio::time::interval(self.settings.heartbeat_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = exit.cancelled() => break,
                _ = ticks.tick() => {
                    let _ = self.beat().await;
                }
            }
        }
        let mut connection = self.connection.clone();
        let mut leave = redis::cmd("ZREM");
        leave.arg(REPLICAS_KEY).arg(&self.settings.instance);
        let _ = tokio::time::timeout(
            self.settings.permit_timeout,
            leave.exec_async(&mut connection),
        )
        .await;
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag_and_never_hold_the_account() {
        let key = QuotaKey::new("tencent-lcic", "AKIDsecretish", "BatchRegister");
        for name in [key.schedule(), key.sends(), key.rate()] {
            assert!(!name.contains("AKIDsecretish"), "{name}");
            assert!(name.starts_with("registrar:quota:{tencent-lcic:"), "{name}");
            assert!(name.contains(":BatchRegister}:"), "{name}");
        }
        assert_ne!(
            key,
            QuotaKey::new("tencent-lcic", "another account", "BatchRegister")
        );
        assert_ne!(
            key,
            QuotaKey::new("tencent-lcic", "AKIDsecretish", "CreateUser")
        );
    }
}
