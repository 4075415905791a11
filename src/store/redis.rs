//! The Redis session store (`session.store = "redis"`): standalone (`redis_url`, `rediss://`
//! for TLS), Redis Cluster (`redis_cluster`) or Sentinel (`redis_sentinels` + `redis_master`),
//! through the `redis` crate's multiplexed async connections.
//!
//! Keys (prefix `session.redis_prefix`, default `dap:`); everything of one user shares the
//! `{userid}` hash tag, so it sits in one cluster slot and the scripts below stay legal:
//! - `dap:{U}:s:SID` — the session (JSON), expiring with it;
//! - `dap:{U}:idx` — the user's session ids, scored by expiry (revocation finds them here);
//! - `dap:{U}:chk` — held for `session.revalidate` by the replica checking U with DingTalk;
//! - `dap:users` — userids with sessions, scored by latest expiry (`sessions list`);
//! - `dap:state:STATE` — login states already used (replay protection across replicas).
//!
//! Every call is bounded by `session.redis_timeout`. A broken or stalled connection is
//! dropped and re-made in the background with exponential backoff; meanwhile calls fail at
//! once with [`StoreError::Unavailable`] (the request path answers 503).

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, RedisFuture, Script, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use super::StoreError;
use crate::clock::Clock;
use crate::config::SessionConfig;
use crate::metrics::Metrics;
use crate::session::Session;
use crate::user::User;

/// Saves a session and indexes it under its user; prunes the user's expired ids.
/// KEYS: session, index. ARGV: json, ttl seconds, sid, expires_at, now.
const SAVE: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])
if redis.call('TTL', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
return 1
";

/// Ends one session. KEYS: session, index. ARGV: sid. Returns how many keys were deleted.
const END: &str = r"
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
";

/// Ends every session of a user. KEYS: index. ARGV: the session key prefix (`dap:{U}:s:`).
/// Returns how many sessions were live.
const REVOKE: &str = r"
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local n = 0
for _, id in ipairs(ids) do
  n = n + redis.call('DEL', ARGV[1] .. id)
end
redis.call('DEL', KEYS[1])
return n
";

/// Claims a user's DingTalk check. KEYS: claim. ARGV: now, interval seconds. The claim holds
/// the time it was made, so it lapses by the proxy's clock (and Redis expires it too).
const CLAIM: &str = r"
local at = tonumber(redis.call('GET', KEYS[1]) or '0')
if at + tonumber(ARGV[2]) > tonumber(ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
";

/// The scripts, hashed once (`EVALSHA` sends the hash; `EVAL` only when Redis lacks it).
static SAVE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SAVE));
static END_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(END));
static REVOKE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(REVOKE));
static CLAIM_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(CLAIM));

/// Where Redis is.
enum Topology {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
    Sentinel(tokio::sync::Mutex<redis::sentinel::SentinelClient>),
}

