//! [`Endpoint`]: a `--source`, `--sink` or `--dead-letter` URL, parsed once into the broker,
//! the topic (or stream) and the options hermes reads from its query.
//!
//! - `kafka://HOST:PORT[,HOST:PORT…]/TOPIC?group=G`: any other query key that contains a dot
//!   (`security.protocol=SASL_SSL`, `session.timeout.ms=6000`) is handed to librdkafka as is,
//!   so TLS, SASL and timeouts need no flag of hermes' own.
//! - `redis://[:PASSWORD@]HOST:PORT/DB/STREAM?group=G&consumer=C&claim-idle-ms=N`: the
//!   consumer name defaults to the host name, so a restarted process (same pod, same host)
//!   reads its own pending entries first; `claim-idle-ms` (default 60,000) is how long an
//!   entry another consumer holds must sit idle before this one claims it (`XAUTOCLAIM`).

use std::time::Duration;

/// Where documents come from or go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Kafka(KafkaEndpoint),
    Redis(RedisEndpoint),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaEndpoint {
    /// `bootstrap.servers`: one or more `host:port`, comma-separated.
    pub brokers: String,
    pub topic: String,
    /// The consumer group; required of a source, refused on a sink.
    pub group: Option<String>,
    /// librdkafka properties from the query (keys with a dot), applied last.
    pub properties: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisEndpoint {
    /// The server, as the redis crate takes it: `redis://[:pw@]host:port/db`.
    pub server: String,
    pub stream: String,
    /// The consumer group; required of a source, refused on a sink.
    pub group: Option<String>,
    /// This process's consumer name in the group (source only).
    pub consumer: Option<String>,
    /// Idle time after which another consumer's pending entry is claimed (source only).
    pub claim_idle: Duration,
}

impl RedisEndpoint {
    /// `host:port` (without credentials) and the database number of the server.
    pub fn address(&self) -> (&str, &str) {
        let rest = self.server.trim_start_matches("redis://");
        let rest = rest.rsplit('@').next().unwrap_or(rest);
        rest.rsplit_once('/').unwrap_or((rest, "0"))
    }
}

/// The default of `claim-idle-ms`: long enough that a live consumer's slowest batch is never
/// taken from it, short enough that a dead consumer's entries move on within a minute.
pub const CLAIM_IDLE: Duration = Duration::from_secs(60);

/// What a URL is used as: a source needs a group, a sink must not have one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Source,
    Sink,
}

