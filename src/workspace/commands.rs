//! The commands a workspace answers, parsed from a request's words and run
//! against the session's database. Each returns its reply and, for a write,
//! the handle whose durability the connection awaits before it answers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use slatedb::WriteHandle;

use super::keyspace::{AttachedDb, SetIf};
use super::protocol::Reply;
use super::security::Security;
use super::session::Session;
use super::{Shared, auth};

/// What the workspace answers; anything else gets an error naming these.
pub const SUPPORTED: &[&str] = &[
    "AUTH", "CLIENT", "COMMAND", "CONFIG", "DBSIZE", "DECR", "DECRBY", "DEL", "ECHO", "EXISTS",
    "GET", "HELLO", "INCR", "INCRBY", "INFO", "MGET", "MSET", "PING", "QUIT", "SCAN", "SELECT",
    "SET",
];

/// Commands that change data: refused to readonly users and on followers.
const WRITES: &[&str] = &["DECR", "DECRBY", "DEL", "INCR", "INCRBY", "MSET", "SET"];

/// Commands a client may send before AUTH.
const BEFORE_AUTH: &[&str] = &["AUTH", "HELLO", "QUIT"];

/// A reply, and the write it waits for.
pub type Outcome = (Reply, Option<WriteHandle>);

/// A write the connection settles (durable, and replicated where the
/// group promises zero loss) before it sends the reply.
pub struct Pending {
    pub db: Arc<AttachedDb>,
    pub handle: WriteHandle,
}

/// A reply, and the write it waits for, with its database.
pub type Answer = (Reply, Option<Pending>);

/// `outcome`'s write, if any, belongs to `db`.
fn of(db: &Arc<AttachedDb>, (reply, handle): Outcome) -> Answer {
    let pending = handle.map(|handle| Pending {
        db: Arc::clone(db),
        handle,
    });
    (reply, pending)
}

fn answer((reply, handle): Outcome) -> Answer {
    debug_assert!(handle.is_none(), "a write outside a database");
    (reply, None)
}

fn done(reply: Reply) -> Outcome {
    (reply, None)
}

fn wrong_args(name: &str) -> Outcome {
    done(Reply::err(format!(
        "ERR wrong number of arguments for '{}' command",
        name.to_ascii_lowercase()
    )))
}

fn text(arg: &Bytes) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

fn int(arg: &Bytes) -> Option<i64> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

/// The failover's RTO probe: `LIFEBOAT.PROBE <token> <index>` writes the
/// reserved probe key of database `index` durably. Only the process that
/// started the workspace knows the token (it is never stored); to anyone
/// else the command does not exist.
pub const PROBE_COMMAND: &str = "LIFEBOAT.PROBE";

/// A fresh one-time probe token (128 random bits, hex).
pub fn probe_token() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// `LIFEBOAT.LOGIN <token> <index>`: the starting process's own session
/// (a drill's smoke commands), as admin on database `index`.
pub const PROBE_LOGIN: &str = "LIFEBOAT.LOGIN";

fn probe_login(shared: &Arc<Shared>, session: &mut Session, args: &[Bytes]) -> Option<Outcome> {
    let expected = shared.probe_token.as_deref()?;
    let [token, index] = args else {
        return None;
    };
    if token.as_ref() != expected.as_bytes() {
        return None;
    }
    let index = int(index).and_then(|i| u32::try_from(i).ok())?;
    if !shared.dbs().contains_key(&index) {
        return Some(done(Reply::err("ERR no such database index")));
    }
    session.internal = true;
    session.db = index;
    Some(done(Reply::ok()))
}

