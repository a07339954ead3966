//! The layering of ADR 0015, checked on the source: SQL dialects belong to
//! `src/store/`. Outside it no code names a database backend, a pool of one
//! database, a SQLite connection or a variant of `DbTx`; it writes SQL once
//! with `$n` placeholders and runs it through the store's executor
//! (`EventStore::execute` / `query_as`, `DbTx`). The one exception is the
//! recording worker's lease, a PostgreSQL advisory lock on a session of its
//! own (`src/recording/lease.rs`), which takes its connect options from the
//! store.

use std::path::Path;

const FORBIDDEN: &[&str] = &[
    "Backend::",
    ".backend()",
    "SqlitePool",
    "PgPool",
    "rusqlite",
    "DbTx::Sqlite",
    "DbTx::Postgres",
    "sqlx::Sqlite",
    "sqlx::Postgres",
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn sql_dialects_stay_inside_the_store() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut offences = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&root).unwrap();
        if relative.starts_with("store") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for word in FORBIDDEN {
                if code.contains(word) {
                    offences.push(format!("src/{}:{}: {word}", relative.display(), number + 1));
                }
            }
        }
    }
    assert!(files.len() > 40, "found only {} source files", files.len());
    assert!(offences.is_empty(), "SQL dialect code outside src/store/:\n{}", offences.join("\n"));
}
