//! The import file: where it is (a path, or stdin kept in a temporary file
//! so that a resumed import can read it again from the start), whether it
//! is gzip-compressed (told by its first bytes), its format (CSV with a
//! header row, or NDJSON), and its rows, read one at a time with their line
//! numbers and their original text for the failed-rows file.

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Read},
    path::{Path, PathBuf},
};

use flate2::read::MultiGzDecoder;
use sha2::{Digest, Sha256};

use super::{
    columns::{self, Column},
    error::{BadRow, ImportError},
};
use crate::api::pb;

/// The two formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Ndjson,
}

impl Format {
    /// The format an input's name says (`.csv`, `.ndjson` or `.jsonl`, optionally `.gz`).
    pub fn of_name(name: &str) -> Option<Format> {
        let name = name.strip_suffix(".gz").unwrap_or(name);
        let extension = Path::new(name).extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "csv" => Some(Format::Csv),
            "ndjson" | "jsonl" => Some(Format::Ndjson),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
        }
    }
}

/// A row as the file holds it, to be written back if it fails.
#[derive(Debug, Clone)]
pub enum RawRow {
    Csv(csv::StringRecord),
    Json(String),
}

/// One row: its line in the input, its original text and the user it describes.
#[derive(Debug)]
pub struct Row {
    pub line: u64,
    pub raw: RawRow,
    pub user: pb::User,
}

pub struct Source {
    path: PathBuf,
    /// What messages call the input: its path, or `stdin`.
    pub name: String,
    pub format: Format,
    /// Keeps stdin's copy until the import ends.
    _spool: Option<tempfile::NamedTempFile>,
}

impl Source {
    /// Opens `input` (`-`: stdin, copied to a temporary file first).
    pub fn open(input: &str, format: Option<Format>) -> Result<Source, ImportError> {
        let format = format.or_else(|| Format::of_name(input)).ok_or_else(|| {
            ImportError::Usage(format!(
                "cannot tell the format of {input:?} from its name: pass --format csv or --format ndjson"
            ))
        })?;
        if input == "-" {
            let mut spool = tempfile::NamedTempFile::new()
                .map_err(|error| ImportError::file("a temporary copy of stdin", error))?;
            io::copy(&mut io::stdin().lock(), spool.as_file_mut())
                .map_err(|error| ImportError::file("stdin", error))?;
            return Ok(Source {
                path: spool.path().to_owned(),
                name: "stdin".to_owned(),
                format,
                _spool: Some(spool),
            });
        }
        File::open(input).map_err(|error| ImportError::file(input, error))?;
        Ok(Source {
            path: PathBuf::from(input),
            name: input.to_owned(),
            format,
            _spool: None,
        })
    }

    /// The file's content, decompressed when it starts with gzip's magic bytes.
    fn content(&self) -> Result<Box<dyn BufRead + Send>, ImportError> {
        let file = File::open(&self.path).map_err(|error| ImportError::file(&self.name, error))?;
        let mut reader = BufReader::with_capacity(1 << 16, file);
        let gzip = reader
            .fill_buf()
            .map_err(|error| ImportError::file(&self.name, error))?
            .starts_with(&[0x1f, 0x8b]);
        Ok(if gzip {
            Box::new(BufReader::with_capacity(
                1 << 16,
                MultiGzDecoder::new(reader),
            ))
        } else {
            Box::new(reader)
        })
    }

    /// SHA-256 of the file's bytes as stored, hex.
    pub fn digest(&self) -> Result<String, ImportError> {
        let mut file =
            File::open(&self.path).map_err(|error| ImportError::file(&self.name, error))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; 1 << 16];
        loop {
            let read = file
                .read(&mut buffer)
                .map_err(|error| ImportError::file(&self.name, error))?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
        Ok(hex::encode(hasher.finalize()))
    }