impl Endpoint {
    /// Parses `url` for `role`; the error names the flag's problem in words.
    pub fn parse(url: &str, role: Role) -> Result<Self, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url:?} is not a URL (kafka://… or redis://…)"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut params = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                format!("{:?}: query item {pair:?} is not key=value", redact(url))
            })?;
            params.push((k.to_string(), v.to_string()));
        }
        let take = |params: &mut Vec<(String, String)>, key: &str| {
            params
                .iter()
                .position(|(k, _)| k == key)
                .map(|i| params.remove(i).1)
        };
        let group = take(&mut params, "group");
        match (role, &group) {
            (Role::Source, None) => {
                return Err(format!(
                    "{:?}: a source needs a consumer group (?group=NAME)",
                    redact(url)
                ));
            }
            (Role::Sink, Some(_)) => {
                return Err(format!(
                    "{:?}: a sink takes no ?group= (only sources join a group)",
                    redact(url)
                ));
            }
            _ => {}
        }
        if group.as_deref() == Some("") {
            return Err(format!("{:?}: the group name is empty", redact(url)));
        }
        match scheme {
            "kafka" => {
                let (brokers, topic) = path.split_once('/').ok_or_else(|| {
                    format!("{:?}: no topic (kafka://HOST:PORT/TOPIC)", redact(url))
                })?;
                check_name(url, "topic", topic)?;
                if brokers.is_empty() {
                    return Err(format!("{:?}: no broker address", redact(url)));
                }
                for broker in brokers.split(',') {
                    check_host_port(url, broker, true)?;
                }
                if let Some((k, _)) = params.iter().find(|(k, _)| !k.contains('.')) {
                    return Err(format!(
                        "{:?}: unknown option {k:?} (kafka takes group= and librdkafka properties such as session.timeout.ms=)",
                        redact(url)
                    ));
                }
                Ok(Endpoint::Kafka(KafkaEndpoint {
                    brokers: brokers.to_string(),
                    topic: topic.to_string(),
                    group,
                    properties: params,
                }))
            }
            "redis" => {
                let mut parts = path.splitn(3, '/');
                let host = parts.next().unwrap_or_default();
                let db = parts.next().unwrap_or_default();
                let stream = parts.next().unwrap_or_default();
                if host.is_empty() || db.parse::<u32>().is_err() {
                    return Err(format!(
                        "{:?}: expected redis://HOST:PORT/DB/STREAM with a numeric DB",
                        redact(url)
                    ));
                }
                check_name(url, "stream", stream)?;
                check_host_port(url, host.rsplit('@').next().unwrap_or(host), false)?;
                let consumer = take(&mut params, "consumer");
                let claim_idle = match take(&mut params, "claim-idle-ms") {
                    None => CLAIM_IDLE,
                    Some(ms) => Duration::from_millis(ms.parse().map_err(|_| {
                        format!("{:?}: claim-idle-ms={ms:?} is not a number", redact(url))
                    })?),
                };
                if role == Role::Sink && (consumer.is_some()) {
                    return Err(format!("{:?}: a sink takes no consumer=", redact(url)));
                }
                if let Some((k, _)) = params.first() {
                    return Err(format!(
                        "{:?}: unknown option {k:?} (redis takes group=, consumer=, claim-idle-ms=)",
                        redact(url)
                    ));
                }
                Ok(Endpoint::Redis(RedisEndpoint {
                    server: format!("redis://{host}/{db}"),
                    stream: stream.to_string(),
                    group,
                    consumer,
                    claim_idle,
                }))
            }
            other => Err(format!(
                "{:?}: unknown scheme {other:?} (kafka:// or redis://)",
                redact(url)
            )),
        }
    }

    /// The topic or stream name.
    pub fn topic(&self) -> &str {
        match self {
            Endpoint::Kafka(k) => &k.topic,
            Endpoint::Redis(r) => &r.stream,
        }
    }

    /// The default dead-letter destination of a source: the same broker, the topic with
    /// `.dead-letter` appended.
    pub fn dead_letter(&self) -> Endpoint {
        match self {
            Endpoint::Kafka(k) => Endpoint::Kafka(KafkaEndpoint {
                topic: format!("{}.dead-letter", k.topic),
                group: None,
                ..k.clone()
            }),
            Endpoint::Redis(r) => Endpoint::Redis(RedisEndpoint {
                stream: format!("{}.dead-letter", r.stream),
                group: None,
                consumer: None,
                ..r.clone()
            }),
        }
    }
}

/// For logs and messages: the endpoint without credentials.
impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Kafka(k) => write!(f, "kafka://{}/{}", k.brokers, k.topic),
            Endpoint::Redis(r) => write!(f, "{}/{}", redact(&r.server), r.stream),
        }
    }
}

/// `HOST:PORT` with a port a server can listen on (1..=65535); Redis may omit the port
/// (6379). Checked when the flags are read, before the model loads, so a typo costs nothing.
fn check_host_port(url: &str, hp: &str, port_required: bool) -> Result<(), String> {
    let bad = |why: String| Err(format!("{:?}: {why}", redact(url)));
    let (host, port) = match hp.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hp.starts_with('[') => (h, Some(p)),
        _ => (hp, None),
    };
    if host.is_empty() {
        return bad(format!("{hp:?} has no host"));
    }
    match port {
        None if port_required => bad(format!("{hp:?} has no port (HOST:PORT)")),
        None => Ok(()),
        Some(p) => match p.parse::<u16>() {
            Ok(0) => bad(format!("port 0 in {hp:?}: no broker listens on port 0")),
            Ok(_) => Ok(()),
            Err(_) => bad(format!("{p:?} in {hp:?} is not a port (1..=65535)")),
        },
    }
}

/// Whether two `host:port` lists name a common server: equal strings, or host names that
/// resolve to a common address with the same port (`localhost:6379` is `127.0.0.1:6379`).
pub fn same_servers(a: &str, b: &str) -> bool {
    use std::net::ToSocketAddrs;
    let resolve = |list: &str| -> Vec<std::net::SocketAddr> {
        list.split(',')
            .filter_map(|hp| hp.to_socket_addrs().ok())
            .flatten()
            .collect()
    };
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.split(',').collect(), b.split(',').collect());
    if la.iter().any(|x| lb.contains(x)) {
        return true;
    }
    let (ra, rb) = (resolve(a), resolve(b));
    ra.iter().any(|x| rb.contains(x))
}

