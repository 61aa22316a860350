//! The failed-rows file: every input row that ended REJECTED or FAILED at
//! some target, in the input's format, with its original columns (or keys)
//! and three more: `target`, `errorCode` and `errorMessage`. A row that
//! failed at several targets is written once, the three values joined with
//! `;` in the same order, so the fixed file can be fed back as it is: the
//! import ignores those three columns, and a target that had registered the
//! user answers ALREADY_EXISTS.

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

use super::{
    columns::ADDED_COLUMNS,
    source::{Format, RawRow},
};

/// Why one row failed at one target.
#[derive(Debug, Clone)]
pub struct Failure {
    pub target: String,
    pub code: String,
    pub message: String,
}

pub struct FailedRows {
    path: PathBuf,
    kind: Kind,
    written: u64,
}

enum Kind {
    Csv {
        writer: Box<csv::Writer<BufWriter<File>>>,
        /// The positions of the input's columns that are copied (not the three added ones).
        kept: Vec<usize>,
    },
    Ndjson(BufWriter<File>),
}

impl FailedRows {
    /// Creates (or truncates) `path`; `header` is the input's CSV header.
    pub fn create(
        path: &Path,
        format: Format,
        header: Option<&csv::StringRecord>,
    ) -> io::Result<FailedRows> {
        let file = BufWriter::new(File::create(path)?);
        let kind = match format {
            Format::Csv => {
                let header = header.cloned().unwrap_or_default();
                let kept: Vec<usize> = (0..header.len())
                    .filter(|&i| !ADDED_COLUMNS.contains(&&header[i]))
                    .collect();
                let mut writer = csv::Writer::from_writer(file);
                let mut names: Vec<&str> = kept.iter().map(|&i| &header[i]).collect();
                names.extend(ADDED_COLUMNS);
                writer.write_record(&names)?;
                Kind::Csv {
                    writer: Box::new(writer),
                    kept,
                }
            }
            Format::Ndjson => Kind::Ndjson(file),
        };
        Ok(FailedRows {
            path: path.to_owned(),
            kind,
            written: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn write(&mut self, raw: &RawRow, failures: &[Failure]) -> io::Result<()> {
        let join =
            |field: fn(&Failure) -> &str| failures.iter().map(field).collect::<Vec<_>>().join(";");
        let added = [join(|f| &f.target), join(|f| &f.code), join(|f| &f.message)];
        match (&mut self.kind, raw) {
            (Kind::Csv { writer, kept }, RawRow::Csv(record)) => {
                let mut fields: Vec<&str> =
                    kept.iter().map(|&i| record.get(i).unwrap_or("")).collect();
                fields.extend(added.iter().map(String::as_str));
                writer.write_record(&fields)?;
            }
            (Kind::Ndjson(file), RawRow::Json(line)) => {
                let mut object: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(line).unwrap_or_default();
                for (name, value) in ADDED_COLUMNS.iter().zip(added) {
                    object.insert((*name).to_owned(), serde_json::Value::String(value));
                }
                serde_json::to_writer(&mut *file, &object)?;
                file.write_all(b"\n")?;
            }
            _ => return Err(io::Error::other("a row of another format")),
        }
        self.written += 1;
        Ok(())
    }

    /// Flushes the file; removes it when it holds no row.
    pub fn finish(self) -> io::Result<Option<PathBuf>> {
        match self.kind {
            Kind::Csv { mut writer, .. } => writer.flush()?,
            Kind::Ndjson(mut file) => file.flush()?,
        }
        if self.written == 0 {
            std::fs::remove_file(&self.path)?;
            return Ok(None);
        }
        Ok(Some(self.path))
    }
}

/// Where failed rows go by default: beside the input, `users.csv(.gz)` ->
/// `users.failed.csv`; for stdin, `stdin.failed.EXT` in the current directory.
pub fn default_path(input: &str, format: Format) -> PathBuf {
    let extension = format.extension();
    if input == "-" {
        return PathBuf::from(format!("stdin.failed.{extension}"));
    }
    let path = Path::new(input);
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("import");
    let name = name.strip_suffix(".gz").unwrap_or(name);
    let stem = Path::new(name)
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or(name);
    path.with_file_name(format!("{stem}.failed.{extension}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_path_is_beside_the_input() {
        assert_eq!(
            default_path("data/users.csv.gz", Format::Csv),
            PathBuf::from("data/users.failed.csv")
        );
        assert_eq!(
            default_path("users.jsonl", Format::Ndjson),
            PathBuf::from("users.failed.ndjson")
        );
        assert_eq!(
            default_path("-", Format::Csv),
            PathBuf::from("stdin.failed.csv")
        );
    }

    #[test]
    fn a_csv_row_keeps_its_columns_and_replaces_earlier_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        let header = csv::StringRecord::from(vec!["userId", "errorCode", "displayName"]);
        let mut failed = FailedRows::create(&path, Format::Csv, Some(&header)).unwrap();
        let row = csv::StringRecord::from(vec!["u1", "old", "Ann"]);
        let failures = [
            Failure {
                target: "a".into(),
                code: "validation.required".into(),
                message: "m1".into(),
            },
            Failure {
                target: "b".into(),
                code: "x".into(),
                message: "m2".into(),
            },
        ];
        failed.write(&RawRow::Csv(row), &failures).unwrap();
        assert_eq!(failed.finish().unwrap(), Some(path.clone()));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "userId,displayName,target,errorCode,errorMessage\nu1,Ann,a;b,validation.required;x,m1;m2\n"
        );
    }

    #[test]
    fn an_empty_failed_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.ndjson");
        let failed = FailedRows::create(&path, Format::Ndjson, None).unwrap();
        assert_eq!(failed.finish().unwrap(), None);
        assert!(!path.exists());
    }
}