async fn probe(shared: &Arc<Shared>, args: &[Bytes]) -> Option<Answer> {
    let expected = shared.probe_token.as_deref()?;
    let [token, index] = args else {
        return None;
    };
    if token.as_ref() != expected.as_bytes() {
        return None;
    }
    let db = match int(index).and_then(|i| shared.dbs().get(&u32::try_from(i).ok()?).cloned()) {
        Some(db) => db,
        None => return Some(answer(done(Reply::err("ERR no such database index")))),
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Some(match db.probe(now_ms).await {
        Ok(handle) => of(&db, (Reply::ok(), Some(handle))),
        Err(e) => answer(done(Reply::err(e))),
    })
}

/// Runs one request for `session`.
pub async fn run(shared: &Arc<Shared>, session: &mut Session, words: Vec<Bytes>) -> Answer {
    let Some(first) = words.first() else {
        return answer(done(Reply::err("ERR empty command")));
    };
    let name = text(first).to_ascii_uppercase();
    let args = &words[1..];
    if name == PROBE_COMMAND
        && let Some(outcome) = probe(shared, args).await
    {
        return outcome;
    }
    if name == PROBE_LOGIN
        && let Some(outcome) = probe_login(shared, session, args)
    {
        return answer(outcome);
    }
    // Before AUTH every command but these is refused alike: a stranger
    // learns nothing of what the server answers.
    if !BEFORE_AUTH.contains(&name.as_str())
        && let Err(reply) = session.check_auth(shared)
    {
        return answer(done(reply));
    }
    if !SUPPORTED.contains(&name.as_str()) {
        return answer(done(Reply::err(format!(
            "ERR unknown command '{}'; this workspace supports {}",
            text(first),
            SUPPORTED.join(", ")
        ))));
    }
    let outcome = match name.as_str() {
        "AUTH" => auth_command(shared, session, args).await,
        "HELLO" => hello(shared, session, args).await,
        "QUIT" => {
            session.quit = true;
            done(Reply::ok())
        }
        "PING" => match args {
            [] => done(Reply::Simple("PONG".into())),
            [msg] => done(Reply::Bulk(msg.clone())),
            _ => wrong_args(&name),
        },
        "ECHO" => match args {
            [msg] => done(Reply::Bulk(msg.clone())),
            _ => wrong_args(&name),
        },
        "SELECT" => select(shared, session, args),
        "CLIENT" => client(session, args),
        "COMMAND" => done(Reply::Array(Vec::new())),
        "CONFIG" => config(args),
        "INFO" => done(info(shared, session)),
        _ => return data(shared, session, &name, args).await,
    };
    answer(outcome)
}

/// The commands that touch the selected database.
async fn data(shared: &Arc<Shared>, session: &mut Session, name: &str, args: &[Bytes]) -> Answer {
    let db = match session.database(shared) {
        Ok(db) => db,
        Err(reply) => return answer(done(reply)),
    };
    if WRITES.contains(&name) {
        if let Err(reply) = session.check_write(shared, name, &db) {
            return answer(done(reply));
        }
        // The RPO guard may slow the write, or refuse it.
        if let Err(e) = db.admit_write().await {
            return answer(done(Reply::err(e)));
        }
    }
    of(&db, run_data(session, &db, name, args).await)
}

async fn run_data(session: &mut Session, db: &AttachedDb, name: &str, args: &[Bytes]) -> Outcome {
    let result = match name {
        "GET" => match args {
            [key] => db
                .get(key)
                .await
                .map(|v| done(v.map_or(Reply::Nil, Reply::Bulk))),
            _ => return wrong_args(name),
        },
        "SET" => return set(db, args).await,
        "DEL" if !args.is_empty() => db
            .del(args)
            .await
            .map(|(count, handle)| (Reply::Int(count), handle)),
        "EXISTS" if !args.is_empty() => {
            let mut count = 0;
            for key in args {
                match db.get(key).await {
                    Ok(Some(_)) => count += 1,
                    Ok(None) => {}
                    Err(e) => return done(Reply::err(e)),
                }
            }
            Ok(done(Reply::Int(count)))
        }
        "MGET" if !args.is_empty() => {
            let mut values = Vec::with_capacity(args.len());
            for key in args {
                match db.get(key).await {
                    Ok(v) => values.push(v.map_or(Reply::Nil, Reply::Bulk)),
                    Err(e) => return done(Reply::err(e)),
                }
            }
            Ok(done(Reply::Array(values)))
        }
        "MSET" if !args.is_empty() && args.len().is_multiple_of(2) => {
            let pairs = args
                .chunks(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect();
            db.mset(pairs).await.map(|h| (Reply::ok(), Some(h)))
        }
        "INCR" | "DECR" | "INCRBY" | "DECRBY" => return incr(db, name, args).await,
        "SCAN" => return scan(session, db, args).await,
        "DBSIZE" if args.is_empty() => db.dbsize().await.map(|n| done(Reply::Int(n))),
        _ => return wrong_args(name),
    };
    result.unwrap_or_else(|e| done(Reply::err(e)))
}

async fn set(db: &AttachedDb, args: &[Bytes]) -> Outcome {
    let [key, value, options @ ..] = args else {
        return wrong_args("SET");
    };
    let mut ttl_ms = None;
    let mut cond = SetIf::Always;
    let mut want_old = false;
    let mut i = 0;
    while i < options.len() {
        let option = text(&options[i]).to_ascii_uppercase();
        match option.as_str() {
            "NX" | "XX" if cond == SetIf::Always => {
                cond = if option == "NX" {
                    SetIf::Absent
                } else {
                    SetIf::Present
                };
            }
            "GET" => want_old = true,
            "EX" | "PX" if ttl_ms.is_none() => {
                let Some(n) = options.get(i + 1).and_then(int) else {
                    return done(Reply::err("ERR syntax error"));
                };
                if n <= 0 {
                    return done(Reply::err("ERR invalid expire time in 'set' command"));
                }
                let n = n as u64;
                ttl_ms = Some(if option == "EX" {
                    n.saturating_mul(1000)
                } else {
                    n
                });
                i += 1;
            }
            _ => return done(Reply::err("ERR syntax error")),
        }
        i += 1;
    }
    match db
        .set(key.clone(), value.clone(), ttl_ms, cond, want_old)
        .await
    {
        Ok((wrote, old, handle)) => {
            let reply = if want_old {
                old.map_or(Reply::Nil, Reply::Bulk)
            } else if wrote {
                Reply::ok()
            } else {
                Reply::Nil
            };
            (reply, handle)
        }
        Err(e) => done(Reply::err(e)),
    }
}

async fn incr(db: &AttachedDb, name: &str, args: &[Bytes]) -> Outcome {
    let (key, delta) = match (name, args) {
        ("INCR", [key]) => (key, 1),
        ("DECR", [key]) => (key, -1),
        ("INCRBY", [key, by]) | ("DECRBY", [key, by]) => {
            let Some(by) = int(by) else {
                return done(Reply::err("ERR value is not an integer or out of range"));
            };
            let by = if name == "DECRBY" {
                match by.checked_neg() {
                    Some(n) => n,
                    None => return done(Reply::err("ERR decrement would overflow")),
                }
            } else {
                by
            };
            (key, by)
        }
        _ => return wrong_args(name),
    };
    match db.incr_by(key.clone(), delta).await {
        Ok((value, handle)) => (Reply::Int(value), Some(handle)),
        Err(e) => done(Reply::err(e)),
    }
}

async fn scan(session: &mut Session, db: &AttachedDb, args: &[Bytes]) -> Outcome {
    let [cursor, options @ ..] = args else {
        return wrong_args("SCAN");
    };
    let Some(cursor) = int(cursor).filter(|c| *c >= 0).map(|c| c as u64) else {
        return done(Reply::err("ERR invalid cursor"));
    };
    let mut count = 10;
    let mut pattern = None;
    let mut i = 0;
    while i < options.len() {
        let option = text(&options[i]).to_ascii_uppercase();
        let Some(value) = options.get(i + 1) else {
            return done(Reply::err("ERR syntax error"));
        };
        match option.as_str() {
            "MATCH" => pattern = Some(value.clone()),
            "COUNT" => match int(value) {
                Some(n) if n >= 1 => count = n as usize,
                _ => return done(Reply::err("ERR syntax error")),
            },
            // Every key is a string.
            "TYPE" if text(value).eq_ignore_ascii_case("string") => {}
            "TYPE" => return done(Reply::Array(vec![Reply::bulk("0"), Reply::Array(vec![])])),
            _ => return done(Reply::err("ERR syntax error")),
        }
        i += 2;
    }
    let after = match cursor {
        0 => None,
        c => match session.scan_position(db.index, c) {
            Some(key) => Some(key),
            None => return done(Reply::err("ERR invalid cursor")),
        },
    };
    match db.scan(after, count, pattern.as_deref()).await {
        Ok((keys, next)) => {
            let next = next.map_or(0, |key| session.save_scan(db.index, key));
            done(Reply::Array(vec![
                Reply::bulk(next.to_string()),
                Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
            ]))
        }
        Err(e) => done(Reply::err(e)),
    }
}

async fn auth_command(shared: &Arc<Shared>, session: &mut Session, args: &[Bytes]) -> Outcome {
    let (user, password) = match args {
        [password] => ("default".to_string(), text(password)),
        [user, password] => (text(user), text(password)),
        _ => return wrong_args("AUTH"),
    };
    done(login(shared, session, &user, &password).await)
}

/// Checks `user`'s password in the turn the brake gives the client's
/// address, on the process's small pool of checking threads.
async fn login(shared: &Arc<Shared>, session: &mut Session, user: &str, password: &str) -> Reply {
    let ip = session.peer.ip();
    let turn = match shared.brake.turn(ip, shared.verified.guess(user, password)) {
        Ok(turn) => turn,
        Err(wait) => {
            shared.security.note(Security::AuthThrottled, ip);
            return Reply::err(format!(
                "ERR too many failed AUTH attempts from {ip}; retry in {} s",
                wait.as_secs().max(1)
            ));
        }
    };
    if turn.wait > Duration::ZERO {
        tokio::time::sleep(turn.wait).await;
    }
    let hash = shared.access().users.get(user).map(|u| u.password.clone());
    let checked = match hash {
        Some(hash) if shared.verified.knows(user, &hash, password) => Ok(true),
        Some(hash) => {
            let checked = auth::check(hash.clone(), password.to_string()).await;
            if checked == Ok(true) {
                shared.verified.remember(user, &hash, password);
            }
            checked
        }
        // The same work for an unknown user, so timing does not tell.
        None => auth::check(super::dummy_hash().to_string(), password.to_string())
            .await
            .map(|_| false),
    };
    let ok = match checked {
        Ok(ok) => ok,
        Err(busy) => {
            // Nothing was checked: the attempt does not count.
            shared.brake.abandoned(turn);
            shared.security.note(Security::AuthBusy, ip);
            return Reply::err(match busy {
                auth::Busy::Full => format!(
                    "ERR the server is checking {} passwords already; retry in a second",
                    auth::MAX_WAITING_CHECKS
                ),
                auth::Busy::Gone => "ERR the server cannot check passwords now; see its log".into(),
            });
        }
    };
    shared.brake.finished(turn, ok);
    if ok {
        session.user = Some(user.to_string());
        return Reply::ok();
    }
    shared
        .stats
        .auth_failures
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    shared.security.note(Security::AuthRefused, ip);
    Reply::err("WRONGPASS invalid username-password pair or user is disabled.")
}

async fn hello(shared: &Arc<Shared>, session: &mut Session, args: &[Bytes]) -> Outcome {
    let mut resp3 = session.resp3;
    let mut i = 0;
    if let Some(version) = args.first() {
        match int(version) {
            Some(2) => resp3 = false,
            Some(3) => resp3 = true,
            _ => {
                return done(Reply::err(
                    "NOPROTO unsupported protocol version; use 2 or 3",
                ));
            }
        }
        i = 1;
    }
    while i < args.len() {
        match text(&args[i]).to_ascii_uppercase().as_str() {
            "AUTH" if i + 2 < args.len() => {
                let (user, password) = (text(&args[i + 1]), text(&args[i + 2]));
                let reply = login(shared, session, &user, &password).await;
                if reply.is_error() {
                    return done(reply);
                }
                i += 3;
            }
            "SETNAME" if i + 1 < args.len() => {
                session.name = Some(text(&args[i + 1]));
                i += 2;
            }
            _ => return done(Reply::err("ERR syntax error in HELLO")),
        }
    }
    if let Err(reply) = session.check_auth(shared) {
        return done(reply);
    }
    session.resp3 = resp3;
    let role = if shared.all_followers() {
        "replica"
    } else {
        "master"
    };
    done(Reply::Map(vec![
        (Reply::bulk("server"), Reply::bulk("lifeboat")),
        (Reply::bulk("version"), Reply::bulk(super::REDIS_VERSION)),
        (Reply::bulk("proto"), Reply::Int(if resp3 { 3 } else { 2 })),
        (Reply::bulk("id"), Reply::Int(session.id as i64)),
        (Reply::bulk("mode"), Reply::bulk("standalone")),
        (Reply::bulk("role"), Reply::bulk(role)),
        (Reply::bulk("modules"), Reply::Array(Vec::new())),
    ]))
}

fn select(shared: &Arc<Shared>, session: &mut Session, args: &[Bytes]) -> Outcome {
    let [index] = args else {
        return wrong_args("SELECT");
    };
    let Some(index) = int(index).and_then(|i| u32::try_from(i).ok()) else {
        return done(Reply::err("ERR invalid DB index"));
    };
    let dbs = shared.dbs();
    let Some(db) = dbs.get(&index) else {
        let known: Vec<String> = dbs
            .values()
            .map(|d| format!("{}={}", d.index, d.name))
            .collect();
        return done(Reply::err(format!(
            "ERR DB index is out of range; this workspace serves {}",
            known.join(", ")
        )));
    };
    if let Err(reply) = session.check_grant(shared, db) {
        return done(reply);
    }
    session.db = index;
    done(Reply::ok())
}

fn client(session: &mut Session, args: &[Bytes]) -> Outcome {
    let Some(sub) = args.first() else {
        return wrong_args("CLIENT");
    };
    match (text(sub).to_ascii_uppercase().as_str(), &args[1..]) {
        ("SETNAME", [name]) => {
            let name = text(name);
            if name.contains(' ') {
                return done(Reply::err("ERR Client names cannot contain spaces"));
            }
            session.name = Some(name);
            done(Reply::ok())
        }
        ("GETNAME", []) => done(session.name.clone().map_or(Reply::Nil, Reply::bulk)),
        ("ID", []) => done(Reply::Int(session.id as i64)),
        // Client libraries send these on connect; they change nothing here.
        ("SETINFO", [_, _]) => done(Reply::ok()),
        _ => done(Reply::err(
            "ERR unknown CLIENT subcommand; this workspace supports CLIENT SETNAME, GETNAME, ID, SETINFO",
        )),
    }
}

/// `CONFIG GET`: no parameter is settable here, so every pattern matches
/// nothing (what Redis answers for an unknown parameter).
fn config(args: &[Bytes]) -> Outcome {
    match args.first().map(|s| text(s).to_ascii_uppercase()) {
        Some(sub) if sub == "GET" && args.len() >= 2 => done(Reply::Array(Vec::new())),
        _ => done(Reply::err(
            "ERR this workspace supports only CONFIG GET (it has no settable parameters)",
        )),
    }
}

fn info(shared: &Arc<Shared>, session: &Session) -> Reply {
    let stats = &shared.stats;
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    let mut lines = vec![
        "# Server".to_string(),
        format!("redis_version:{}", super::REDIS_VERSION),
        format!("lifeboat_version:{}", env!("CARGO_PKG_VERSION")),
        format!("workspace:{}", shared.name),
        format!("region:{}", shared.region.name()),
        format!("tcp_port:{}", shared.addr.port()),
        format!("uptime_in_seconds:{}", shared.started.elapsed().as_secs()),
        String::new(),
        "# Clients".to_string(),
        format!("connected_clients:{}", shared.clients.connected()),
        format!(
            "total_connections_received:{}",
            stats.accepted.load(relaxed)
        ),
        format!("rejected_connections:{}", stats.denied.load(relaxed)),
        format!("auth_failures:{}", stats.auth_failures.load(relaxed)),
        String::new(),
        "# Replication".to_string(),
    ];
    match shared.dbs().get(&session.db) {
        Some(db) => {
            let role = if db.is_follower() { "slave" } else { "master" };
            lines.push(format!("role:{role}"));
            lines.push(format!("lifeboat_region:{}", db.region));
            lines.push(format!("lifeboat_database:{}", db.name));
            lines.push(format!("lifeboat_branch:{}", db.location.branch));
            let mode = if db.is_follower() {
                "follower (read-only replica)"
            } else {
                "writer (home)"
            };
            lines.push(format!("lifeboat_mode:{mode}"));
            match db.lag_s() {
                Some(lag) => lines.push(format!("lifeboat_lag_seconds:{lag:.3}")),
                None if db.is_follower() => lines.push("lifeboat_lag_seconds:unknown".into()),
                None => lines.push("lifeboat_lag_seconds:0".into()),
            }
        }
        None => lines.push("role:master".into()),
    }
    lines.push(String::new());
    lines.push("# Keyspace".to_string());
    for db in shared.dbs().values() {
        let mode = if db.is_follower() {
            "follower"
        } else {
            "writer"
        };
        lines.push(format!(
            "db{}:database={},branch={},mode={mode}",
            db.index, db.name, db.location.branch
        ));
    }
    Reply::bulk(lines.join("\r\n") + "\r\n")
}
