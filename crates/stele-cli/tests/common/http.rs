//! A running `stele serve` and a minimal HTTP/1.1 client for it: the tests
//! speak to the real server over a real socket, as an application would.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::Ledger;

/// One HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The error code of an error body.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.text()))
            .to_owned()
    }
}

/// Sends one request on a new connection.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut stream = connect(addr)?;
    let length = body.len().to_string();
    let mut all = vec![("Content-Length", length.as_str())];
    all.extend_from_slice(headers);
    write_head(&mut stream, addr, method, path, &all)?;
    // A server may answer (413) and close before reading a large body.
    let _ = stream.write_all(body);
    read_response(&mut BufReader::new(stream))
}

fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    Ok(stream)
}

fn write_head(
    stream: &mut TcpStream,
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<()> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())
}

/// A response's status line and headers.
fn read_head(reader: &mut BufReader<TcpStream>) -> std::io::Result<(u16, Vec<(String, String)>)> {
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
    }
    Ok((status, headers))
}

/// A whole response on a connection the server closes after it.
fn read_response(reader: &mut BufReader<TcpStream>) -> std::io::Result<Response> {
    let (status, headers) = read_head(reader)?;
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim(), 16).map_err(std::io::Error::other)?;
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// A request whose body the test sends when it chooses. The head goes out
/// with `Expect: 100-continue`, and [`start`](Self::start) returns once the
/// server has asked for the body: its handler is running.
pub struct HeldRequest {
    reader: BufReader<TcpStream>,
    chunked: bool,
}

impl HeldRequest {
    /// `content_length: None` sends the body chunked.
    pub fn start(
        addr: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        content_length: Option<usize>,
    ) -> std::io::Result<Self> {
        let mut stream = connect(addr)?;
        let length = content_length.map(|n| n.to_string());
        let mut all = vec![
            ("Expect", "100-continue"),
            match &length {
                Some(n) => ("Content-Length", n.as_str()),
                None => ("Transfer-Encoding", "chunked"),
            },
        ];
        all.extend_from_slice(headers);
        write_head(&mut stream, addr, method, path, &all)?;
        let mut reader = BufReader::new(stream);
        let (status, _) = read_head(&mut reader)?;
        if status != 100 {
            return Err(std::io::Error::other(format!(
                "the server answered {status} instead of asking for the body"
            )));
        }
        Ok(Self {
            reader,
            chunked: content_length.is_none(),
        })
    }

    /// Sends `bytes` of the body (one chunk, if chunked).
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let stream = self.reader.get_mut();
        if self.chunked {
            stream.write_all(format!("{:x}\r\n", bytes.len()).as_bytes())?;
            stream.write_all(bytes)?;
            stream.write_all(b"\r\n")
        } else {
            stream.write_all(bytes)
        }
    }

    /// Ends the body and reads the response.
    pub fn finish(mut self) -> std::io::Result<Response> {
        if self.chunked {
            self.reader.get_mut().write_all(b"0\r\n\r\n")?;
        }
        read_response(&mut self.reader)
    }
}

/// A `stele serve` process on a free loopback port.
pub struct Gateway {
    pub child: Child,
    pub addr: String,
}

impl Gateway {
    /// Starts the gateway for `ledger` and waits until it listens.
    pub fn start(ledger: &Ledger) -> Self {
        Self::start_with(ledger, |_| {})
    }

    /// [`start`](Self::start), with the command adjusted first (environment).
    pub fn start_with(ledger: &Ledger, adjust: impl FnOnce(&mut std::process::Command)) -> Self {
        let mut command = ledger.command();
        adjust(&mut command);
        // The server's log goes to a file: a pipe nobody reads would fill
        // and stop the server mid-write.
        let log_path = ledger.dir.path().join(format!(
            "serve-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let log = std::fs::File::create(&log_path).expect("server log file");
        let mut child = command
            .args(["--json", "serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start stele serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let announced: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            let _ = child.kill();
            let _ = child.wait();
            let err = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("stele serve did not announce its address ({e}): {line:?} {err}")
        });
        let addr = announced["listening"]
            .as_str()
            .and_then(|u| u.strip_prefix("http://"))
            .expect("listening address")
            .to_owned();
        Self { child, addr }
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(b) = &bearer {
            all.push(("Authorization", b));
        }
        request(&self.addr, method, path, &all, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub fn get(&self, path: &str, token: &str) -> Response {
        self.request("GET", path, Some(token), &[], b"")
    }

    /// POSTs JSON to a chain's events.
    pub fn append(&self, chain: &str, token: &str, body: &str) -> Response {
        self.request(
            "POST",
            &format!("/v1/chains/{chain}/events"),
            Some(token),
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    }

    /// SIGKILL, no goodbye.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.send_sigterm();
        self.child.wait().expect("wait for stele serve")
    }

    /// SIGTERM, and the exit status if the process exits within `patience`
    /// (else it is killed when dropped).
    pub fn terminate_within(mut self, patience: Duration) -> Option<std::process::ExitStatus> {
        self.send_sigterm();
        let deadline = std::time::Instant::now() + patience;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait for stele serve") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn send_sigterm(&self) {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates a token on `ledger` and returns it.
pub fn token(ledger: &Ledger, scopes: &str, chains: &str) -> String {
    let created = ledger.json(&[
        "token", "create", "--name", "test", "--scope", scopes, "--chain", chains,
    ]);
    created["token"].as_str().expect("token").to_owned()
}
