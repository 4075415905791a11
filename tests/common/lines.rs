//! A child process's output (its piped stderr or stdout), line by line as it arrives: read on
//! a thread of its own into a channel, and a bounded wait for the line that says something
//! happened. Needs nothing else of `common`, so tests/cli.rs (which does not load the harness)
//! includes this file alone with `#[path = "common/lines.rs"]`.
#![allow(dead_code)]

use std::io::BufRead;
use std::sync::mpsc::Receiver;
use std::time::Duration;

/// Reads `stream` (a child's stderr or stdout) line by line on a thread of its own until it ends (or
/// the receiver is gone); every line arrives on the returned channel.
pub fn read(stream: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stream)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The lines that arrive on `rx` up to and including the first one containing `marker`,
/// waiting at most `wait` for each. When no line had `marker` (the wait ran out, or the stream
/// ended), all the lines that came, and the last does not contain `marker`.
pub fn until(rx: &Receiver<String>, marker: &str, wait: Duration) -> Vec<String> {
    let mut got = Vec::new();
    while let Ok(line) = rx.recv_timeout(wait) {
        let done = line.contains(marker);
        got.push(line);
        if done {
            break;
        }
    }
    got
}