/// A live connection of either kind; clones share it.
#[derive(Clone)]
enum Conn {
    Plain(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Plain(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Plain(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Plain(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The connection, or how far making one has got.
#[derive(Default)]
struct State {
    conn: Option<(u64, Conn)>,
    generation: u64,
    connecting: Option<watch::Receiver<bool>>,
    failures: u32,
    retry_at: Option<Instant>,
}

/// One connection to Redis, made lazily and re-made after failures.
struct Link {
    metrics: Option<Arc<Metrics>>,
    topology: Arc<Topology>,
    state: Arc<Mutex<State>>,
    timeout: Duration,
    connect_timeout: Duration,
}

/// Longest pause between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Link {
    /// The current connection, or one made now (waiting at most `timeout` for it).
    async fn get(&self) -> Result<(u64, Conn), StoreError> {
        let mut waiting = {
            let mut st = self.lock();
            if let Some(conn) = &st.conn {
                return Ok(conn.clone());
            }
            match &st.connecting {
                Some(rx) => rx.clone(),
                None => {
                    if st.retry_at.is_some_and(|at| Instant::now() < at) {
                        return Err(StoreError::Unavailable(
                            "Redis is unreachable; reconnecting".into(),
                        ));
                    }
                    let (tx, rx) = watch::channel(false);
                    st.connecting = Some(rx.clone());
                    self.spawn_connect(tx);
                    rx
                }
            }
        };
        let _ = tokio::time::timeout(self.timeout, waiting.wait_for(|done| *done)).await;
        self.lock()
            .conn
            .clone()
            .ok_or_else(|| StoreError::Unavailable("Redis is unreachable".into()))
    }

    fn spawn_connect(&self, done: watch::Sender<bool>) {
        let topology = self.topology.clone();
        let state = self.state.clone();
        let limit = self.connect_timeout;
        tokio::spawn(async move {
            let made = tokio::time::timeout(limit, topology.connect(limit)).await;
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            match made {
                Ok(Ok(conn)) => {
                    if st.failures > 0 {
                        tracing::info!("Redis is reachable again");
                    }
                    st.generation += 1;
                    st.conn = Some((st.generation, conn));
                    st.failures = 0;
                    st.retry_at = None;
                }
                failed => {
                    let why = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no connection within {limit:?}"),
                    };
                    st.failures = st.failures.saturating_add(1);
                    let pause = Duration::from_millis(100)
                        .saturating_mul(1 << st.failures.min(6))
                        .min(MAX_BACKOFF);
                    st.retry_at = Some(Instant::now() + pause);
                    tracing::warn!(error = %why, retry_in = ?pause, "cannot connect to Redis");
                }
            }
            st.connecting = None;
            let _ = done.send(true);
        });
    }

    /// Forgets connection `generation` after it failed, so the next call makes a new one.
    fn drop_conn(&self, generation: u64) {
        let mut st = self.lock();
        if st.conn.as_ref().is_some_and(|(g, _)| *g == generation) {
            st.conn = None;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `call` on the connection within `timeout`; a timeout or a connection error drops
    /// the connection.
    async fn run<T, F>(&self, call: F) -> Result<T, StoreError>
    where
        F: for<'c> FnOnce(&'c mut Conn) -> RedisFuture<'c, T>,
    {
        let started = Instant::now();
        let result = self.call(call).await;
        if let Some(m) = &self.metrics {
            m.redis_call(started.elapsed(), result.is_ok());
        }
        result
    }

    async fn call<T, F>(&self, call: F) -> Result<T, StoreError>
    where
        F: for<'c> FnOnce(&'c mut Conn) -> RedisFuture<'c, T>,
    {
        let (generation, mut conn) = self.get().await?;
        match tokio::time::timeout(self.timeout, call(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                    self.drop_conn(generation);
                }
                Err(StoreError::Unavailable(format!("Redis: {e}")))
            }
            Err(_) => {
                self.drop_conn(generation);
                Err(StoreError::Unavailable(format!(
                    "Redis did not answer within {:?}",
                    self.timeout
                )))
            }
        }
    }
}

impl Topology {
    async fn connect(&self, limit: Duration) -> redis::RedisResult<Conn> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(limit))
            .set_response_timeout(None);
        match self {
            Topology::Single(client) => client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map(Conn::Plain),
            Topology::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
            Topology::Sentinel(sentinel) => {
                let client = sentinel.lock().await.async_get_client().await?;
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(Conn::Plain)
            }
        }
    }
}

/// Sessions in Redis.
pub struct RedisStore {
    link: Link,
    prefix: String,
    clock: Clock,
}

/// Why the Redis settings could not be turned into a client.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct RedisConfigError {
    /// The config key.
    pub key: &'static str,
    /// What is wrong (never a password).
    pub message: String,
}

