//! A real SMTP server (mailin-embedded, in-process) and helpers to read what it received.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A real SMTP server (mailin-embedded) on 127.0.0.1, in a thread of its own that lives as
/// long as the test binary; every message it accepts is sent on the channel.
pub mod smtp {
    use tokio::sync::mpsc;

    #[derive(Debug, Clone)]
    pub struct Mail {
        pub from: String,
        pub to: Vec<String>,
        pub data: String,
    }

    #[derive(Clone)]
    struct Inbox {
        tx: mpsc::UnboundedSender<Mail>,
        from: String,
        to: Vec<String>,
        data: Vec<u8>,
    }

    impl mailin_embedded::Handler for Inbox {
        fn data_start(
            &mut self,
            _domain: &str,
            from: &str,
            _is8bit: bool,
            to: &[String],
        ) -> mailin_embedded::Response {
            self.from = from.to_string();
            self.to = to.to_vec();
            self.data.clear();
            mailin_embedded::response::OK
        }

        fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
            self.data.extend_from_slice(buf);
            Ok(())
        }

        fn data_end(&mut self) -> mailin_embedded::Response {
            let _ = self.tx.send(Mail {
                from: self.from.clone(),
                to: self.to.clone(),
                data: String::from_utf8_lossy(&self.data).into_owned(),
            });
            mailin_embedded::response::OK
        }
    }

    /// Starts the server; returns its port and the received mail.
    pub fn start() -> (u16, mpsc::UnboundedReceiver<Mail>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{e}"))
            .port();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut server = mailin_embedded::Server::new(Inbox {
            tx,
            from: String::new(),
            to: Vec::new(),
            data: Vec::new(),
        });
        server
            .with_name("mail.test")
            .with_num_threads(2)
            .with_tcp_listener(listener)
            .with_ssl(mailin_embedded::SslConfig::None)
            .unwrap_or_else(|e| panic!("{e}"));
        std::thread::spawn(move || {
            if let Err(e) = server.serve() {
                eprintln!("SMTP server stopped: {e}");
            }
        });
        (port, rx)
    }
}

/// The value of header `name` in a message's header block (unfolded).
pub fn mail_header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then_some(value.trim())
    })
}

/// Decodes a body sent as quoted-printable or base64 (or as it is).
pub fn decode_body(encoding: Option<&str>, body: &str) -> String {
    match encoding.map(str::to_ascii_lowercase).as_deref() {
        Some("quoted-printable") => {
            let joined = body.replace("=\r\n", "");
            let bytes = joined.as_bytes();
            let mut out = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match (bytes[i], hex) {
                    (b'=', Some(byte)) => {
                        out.push(byte);
                        i += 3;
                    }
                    (b, _) => {
                        out.push(b);
                        i += 1;
                    }
                }
            }
            String::from_utf8_lossy(&out).into_owned()
        }
        Some("base64") => {
            let compact: String = body.split_whitespace().collect();
            let bytes = STANDARD
                .decode(compact)
                .unwrap_or_else(|e| panic!("base64 body: {e}"));
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => body.to_string(),
    }
}

/// The decoded plain-text body of a received message.
pub fn body_of(mail: &smtp::Mail) -> String {
    let (head, body) = mail.data.split_once("\r\n\r\n").unwrap_or(("", &mail.data));
    decode_body(mail_header(head, "content-transfer-encoding"), body)
}
