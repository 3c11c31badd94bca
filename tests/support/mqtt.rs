//! A real Mosquitto broker (Debian's `mosquitto` package) and a publisher, for tests.
#![allow(dead_code)]

use std::time::Duration;

/// A Mosquitto broker on `port` for the length of a test.
pub struct Mosquitto {
    /// Killed when the test drops it.
    _child: tokio::process::Child,
    _config: tempfile::TempDir,
}

impl Mosquitto {
    /// Stop the broker (a broker that goes away mid-race).
    pub async fn stop(mut self) {
        let _ = self._child.kill().await;
        let _ = self._child.wait().await;
    }

    pub async fn start(port: u16) -> Self {
        let config = tempfile::tempdir().unwrap();
        let file = config.path().join("mosquitto.conf");
        std::fs::write(
            &file,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
        )
        .unwrap();
        let child = tokio::process::Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("mosquitto is installed (Debian package `mosquitto`)");
        let started = std::time::Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < super::PATIENCE,
                "mosquitto did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            _child: child,
            _config: config,
        }
    }
}

/// Publish one message with QoS 1 and wait until the broker has it.
pub async fn publish(port: u16, topic: &str, payload: &str) {
    let mut options =
        rumqttc::MqttOptions::new(format!("test-{}", fastrand::u32(..)), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = rumqttc::AsyncClient::new(options, 10);
    client
        .publish(
            topic,
            rumqttc::QoS::AtLeastOnce,
            false,
            payload.as_bytes().to_vec(),
        )
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(super::PATIENCE, events.poll()).await {
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))) => break,
            Ok(Ok(_)) => continue,
            other => panic!("publishing {topic} failed: {other:?}"),
        }
    }
    let _ = client.disconnect().await;
}
