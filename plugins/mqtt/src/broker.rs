//! What the `mqtt` source and sink share: the broker URL, credentials, QoS, TLS, the
//! connection's event loop and the reconnect backoff.
//!
//! - `mqtt://host[:port]` is plain TCP (port 1883 by default), `mqtts://host[:port]` is MQTT
//!   over TLS (port 8883) verified against the system's root certificates (the same as
//!   OpenF1's live stream needs). `tcp://` and `ssl://` are accepted as synonyms; IPv6 hosts
//!   go in brackets (`mqtt://[::1]:1883`).
//! - `username` / `password` are sent in the CONNECT packet; they normally come from the
//!   environment (`password = "${OPENF1_TOKEN}"`) and are shown as `***` in every debug
//!   output and log.
//! - Each connection is a fresh rumqttc client whose event loop runs in its own task and
//!   reports what happens through a channel ([`Note`]); when it fails the component waits
//!   with [`pitwall_api::backoff::Backoff`] (0.5 s doubling up to 30 s, reset after a
//!   successful connection) and connects again, forever.

use std::sync::Arc;
use std::time::Duration;

use pitwall_api::backoff::Backoff;
use pitwall_api::component::OptionProblem;
use pitwall_api::ComponentError;
pub use pitwall_api::Secret;
use rumqttc::{AsyncClient, ConnectionError, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

/// The default broker: a local one.
pub const DEFAULT_URL: &str = "mqtt://127.0.0.1:1883";

/// Largest packet sent (1 MiB).
pub const MAX_PACKET_BYTES: usize = 1 << 20;

/// Largest packet the connection reads: Mosquitto's own limit (256 MiB). A smaller one
/// would make the client drop the whole connection on one big message (and, for a retained
/// one, again after every reconnect); components skip big messages themselves instead.
pub const MAX_INCOMING_PACKET_BYTES: usize = 256 << 20;

/// Where the broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

/// Parse `mqtt://host[:port]` or `mqtts://host[:port]`.
pub fn parse_broker_url(text: &str) -> Result<BrokerUrl, String> {
    let text = text.trim();
    // Shown in errors: a password in the URL must not be.
    let shown = pitwall_api::redact::url(text);
    let (tls, rest) = if let Some(rest) = strip_scheme(text, &["mqtts://", "ssl://"]) {
        (true, rest)
    } else if let Some(rest) = strip_scheme(text, &["mqtt://", "tcp://"]) {
        (false, rest)
    } else {
        return Err(format!(
            "`{shown}` is not an MQTT URL such as mqtt://127.0.0.1:1883 or mqtts://broker.example.com:8883"
        ));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '@', '?', '#']) {
        return Err(format!(
            "`{shown}`: give only a host and a port (credentials go in `username` and `password`)"
        ));
    }
    let (host, port) = match rest.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("`{shown}`: unclosed `[` in the host"))?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| format!("`{shown}`: expected `:port` after `]`"))?,
                ),
            };
            (host, port)
        }
        None => match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        },
    };
    if host.is_empty() {
        return Err(format!("`{shown}` has no host"));
    }
    let port = match port {
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("`{shown}`: `{port}` is not a port"))?,
        None if tls => 8883,
        None => 1883,
    };
    Ok(BrokerUrl {
        tls,
        host: host.to_string(),
        port,
    })
}

fn strip_scheme<'a>(text: &'a str, schemes: &[&str]) -> Option<&'a str> {
    schemes.iter().find_map(|scheme| {
        let head = text.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme)
            .then(|| &text[scheme.len()..])
    })
}

/// A client id for this run: `pitwall-flow-` and 16 random hex digits.
pub fn random_client_id() -> String {
    format!("pitwall-flow-{:016x}", fastrand::u64(..))
}