    /// The rows from the start; a CSV header naming an unknown column fails here.
    pub fn rows(&self) -> Result<Rows, ImportError> {
        let content = self.content()?;
        Ok(match self.format {
            Format::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .from_reader(content);
                let header = reader
                    .headers()
                    .map_err(|error| ImportError::file(&self.name, io::Error::other(error)))?
                    .clone();
                let mut unknown = Vec::new();
                let mut columns = Vec::with_capacity(header.len());
                for (position, name) in header.iter().enumerate() {
                    if header.iter().take(position).any(|earlier| earlier == name) {
                        return Err(ImportError::Usage(format!(
                            "{}: line 1: column {name:?} appears twice",
                            self.name
                        )));
                    }
                    match Column::named(name) {
                        Some(column) => columns.push(column),
                        None => unknown.push(name.to_owned()),
                    }
                }
                if !unknown.is_empty() {
                    return Err(ImportError::UnknownColumns {
                        input: self.name.clone(),
                        line: 1,
                        names: unknown,
                    });
                }
                if !columns.contains(&Column::Field("userId")) {
                    return Err(ImportError::Usage(format!(
                        "{}: line 1: no userId column; the header names {:?}",
                        self.name,
                        header.iter().collect::<Vec<_>>()
                    )));
                }
                Rows::Csv {
                    reader,
                    header,
                    columns,
                }
            }
            Format::Ndjson => Rows::Ndjson {
                lines: content,
                line: 0,
                input: self.name.clone(),
            },
        })
    }
}

/// The rows of a source, in order.
pub enum Rows {
    Csv {
        reader: csv::Reader<Box<dyn BufRead + Send>>,
        header: csv::StringRecord,
        columns: Vec<Column>,
    },
    Ndjson {
        lines: Box<dyn BufRead + Send>,
        line: u64,
        input: String,
    },
}

impl Rows {
    /// The CSV header row.
    pub fn header(&self) -> Option<&csv::StringRecord> {
        match self {
            Rows::Csv { header, .. } => Some(header),
            Rows::Ndjson { .. } => None,
        }
    }

    /// The next row: `Ok(None)` at the end; `Err` for a row that describes no
    /// user, or (`Fatal`) for a file that can no longer be read.
    pub fn next_row(&mut self) -> Result<Option<Result<Row, BadRow>>, ImportError> {
        match self {
            Rows::Csv {
                reader, columns, ..
            } => {
                let mut record = csv::StringRecord::new();
                match reader.read_record(&mut record) {
                    Ok(false) => Ok(None),
                    Ok(true) => {
                        let line = record.position().map_or(0, |position| position.line());
                        let mut user = pb::User::default();
                        for (column, cell) in columns.iter().zip(record.iter()) {
                            if let Err(message) = column.set_from_cell(&mut user, cell) {
                                return Ok(Some(Err(BadRow { line, message })));
                            }
                        }
                        Ok(Some(Ok(Row {
                            line,
                            raw: RawRow::Csv(record),
                            user,
                        })))
                    }
                    Err(error) => {
                        let line = error.position().map_or(0, |position| position.line());
                        match error.kind() {
                            csv::ErrorKind::Io(_) => Err(ImportError::file(
                                "the input",
                                io::Error::other(error.to_string()),
                            )),
                            _ => Ok(Some(Err(BadRow {
                                line,
                                message: csv_message(&error),
                            }))),
                        }
                    }
                }
            }
            Rows::Ndjson { lines, line, input } => loop {
                let mut text = String::new();
                let read = lines
                    .read_line(&mut text)
                    .map_err(|error| ImportError::file(input, error))?;
                if read == 0 {
                    return Ok(None);
                }
                *line += 1;
                let trimmed = text.trim_end_matches(['\n', '\r']);
                if trimmed.trim().is_empty() {
                    continue;
                }
                let parsed = match serde_json::from_str::<serde_json::Value>(trimmed) {
                    Ok(serde_json::Value::Object(object)) => object,
                    Ok(_) => {
                        return Ok(Some(Err(BadRow {
                            line: *line,
                            message: "not a JSON object".to_owned(),
                        })));
                    }
                    Err(error) => {
                        return Ok(Some(Err(BadRow {
                            line: *line,
                            message: format!("not JSON: {error}"),
                        })));
                    }
                };
                let unknown = columns::unknown_keys(&parsed);
                if !unknown.is_empty() {
                    return Err(ImportError::UnknownColumns {
                        input: input.clone(),
                        line: *line,
                        names: unknown,
                    });
                }
                return Ok(Some(
                    columns::user_from_object(&parsed)
                        .map(|user| Row {
                            line: *line,
                            raw: RawRow::Json(trimmed.to_owned()),
                            user,
                        })
                        .map_err(|message| BadRow {
                            line: *line,
                            message,
                        }),
                ));
            },
        }
    }
}

fn csv_message(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_owned(),
        _ => error.to_string(),
    }
}
