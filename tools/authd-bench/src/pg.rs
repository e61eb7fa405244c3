//! The PostgreSQL side of `--store postgres`: a schema made for the run (so that a run never
//! touches other data in the database) and dropped at its end. The daemon is pointed at it
//! through the URL's `options` (`search_path`).

use anyhow::Context as _;

/// A schema of this run.
pub(crate) struct Schema {
    name: String,
    base: String,
    /// The database URL with `search_path` set to the schema.
    pub(crate) url: String,
}

fn execute(url: &str, sql: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .context("cannot connect to --database-url")?;
        let task = tokio::spawn(connection);
        client.batch_execute(sql).await?;
        drop(client);
        let _ = task.await;
        Ok(())
    })
}

impl Schema {
    pub(crate) fn create(url: &str) -> anyhow::Result<Schema> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("authd_bench_{}_{nanos}", std::process::id());
        execute(url, &format!("CREATE SCHEMA {name}"))?;
        let sep = if url.contains('?') { '&' } else { '?' };
        Ok(Schema {
            url: format!("{url}{sep}options=-c%20search_path%3D{name}"),
            name,
            base: url.to_string(),
        })
    }

    pub(crate) fn drop_schema(self) -> anyhow::Result<()> {
        execute(&self.base, &format!("DROP SCHEMA {} CASCADE", self.name))
    }
}