/// MQTT QoS 0, 1 or 2.
pub fn qos(level: u8) -> Option<QoS> {
    match level {
        0 => Some(QoS::AtMostOnce),
        1 => Some(QoS::AtLeastOnce),
        2 => Some(QoS::ExactlyOnce),
        _ => None,
    }
}

/// The connection options both components have, checked and ready to connect with.
#[derive(Debug, Clone)]
pub struct Broker {
    pub url: BrokerUrl,
    pub client_id: String,
    pub credentials: Option<(Secret, Secret)>,
    pub clean_session: bool,
}

impl Broker {
    /// From the options: `client_id` None (or empty) picks a random one.
    pub fn new(
        url: &str,
        client_id: Option<&str>,
        username: Option<&Secret>,
        password: Option<&Secret>,
        clean_session: bool,
    ) -> Result<Self, String> {
        let url = parse_broker_url(url)?;
        let client_id = client_id
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .unwrap_or_else(random_client_id);
        let credentials = match (username, password) {
            (Some(user), password) => Some((
                user.clone(),
                password.cloned().unwrap_or_else(|| Secret::new("")),
            )),
            (None, Some(_)) => return Err("`password` needs a `username`".into()),
            (None, None) => None,
        };
        Ok(Self {
            url,
            client_id,
            credentials,
            clean_session,
        })
    }

    /// rumqttc options for one connection.
    pub fn mqtt_options(&self) -> Result<MqttOptions, ComponentError> {
        let mut options = MqttOptions::new(&self.client_id, &self.url.host, self.url.port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(self.clean_session)
            .set_max_packet_size(MAX_INCOMING_PACKET_BYTES, MAX_PACKET_BYTES)
            .set_inflight(100);
        if let Some((user, password)) = &self.credentials {
            options.set_credentials(user.expose(), password.expose());
        }
        if self.url.tls {
            options.set_transport(rumqttc::Transport::tls_with_config(tls_config()?));
        }
        Ok(options)
    }

    /// A new client whose event loop runs in a task (aborted when the [`Connection`] is
    /// dropped). Requests can be queued on the client at once; they go out after the ConnAck.
    pub fn connect(&self, capacity: usize) -> Result<Connection, ComponentError> {
        let (client, mut eventloop) = AsyncClient::new(self.mqtt_options()?, capacity);
        // Gate messages are tiny and latency matters more than packet count: no Nagle.
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let (notes_tx, notes) = mpsc::channel(4096);
        let task = tokio::spawn(drive(eventloop, notes_tx));
        Ok(Connection {
            client,
            notes,
            task,
        })
    }
}

/// Checks of the shared options, for `check()`.
pub fn check_common(
    url: &str,
    qos_level: u8,
    username: Option<&Secret>,
    password: Option<&Secret>,
) -> Vec<OptionProblem> {
    let mut problems = Vec::new();
    if let Err(message) = parse_broker_url(url) {
        problems.push(OptionProblem::new("url", message));
    }
    if qos(qos_level).is_none() {
        problems.push(OptionProblem::new("qos", "MQTT QoS is 0, 1 or 2"));
    }
    if username.is_none() && password.is_some() {
        problems.push(OptionProblem::new(
            "password",
            "`password` needs a `username`",
        ));
    }
    problems
}

/// What a connection's event loop reports.
#[derive(Debug)]
pub enum Note {
    /// The broker accepted the connection.
    Connected,
    /// The broker answered a subscription: one return code per filter (None = refused).
    Subscribed(Vec<Option<QoS>>),
    /// A message arrived.
    Message { topic: String, payload: Vec<u8> },
    /// A publish was written to the connection with this packet id (0 for QoS 0).
    Sent(u16),
    /// The broker acknowledged this packet id (PubAck for QoS 1, PubComp for QoS 2).
    Acked(u16),
    /// The connection failed or ended; the event loop has stopped.
    Lost(ConnectionError),
}

/// One connection: the client to make requests with and the notes of its event loop.
pub struct Connection {
    pub client: AsyncClient,
    pub notes: mpsc::Receiver<Note>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Poll the event loop until it fails (or nobody listens any more). Polling runs in its own
/// task because rumqttc's poll must not be cancelled halfway.
async fn drive(mut eventloop: EventLoop, notes: mpsc::Sender<Note>) {
    loop {
        let note = match eventloop.poll().await {
            Ok(rumqttc::Event::Incoming(packet)) => match packet {
                Packet::ConnAck(_) => Note::Connected,
                Packet::SubAck(ack) => Note::Subscribed(
                    ack.return_codes
                        .iter()
                        .map(|code| match code {
                            rumqttc::SubscribeReasonCode::Success(qos) => Some(*qos),
                            rumqttc::SubscribeReasonCode::Failure => None,
                        })
                        .collect(),
                ),
                Packet::Publish(publish) => Note::Message {
                    topic: publish.topic,
                    payload: publish.payload.to_vec(),
                },
                Packet::PubAck(ack) => Note::Acked(ack.pkid),
                Packet::PubComp(comp) => Note::Acked(comp.pkid),
                _ => continue,
            },
            Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => Note::Sent(pkid),
            Ok(_) => continue,
            Err(error) => {
                let _ = notes.send(Note::Lost(error)).await;
                return;
            }
        };
        if notes.send(note).await.is_err() {
            return;
        }
    }
}

/// The reconnect backoff: 0.5 s doubling up to 30 s.
pub fn reconnect_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(500), Duration::from_secs(30))
}

