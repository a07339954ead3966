//! Hidden developer tools of the `eventuall` binary, used by tests and
//! benchmarks that need a separate process (e.g. the `kill -9` test).

use std::io::Write;

use clap::Subcommand;

use crate::store::{EventStore, ExpectedVersion, Metadata, NewEvent, StoreOptions, StreamId};

#[derive(Subcommand)]
pub enum Tool {
    /// Appends small events from concurrent writers forever, printing the id
    /// of every acknowledged event on its own line (flushed), until killed.
    AppendLoad {
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 16)]
        streams: usize,
    },
}

impl Tool {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Tool::AppendLoad { database_url, streams } => append_load(&database_url, streams).await,
        }
    }
}

async fn append_load(database_url: &str, streams: usize) -> anyhow::Result<()> {
    let store = EventStore::open(database_url, StoreOptions::default()).await?;
    let (acks, mut acked) = tokio::sync::mpsc::unbounded_channel();
    for s in 0..streams {
        let store = store.clone();
        let acks = acks.clone();
        tokio::spawn(async move {
            let stream = StreamId::of("load", &format!("s{s}"));
            for n in 0u64.. {
                let event = NewEvent::new("Loaded", "1", format!("{{\"n\":{n}}}"), Metadata::by("load"));
                let id = event.event_id;
                if store.append(&stream, ExpectedVersion::Any, vec![event]).await.is_err() {
                    return;
                }
                if acks.send(id).is_err() {
                    return;
                }
            }
        });
    }
    drop(acks);
    let mut stdout = std::io::stdout().lock();
    while let Some(id) = acked.recv().await {
        writeln!(stdout, "{id}")?;
        stdout.flush()?;
    }
    Ok(())
}
