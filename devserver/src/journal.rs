//! A region's data file: an append-only JSON-lines journal under `--data-dir`.
//!
//! Owns: the file format (one [`Record`] per line), the file's name for a region, reading
//! it back (skipping, with a warning, any line that does not parse, and repairing a last
//! line torn by a kill mid-write so the next record starts on a line of its own), appending
//! a record with `write_all` + `flush` before the caller acknowledges anything, and
//! rewriting the file whole (temp file + rename) when a region's history is wiped.
//! Must never panic on any file content, never log a line's content (it holds message
//! bodies and the region's private sealing key) and never decide what a record means:
//! replaying records is the store's job.
//!
//! Durability: a record is in the OS's page cache once `append` returns, so it survives
//! the process being killed (even with SIGKILL), not a power loss or a kernel crash. That
//! is what a dev server needs: no `fsync` per message.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use meridian::envelope::KeyPair;
use meridian::model::{IdempotencyKey, Message, RegionId, SpaceLocation, UserId};
use serde::{Deserialize, Serialize};

use crate::DevserverError;

/// The version of the file format, written in every epoch record.
pub(crate) const FORMAT: u32 = 1;

/// One line of a region's data file.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Record {
    /// A history starts: everything stored before this line is forgotten (DMs stay).
    /// Written first when the file is created, and when the region's history is wiped.
    Epoch {
        /// The file format ([`FORMAT`]).
        format: u32,
        /// The new history's epoch.
        epoch: String,
    },
    /// A stored message with the idempotency key it was sent with.
    Message {
        /// The idempotency key of the send.
        key: IdempotencyKey,
        /// The message, with its seq.
        message: Message,
    },
    /// The region's sealing key pair (its private half): the region opens what clients
    /// and other regions sealed to the public half the federation document publishes. The
    /// last valid one in the file is the region's key.
    SealingKey {
        /// The private half, hex.
        private: PrivateKeyHex,
    },
    /// A DM housed in this region was created.
    Dm {
        /// Where it is housed.
        location: SpaceLocation,
        /// Its two participants, sorted.
        participants: [UserId; 2],
    },
}

/// A private key as hex text, for the data file. `Debug` never shows it, and its text is
/// overwritten when dropped (best effort: the file holds it anyway, which is why a data
/// directory must be kept as private as the region itself).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct PrivateKeyHex(String);

impl PrivateKeyHex {
    /// The private half of `key`.
    pub fn of(key: &KeyPair) -> Self {
        let bytes = key.private_bytes();
        let mut text = String::with_capacity(bytes.len() * 2);
        for b in bytes.iter() {
            text.push(char::from(HEX[usize::from(b >> 4)]));
            text.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        Self(text)
    }

    /// The key pair, or why the text is not one.
    pub fn key_pair(&self) -> Result<KeyPair, &'static str> {
        let text = self.0.as_bytes();
        if !text.len().is_multiple_of(2) {
            return Err("odd number of hex digits");
        }
        let nibble = |c: u8| -> Result<u8, &'static str> {
            match c {
                b'0'..=b'9' => Ok(c - b'0'),
                b'a'..=b'f' => Ok(c - b'a' + 10),
                b'A'..=b'F' => Ok(c - b'A' + 10),
                _ => Err("not hex"),
            }
        };
        let mut bytes = Vec::with_capacity(text.len() / 2);
        for pair in text.chunks_exact(2) {
            bytes.push((nibble(pair[0])? << 4) | nibble(pair[1])?);
        }
        let key = KeyPair::from_private_bytes(&bytes).map_err(|_| "not an X25519 private key");
        wipe(bytes);
        key
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Overwrites a buffer before freeing it (best effort, without `unsafe`).
fn wipe(mut bytes: Vec<u8>) {
    bytes.fill(0);
    std::hint::black_box(&bytes);
}

impl Drop for PrivateKeyHex {
    fn drop(&mut self) {
        wipe(std::mem::take(&mut self.0).into_bytes());
    }
}

impl std::fmt::Debug for PrivateKeyHex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKeyHex(<redacted>)")
    }
}

/// An open data file, positioned at its end.
pub(crate) struct Journal {
    path: PathBuf,
    file: File,
}