/// Log the first few occurrences of something, then every 1000th.
pub fn worth_logging(count: u64) -> bool {
    count <= 5 || count.is_multiple_of(1000)
}

/// Wall-clock time in ns since the Unix epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// TLS with the system's root certificates (certificates that do not load are skipped).
fn tls_config() -> Result<rumqttc::TlsConfiguration, ComponentError> {
    use rumqttc::tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!(
            "mqtts: no usable root certificates on this system ({} errors loading them)",
            found.errors.len()
        )
        .into());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(rumqttc::TlsConfiguration::Rustls(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_broker_urls() {
        let url = |tls, host: &str, port| BrokerUrl {
            tls,
            host: host.into(),
            port,
        };
        assert_eq!(
            parse_broker_url("mqtt://127.0.0.1:1883"),
            Ok(url(false, "127.0.0.1", 1883))
        );
        assert_eq!(
            parse_broker_url("mqtts://mqtt.openf1.org"),
            Ok(url(true, "mqtt.openf1.org", 8883))
        );
        assert_eq!(
            parse_broker_url("MQTT://gate.local/"),
            Ok(url(false, "gate.local", 1883))
        );
        assert_eq!(
            parse_broker_url("tcp://[::1]:1999"),
            Ok(url(false, "::1", 1999))
        );
        assert_eq!(parse_broker_url("ssl://[::1]"), Ok(url(true, "::1", 8883)));
        for bad in [
            "http://x:1",
            "mqtt://",
            "mqtt://host:0",
            "mqtt://host:port",
            "mqtt://user:pw@host",
            "mqtt://host/topic",
            "mqtt://[::1",
        ] {
            assert!(parse_broker_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let broker = Broker::new(
            "mqtts://h",
            None,
            Some(&Secret::new("fan")),
            Some(&Secret::new("tok3n")),
            true,
        )
        .unwrap();
        let text = format!("{broker:?}");
        assert!(!text.contains("tok3n") && !text.contains("fan"), "{text}");
        assert!(broker.client_id.starts_with("pitwall-flow-"));
        assert!(Broker::new("mqtt://h", None, None, Some(&Secret::new("x")), true).is_err());
    }

    #[test]
    fn qos_levels() {
        assert_eq!(qos(0), Some(QoS::AtMostOnce));
        assert_eq!(qos(2), Some(QoS::ExactlyOnce));
        assert_eq!(qos(3), None);
    }
}
