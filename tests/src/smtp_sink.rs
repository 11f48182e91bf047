//! A mail sink on loopback: the smallest SMTP server Synapse's mailer (Twisted's ESMTP client,
//! no TLS, no authentication) can deliver to, keeping every message it receives. It lets a test
//! follow what the homeserver e-mails a member — the account-renewal link of an expired account
//! (issue 19) — as the member would, by opening the link.
//!
//! One thread accepts connections; each session is served on its own thread: `220`, then
//! `EHLO`/`HELO`, `MAIL FROM`, `RCPT TO`, `DATA` … `.`, `RSET`, `NOOP`, `QUIT`. Anything else
//! is answered `502`. Nothing leaves the machine.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;

/// A message the sink received.
#[derive(Clone, Debug)]
pub struct Mail {
    /// The `RCPT TO` addresses.
    pub to: Vec<String>,
    /// The raw message (headers and body, as sent; dot-stuffing removed).
    pub raw: String,
}

impl Mail {
    /// The message's text: the raw message followed by every base64 body part decoded (Python's
    /// e-mail package encodes a UTF-8 text part in base64), so a test can search either.
    pub fn text(&self) -> String {
        let mut out = self.raw.clone();
        let mut in_base64 = false;
        let mut chunk = String::new();
        for line in self.raw.lines() {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("content-transfer-encoding:") {
                in_base64 = lower.contains("base64");
                chunk.clear();
                continue;
            }
            if in_base64 {
                let trimmed = line.trim();
                if trimmed.starts_with("--") {
                    flush(&mut out, &mut chunk);
                    in_base64 = false;
                } else if trimmed
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
                {
                    chunk.push_str(trimmed);
                }
            }
        }
        flush(&mut out, &mut chunk);
        out
    }
}

fn flush(out: &mut String, chunk: &mut String) {
    if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(chunk.as_bytes()) {
        out.push('\n');
        out.push_str(&String::from_utf8_lossy(&bytes));
    }
    chunk.clear();
}

/// The running sink.
pub struct SmtpSink {
    /// Its port on 127.0.0.1.
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    /// Starts the sink on a free loopback port (its threads live as long as the process).
    pub fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the SMTP sink");
        let port = listener.local_addr().expect("sink address").port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&mails);
        std::thread::Builder::new()
            .name("smtp-sink".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let mails = Arc::clone(&shared);
                    let _ = std::thread::Builder::new()
                        .name("smtp-session".into())
                        .spawn(move || {
                            let _ = session(stream, &mails);
                        });
                }
            })
            .expect("spawn the SMTP sink");
        SmtpSink { port, mails }
    }

    /// Every message received so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits up to `timeout` for a message to `address` whose text contains `needle`.
    pub fn wait_for(&self, address: &str, needle: &str, timeout: Duration) -> Option<Mail> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.mails().into_iter().find(|m| {
                m.to.iter().any(|t| t.eq_ignore_ascii_case(address)) && m.text().contains(needle)
            });
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn session(stream: TcpStream, mails: &Mutex<Vec<Mail>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    writer.write_all(b"220 smtp-sink.test ESMTP\r\n")?;
    let mut to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_ascii_uppercase();
        let reply: &[u8] = if command.starts_with("EHLO") {
            b"250-smtp-sink.test\r\n250 8BITMIME\r\n"
        } else if command.starts_with("HELO")
            || command.starts_with("MAIL FROM")
            || command.starts_with("NOOP")
        {
            b"250 OK\r\n"
        } else if command.starts_with("RSET") {
            to.clear();
            b"250 OK\r\n"
        } else if command.starts_with("RCPT TO") {
            let address = line
                .trim_end()
                .split_once(':')
                .map(|(_, a)| a.trim().trim_start_matches('<').trim_end_matches('>'))
                .unwrap_or_default()
                .to_owned();
            to.push(address);
            b"250 OK\r\n"
        } else if command == "DATA" {
            writer.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
            let mut raw = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                let content = line.trim_end_matches(['\r', '\n']);
                if content == "." {
                    break;
                }
                raw.push_str(content.strip_prefix('.').unwrap_or(content));
                raw.push('\n');
            }
            mails.lock().unwrap_or_else(|e| e.into_inner()).push(Mail {
                to: std::mem::take(&mut to),
                raw,
            });
            b"250 OK queued\r\n"
        } else if command == "QUIT" {
            writer.write_all(b"221 Bye\r\n")?;
            return Ok(());
        } else {
            b"502 Command not implemented\r\n"
        };
        writer.write_all(reply)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base64_part_is_decoded_for_the_search() {
        let body = base64::engine::general_purpose::STANDARD.encode(
            "Renouvelez : https://h/_matrix/client/unstable/account_validity/renew?token=abc",
        );
        let mail = Mail {
            to: vec!["a@b".into()],
            raw: format!(
                "Subject: x\nContent-Type: multipart/alternative; boundary=\"B\"\n\n--B\nContent-Type: text/plain; charset=\"utf-8\"\nContent-Transfer-Encoding: base64\n\n{}\n{}\n--B--\n",
                &body[..20],
                &body[20..]
            ),
        };
        assert!(mail.text().contains("renew?token=abc"), "{}", mail.text());
    }

    #[test]
    fn the_sink_keeps_what_a_client_delivers() {
        use std::io::Read as _;
        let sink = SmtpSink::start();
        let mut s = TcpStream::connect(("127.0.0.1", sink.port)).unwrap();
        let script = "EHLO me\r\nMAIL FROM:<noreply@x>\r\nRCPT TO:<Jean@Armees.Gouv.fr>\r\nDATA\r\nSubject: hi\r\n\r\n..dotted line\r\nbody\r\n.\r\nQUIT\r\n";
        s.write_all(script.as_bytes()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("220 "), "{answer}");
        assert!(answer.contains("250 OK queued") && answer.ends_with("221 Bye\r\n"));
        let mail = sink
            .wait_for("jean@armees.gouv.fr", "body", Duration::from_secs(5))
            .unwrap();
        assert!(mail.raw.contains("\n.dotted line\n"), "{}", mail.raw);
    }
}