/// `<dir>/region-<id>.jsonl`, with every byte of the id that is not a letter, a digit,
/// `-`, `_` or `.` written as `%XX` (region ids may hold `:`, which some file systems
/// refuse).
pub(crate) fn file_for(dir: &Path, region: &RegionId) -> PathBuf {
    let mut name = String::from("region-");
    for b in region.as_str().bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    name.push_str(".jsonl");
    dir.join(name)
}

fn storage(path: &Path, e: impl std::fmt::Display) -> DevserverError {
    DevserverError::Storage {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

impl Journal {
    /// Opens (creating the directory and the file if needed) and reads `path`: returns the
    /// records that parse, in file order. A line that does not parse is skipped with a
    /// warning; a torn last line is cut off so the next append starts a line of its own.
    pub fn open(path: &Path) -> Result<(Journal, Vec<Record>), DevserverError> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| storage(dir, e))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| storage(path, e))?;
        let bytes = fs::read(path).map_err(|e| storage(path, e))?;
        let mut records = Vec::new();
        let mut lines = bytes.split(|b| *b == b'\n').enumerate().peekable();
        while let Some((index, line)) = lines.next() {
            let last = lines.peek().is_none();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Record>(line) {
                Ok(record) => {
                    if last {
                        // Complete, but its newline never made it: add it.
                        file.write_all(b"\n").map_err(|e| storage(path, e))?;
                    }
                    records.push(record);
                }
                Err(e) if last => {
                    // Not the error's text: serde may quote the line's content in it.
                    tracing::warn!(
                        file = %path.display(), line = index + 1, problem = ?e.classify(),
                        "the last line of the data file is incomplete (killed mid-write?): skipped"
                    );
                    // Everything up to the last newline is kept.
                    let keep = bytes.len() - line.len();
                    file.set_len(u64::try_from(keep).unwrap_or(u64::MAX))
                        .map_err(|e| storage(path, e))?;
                }
                Err(e) => {
                    tracing::warn!(
                        file = %path.display(), line = index + 1, problem = ?e.classify(),
                        column = e.column(),
                        "a line of the data file does not parse: skipped"
                    );
                }
            }
        }
        Ok((
            Journal {
                path: path.to_path_buf(),
                file,
            },
            records,
        ))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record as one line, written and flushed before returning.
    pub fn append(&mut self, record: &Record) -> io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.flush()
    }

    /// Replaces the whole file with `records` (through a temp file and a rename, so a kill
    /// leaves either the old file or the new one).
    pub fn rewrite(&mut self, records: &[Record]) -> io::Result<()> {
        let mut text = Vec::new();
        for record in records {
            serde_json::to_writer(&mut text, record).map_err(io::Error::other)?;
            text.push(b'\n');
        }
        let mut tmp_name = self.path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&text)?;
            f.flush()?;
        }
        fs::rename(&tmp, &self.path)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use meridian::model::{MessageId, SpaceId};

    fn dir(name: &str) -> PathBuf {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).unwrap();
        let tag: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        std::env::temp_dir().join(format!("devserver-journal-{name}-{tag}"))
    }

    fn message(seq: u64) -> Record {
        Record::Message {
            key: IdempotencyKey::new_unchecked(format!("k{seq}")),
            message: Message {
                space: SpaceId::new_unchecked("acme:general"),
                seq,
                id: MessageId::new_unchecked(format!("m{seq}")),
                sender: UserId::new_unchecked("ana"),
                body: format!("body {seq}"),
                sealed: None,
                sent_at_ms: 1,
                trace: None,
            },
        }
    }

    fn epoch(e: &str) -> Record {
        Record::Epoch {
            format: FORMAT,
            epoch: e.into(),
        }
    }

    #[test]
    fn records_read_back_in_the_order_they_were_appended() {
        let d = dir("order");
        let path = file_for(&d, &RegionId::new_unchecked("eu-west"));
        let (mut j, records) = Journal::open(&path).unwrap();
        assert!(records.is_empty());
        for r in [epoch("e1"), message(1), message(2)] {
            j.append(&r).unwrap();
        }
        drop(j);
        let (_, records) = Journal::open(&path).unwrap();
        assert!(records == vec![epoch("e1"), message(1), message(2)]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_cut_so_the_next_record_stands_alone() {
        let d = dir("torn");
        let path = file_for(&d, &RegionId::new_unchecked("eu-west"));
        let (mut j, _) = Journal::open(&path).unwrap();
        j.append(&epoch("e1")).unwrap();
        j.append(&message(1)).unwrap();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"type":"message","key":"k2","mess"#)
            .unwrap();
        drop(f);

        let (mut j, records) = Journal::open(&path).unwrap();
        assert!(records == vec![epoch("e1"), message(1)]);
        j.append(&message(2)).unwrap();
        drop(j);
        let (_, records) = Journal::open(&path).unwrap();
        assert!(records == vec![epoch("e1"), message(1), message(2)]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_complete_last_line_without_its_newline_is_kept() {
        let d = dir("nonl");
        let path = file_for(&d, &RegionId::new_unchecked("eu-west"));
        fs::create_dir_all(&d).unwrap();
        let mut text = serde_json::to_vec(&epoch("e1")).unwrap();
        text.push(b'\n');
        text.extend(serde_json::to_vec(&message(1)).unwrap());
        fs::write(&path, text).unwrap();
        let (mut j, records) = Journal::open(&path).unwrap();
        assert_eq!(records.len(), 2);
        j.append(&message(2)).unwrap();
        drop(j);
        let (_, records) = Journal::open(&path).unwrap();
        assert_eq!(records.len(), 3);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn garbage_anywhere_in_the_file_is_skipped_never_a_panic() {
        let d = dir("garbage");
        let path = file_for(&d, &RegionId::new_unchecked("eu-west"));
        fs::create_dir_all(&d).unwrap();
        let mut text = serde_json::to_vec(&epoch("e1")).unwrap();
        text.extend(b"\nnot json\n\xff\xfe\x00\n{\"type\":\"message\",\"key\":\"bad key!\"}\n\n");
        text.extend(serde_json::to_vec(&message(1)).unwrap());
        text.extend(b"\n{\"type\":\"unknown\"}\n\xc3");
        fs::write(&path, text).unwrap();
        let (_, records) = Journal::open(&path).unwrap();
        assert!(records == vec![epoch("e1"), message(1)]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_rewrite_replaces_the_file_and_appends_continue_after_it() {
        let d = dir("rewrite");
        let path = file_for(&d, &RegionId::new_unchecked("eu-west"));
        let (mut j, _) = Journal::open(&path).unwrap();
        j.append(&epoch("e1")).unwrap();
        j.append(&message(1)).unwrap();
        j.rewrite(&[epoch("e2")]).unwrap();
        j.append(&message(1)).unwrap();
        drop(j);
        let (_, records) = Journal::open(&path).unwrap();
        assert!(records == vec![epoch("e2"), message(1)]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_private_key_round_trips_through_hex_and_never_shows_in_debug() {
        let key = KeyPair::generate();
        let hex = PrivateKeyHex::of(&key);
        assert_eq!(hex.key_pair().unwrap().public(), key.public());
        let record = Record::SealingKey {
            private: hex.clone(),
        };
        let line = serde_json::to_string(&record).unwrap();
        assert!(
            line.starts_with(r#"{"type":"sealing_key","private":""#),
            "{line}"
        );
        assert!(!format!("{hex:?}").contains(&hex.0));
        for bad in ["", "0", "zz", &"00".repeat(31), "é"] {
            assert!(
                PrivateKeyHex(bad.to_string()).key_pair().is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn region_ids_become_safe_file_names() {
        let d = Path::new("/data");
        assert_eq!(
            file_for(d, &RegionId::new_unchecked("eu-west")),
            Path::new("/data/region-eu-west.jsonl")
        );
        assert_eq!(
            file_for(d, &RegionId::new_unchecked("a:b")),
            Path::new("/data/region-a%3Ab.jsonl")
        );
        assert_eq!(
            file_for(d, &RegionId::new_unchecked("..")),
            Path::new("/data/region-...jsonl")
        );
    }
}