fn check_name(url: &str, what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{:?}: the {what} name is empty", redact(url)));
    }
    Ok(())
}

/// `url` with a password (`:pw@`) replaced by `***`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_checked_when_the_flags_are_read() {
        for (url, want) in [
            ("kafka://localhost:0/docs", "port 0"),
            ("kafka://localhost:99999/docs", "not a port"),
            ("kafka://localhost/docs", "no port"),
            ("redis://127.0.0.1:0/0/docs", "port 0"),
            ("redis://127.0.0.1:99999/0/docs", "not a port"),
        ] {
            let err = Endpoint::parse(url, Role::Sink).unwrap_err();
            assert!(err.contains(want), "{url}: {err}");
        }
        assert!(Endpoint::parse("redis://127.0.0.1/0/docs", Role::Sink).is_ok());
        assert!(Endpoint::parse("kafka://[::1]:9092/docs", Role::Sink).is_ok());
    }

    #[test]
    fn one_server_under_two_names_is_the_same_place() {
        assert!(same_servers("localhost:6379", "127.0.0.1:6379"));
        assert!(same_servers("a:1,localhost:9092", "127.0.0.1:9092"));
        assert!(!same_servers("localhost:6379", "127.0.0.1:6380"));
        let Endpoint::Redis(r) =
            Endpoint::parse("redis://:pw@localhost:6379/2/s", Role::Sink).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.address(), ("localhost:6379", "2"));
    }

    #[test]
    fn a_kafka_source_takes_brokers_topic_group_and_librdkafka_properties() {
        let e = Endpoint::parse(
            "kafka://a:9092,b:9092/docs?group=hermes&session.timeout.ms=6000",
            Role::Source,
        )
        .unwrap();
        assert_eq!(
            e,
            Endpoint::Kafka(KafkaEndpoint {
                brokers: "a:9092,b:9092".into(),
                topic: "docs".into(),
                group: Some("hermes".into()),
                properties: vec![("session.timeout.ms".into(), "6000".into())],
            })
        );
        assert_eq!(e.dead_letter().topic(), "docs.dead-letter");
        assert_eq!(e.to_string(), "kafka://a:9092,b:9092/docs");
    }

    #[test]
    fn a_redis_stream_keeps_the_server_url_and_hides_the_password() {
        let e = Endpoint::parse(
            "redis://:s3cret@127.0.0.1:6379/2/in/docs?group=g&consumer=c1&claim-idle-ms=500",
            Role::Source,
        )
        .unwrap();
        let Endpoint::Redis(r) = &e else { panic!() };
        assert_eq!(r.server, "redis://:s3cret@127.0.0.1:6379/2");
        assert_eq!(r.stream, "in/docs");
        assert_eq!(r.consumer.as_deref(), Some("c1"));
        assert_eq!(r.claim_idle, Duration::from_millis(500));
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    #[test]
    fn mistakes_are_refused_with_the_reason() {
        let cases = [
            ("kafka://h:1/t", Role::Source, "needs a consumer group"),
            ("kafka://h:1/t?group=g", Role::Sink, "takes no ?group="),
            ("kafka://h:1", Role::Sink, "no topic"),
            (
                "kafka://h:1/t?grup=g",
                Role::Sink,
                "unknown option \"grup\"",
            ),
            ("redis://h:1/t?group=g", Role::Source, "numeric DB"),
            (
                "redis://h:1/0/?group=g",
                Role::Source,
                "stream name is empty",
            ),
            ("amqp://h/q", Role::Sink, "unknown scheme"),
            ("docs", Role::Sink, "is not a URL"),
            ("redis://:pw@h:1/0/s?x=1", Role::Sink, "unknown option"),
        ];
        for (url, role, want) in cases {
            let e = Endpoint::parse(url, role).unwrap_err();
            assert!(e.contains(want), "{url}: {e}");
            assert!(!e.contains(":pw@"), "{url}: the password leaked: {e}");
        }
    }
}