impl RedisStore {
    /// A store for `config`'s topology. No I/O: the connection is made on first use.
    pub fn new(config: &SessionConfig, clock: Clock) -> Result<RedisStore, RedisConfigError> {
        let timeout = config.redis_timeout;
        let connect_timeout = (timeout * 4).max(Duration::from_secs(1));
        let bad = |key: &'static str| {
            move |e: redis::RedisError| RedisConfigError {
                key,
                message: format!("{:?}", e.kind()),
            }
        };
        let topology = if !config.redis_cluster.is_empty() {
            let client = redis::cluster::ClusterClientBuilder::new(config.redis_cluster.clone())
                .connection_timeout(connect_timeout)
                .response_timeout(timeout)
                .retries(1)
                .build()
                .map_err(bad("session.redis_cluster"))?;
            Topology::Cluster(client)
        } else if !config.redis_sentinels.is_empty() {
            // The master is reached with redis_url's password and db (and TLS when rediss://).
            let info = redis::IntoConnectionInfo::into_connection_info(config.redis_url.expose())
                .map_err(bad("session.redis_url"))?;
            let mut node = redis::sentinel::SentinelNodeConnectionInfo::default()
                .set_redis_connection_info(info.redis_settings().clone());
            if config.redis_url.expose().starts_with("rediss://") {
                node = node.set_tls_mode(redis::TlsMode::Secure);
            }
            let client = redis::sentinel::SentinelClient::build(
                config.redis_sentinels.clone(),
                config.redis_master.clone(),
                Some(node),
                redis::sentinel::SentinelServerType::Master,
            )
            .map_err(bad("session.redis_sentinels"))?;
            Topology::Sentinel(tokio::sync::Mutex::new(client))
        } else {
            let client =
                redis::Client::open(config.redis_url.expose()).map_err(bad("session.redis_url"))?;
            Topology::Single(client)
        };
        Ok(RedisStore {
            link: Link {
                metrics: None,
                topology: Arc::new(topology),
                state: Arc::default(),
                timeout,
                connect_timeout,
            },
            prefix: config.redis_prefix.clone(),
            clock,
        })
    }

    /// Counts every call's latency and failures in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> RedisStore {
        self.link.metrics = Some(metrics);
        self
    }

    fn user_key(&self, userid: &str, what: &str) -> String {
        format!("{}{{{userid}}}:{what}", self.prefix)
    }

    fn session_key(&self, userid: &str, id: &str) -> String {
        self.user_key(userid, &format!("s:{id}"))
    }

    async fn query<T: FromRedisValue + Send + 'static>(&self, cmd: Cmd) -> Result<T, StoreError> {
        self.link
            .run(move |conn| Box::pin(async move { cmd.query_async(conn).await }))
            .await
    }

    async fn script<T: FromRedisValue + Send + 'static>(
        &self,
        script: &'static Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<T, StoreError> {
        self.link
            .run(move |conn| {
                Box::pin(async move {
                    let mut call = script.prepare_invoke();
                    for k in &keys {
                        call.key(k);
                    }
                    for a in &args {
                        call.arg(a);
                    }
                    call.invoke_async(conn).await
                })
            })
            .await
    }

    /// Answers when Redis does (`/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.query::<String>(redis::cmd("PING")).await.map(|_| ())
    }

    /// The session `id` of `userid`, if it is live.
    pub async fn load(&self, userid: &str, id: &str) -> Result<Option<Session>, StoreError> {
        let json: Option<String> = self
            .query(redis::Cmd::get(self.session_key(userid, id)))
            .await?;
        let now = self.clock.now_secs();
        Ok(json
            .and_then(|j| Session::from_json(&j))
            .filter(|s| s.id == id && s.userid() == userid && !s.is_expired(now)))
    }

    /// Stores a new session for its remaining lifetime and indexes it under its user.
    pub async fn save(&self, session: &Session) -> Result<(), StoreError> {
        let now = self.clock.now_secs();
        let ttl = session.expires_at.saturating_sub(now).max(1);
        let json = serde_json::to_string(session).unwrap_or_default();
        let userid = session.userid();
        self.script::<i64>(
            &SAVE_SCRIPT,
            vec![
                self.session_key(userid, &session.id),
                self.user_key(userid, "idx"),
            ],
            vec![
                json,
                ttl.to_string(),
                session.id.clone(),
                session.expires_at.to_string(),
                now.to_string(),
            ],
        )
        .await?;
        let mut users = redis::cmd("ZADD");
        users
            .arg(format!("{}users", self.prefix))
            .arg("GT")
            .arg(session.expires_at)
            .arg(userid);
        self.query::<i64>(users).await?;
        Ok(())
    }

    /// Replaces a live session's details (same id, same expiry); a session ended meanwhile
    /// stays ended.
    pub async fn refresh(&self, session: &Session) -> Result<(), StoreError> {
        let json = serde_json::to_string(session).unwrap_or_default();
        let mut set = redis::cmd("SET");
        set.arg(self.session_key(session.userid(), &session.id))
            .arg(json)
            .arg("XX")
            .arg("KEEPTTL");
        self.query::<Option<String>>(set).await.map(|_| ())
    }

    /// Ends one session; true when it was live.
    pub async fn end(&self, userid: &str, id: &str) -> Result<bool, StoreError> {
        let n: i64 = self
            .script(
                &END_SCRIPT,
                vec![self.session_key(userid, id), self.user_key(userid, "idx")],
                vec![id.to_string()],
            )
            .await?;
        Ok(n > 0)
    }

    /// Ends every session of `userid` at once; how many were live.
    pub async fn revoke_user(&self, userid: &str) -> Result<usize, StoreError> {
        let n: i64 = self
            .script(
                &REVOKE_SCRIPT,
                vec![self.user_key(userid, "idx")],
                vec![self.user_key(userid, "s:")],
            )
            .await?;
        let mut users = redis::cmd("ZREM");
        users.arg(format!("{}users", self.prefix)).arg(userid);
        self.query::<i64>(users).await?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// The live sessions of `userid`, or of everyone.
    pub async fn list(&self, userid: Option<&str>) -> Result<Vec<Session>, StoreError> {
        let users: Vec<String> = match userid {
            Some(u) => vec![u.to_string()],
            None => {
                let mut all = redis::cmd("ZRANGE");
                all.arg(format!("{}users", self.prefix)).arg(0).arg(-1);
                self.query(all).await?
            }
        };
        let mut out = Vec::new();
        for u in users {
            let mut ids = redis::cmd("ZRANGE");
            ids.arg(self.user_key(&u, "idx")).arg(0).arg(-1);
            let ids: Vec<String> = self.query(ids).await?;
            for id in ids {
                if let Some(s) = self.load(&u, &id).await? {
                    out.push(s);
                }
            }
        }
        Ok(out)
    }

    /// Marks a login `state` used until `expires_at`; false when it was used before.
    pub async fn consume_state(&self, state: &str, expires_at: u64) -> Result<bool, StoreError> {
        let ttl = expires_at.saturating_sub(self.clock.now_secs()).max(1);
        let mut set = redis::cmd("SET");
        set.arg(format!("{}state:{state}", self.prefix))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(ttl);
        let set: Option<String> = self.query(set).await?;
        Ok(set.is_some())
    }

    /// Claims the check of `userid` with DingTalk for `every`: true for exactly one replica.
    pub async fn claim_check(&self, userid: &str, every: Duration) -> Result<bool, StoreError> {
        let claimed: i64 = self
            .script(
                &CLAIM_SCRIPT,
                vec![self.user_key(userid, "chk")],
                vec![
                    self.clock.now_secs().to_string(),
                    every.as_secs().max(1).to_string(),
                ],
            )
            .await?;
        Ok(claimed == 1)
    }

    /// Puts `user`'s current details (checked at `at`) into every live session of theirs.
    pub async fn refresh_user(&self, user: &User, at: u64) -> Result<(), StoreError> {
        for s in self.list(Some(&user.userid)).await? {
            self.refresh(&s.refreshed(user.clone(), at)).await?;
        }
        Ok(())
    }
}
