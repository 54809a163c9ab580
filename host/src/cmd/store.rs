//! `healer store init` and `healer incidents list|show|stats` against the
//! configured store (`--store sqlite|dynamodb` or `HEALER_STORE`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};
use healer::incident::IncidentId;
use healer::safety::KillSwitch;
use healer::store::{GroupBy, IncidentRecord, ListFilter, Store, StoreConfig};

/// Which backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// One SQLite file in the data dir (default).
    Sqlite,
    /// DynamoDB tables; the client honours AWS_REGION, AWS_ENDPOINT_URL and the credentials chain.
    Dynamodb,
}

/// Where the store is.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Store backend.
    #[arg(
        long = "store",
        env = "HEALER_STORE",
        value_enum,
        default_value = "sqlite"
    )]
    backend: Backend,
    /// Data directory of the SQLite store [default: $HEALER_DATA_DIR, else ~/.local/share/healer].
    #[arg(long, env = "HEALER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// DynamoDB table name prefix.
    #[arg(long, env = "HEALER_TABLE_PREFIX", default_value = "healer")]
    table_prefix: String,
}

impl StoreArgs {
    /// The data directory: `--data-dir`, else `~/.local/share/healer`.
    pub fn data_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.data_dir {
            Some(d) => Ok(d.clone()),
            None => std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".local/share/healer"))
                .context("set --data-dir or HEALER_DATA_DIR (HOME is unset)"),
        }
    }

    /// The store configuration these arguments name.
    pub fn config(&self) -> anyhow::Result<StoreConfig> {
        Ok(match self.backend {
            Backend::Sqlite => StoreConfig::Sqlite {
                path: self.data_dir()?.join("healer.db"),
            },
            Backend::Dynamodb => StoreConfig::Dynamodb {
                table_prefix: self.table_prefix.clone(),
            },
        })
    }

    /// Opens the store these arguments name.
    pub async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        Ok(self.config()?.open().await?)
    }
}

/// `healer store …`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Create the tables (or run migrations). Idempotent.
    Init(StoreArgs),
    /// Set the store's kill-switch flag, which every replica's governor reads:
    /// `on` denies every mutating step, `off` lifts it.
    KillSwitch {
        /// `on` or `off`.
        state: SwitchState,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// The kill switch's two states, as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SwitchState {
    /// Deny every mutating step.
    On,
    /// Lift the switch.
    Off,
}

impl From<SwitchState> for KillSwitch {
    fn from(s: SwitchState) -> Self {
        match s {
            SwitchState::On => KillSwitch::On,
            SwitchState::Off => KillSwitch::Off,
        }
    }
}

/// `healer incidents …`.
#[derive(Debug, Subcommand)]
pub enum IncidentsCommand {
    /// List incidents, newest first.
    List(ListArgs),
    /// Show one incident's whole record as JSON.
    Show {
        /// Incident id (`inc-…`).
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Counts and MTTR (mean, p50, p90, max).
    Stats(StatsArgs),
}

/// Arguments of `incidents list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only open incidents.
    #[arg(long)]
    open: bool,
    /// Only this kind (e.g. task-crashed).
    #[arg(long)]
    kind: Option<String>,
    /// Only incidents detected since (RFC 3339).
    #[arg(long)]
    since: Option<DateTime<Utc>>,
    /// Most rows.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

/// Arguments of `incidents stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Grouping.
    #[arg(long, value_enum, default_value = "kind")]
    by: GroupBy,
    /// Only incidents detected since (RFC 3339).
    #[arg(long)]
    since: Option<DateTime<Utc>>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Runs `store …`.
pub fn run_store(cmd: StoreCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        match cmd {
            StoreCommand::Init(args) => {
                let store = args.open().await?;
                store.init().await?;
                println!("store ready: {:?}", args.config()?);
            }
            StoreCommand::KillSwitch { state, store } => {
                let store = store.open().await?;
                let state = KillSwitch::from(state);
                healer::safety::set_kill_switch(store.as_ref(), state).await?;
                println!("kill switch {}", state.as_str());
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn row(r: &IncidentRecord) -> String {
    let mttr = r
        .mttr_ms
        .map_or_else(|| "-".to_owned(), |m| format!("{:.1}s", m as f64 / 1000.0));
    format!(
        "{:<38} {:<25} {:<10} {:<20} {:>8}  {}",
        r.incident.id,
        r.incident.kind.as_str(),
        r.state.as_str(),
        r.incident.detected_at.format("%Y-%m-%dT%H:%M:%SZ"),
        mttr,
        r.incident.resource.id
    )
}

/// Runs `incidents …`.
pub fn run_incidents(cmd: IncidentsCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        match cmd {
            IncidentsCommand::List(a) => {
                let kind = a.kind.as_deref().map(super::incident_kind).transpose()?;
                let filter = ListFilter {
                    open: a.open,
                    kind,
                    since: a.since,
                };
                let store = a.store.open().await?;
                let mut token: Option<String> = None;
                let mut shown = 0;
                if !a.json {
                    println!(
                        "{:<38} {:<25} {:<10} {:<20} {:>8}  RESOURCE",
                        "ID", "KIND", "STATE", "DETECTED", "MTTR"
                    );
                }
                while shown < a.limit {
                    let page = store
                        .list(&filter, token.as_deref(), a.limit - shown)
                        .await?;
                    for r in &page.items {
                        if a.json {
                            println!("{}", serde_json::to_string(r)?);
                        } else {
                            println!("{}", row(r));
                        }
                    }
                    shown += page.items.len();
                    match page.next {
                        Some(t) => token = Some(t),
                        None => break,
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            IncidentsCommand::Show { id, store } => {
                let store = store.open().await?;
                let id = IncidentId::from_stored(&id);
                match store.get(&id).await? {
                    Some(r) => {
                        println!("{}", serde_json::to_string_pretty(&r)?);
                        Ok(ExitCode::SUCCESS)
                    }
                    None => anyhow::bail!("incident {id} not found"),
                }
            }
            IncidentsCommand::Stats(a) => {
                let store = a.store.open().await?;
                let stats = store.stats(a.by, a.since).await?;
                if a.json {
                    println!("{}", serde_json::to_string_pretty(&stats)?);
                } else {
                    println!(
                        "{:<26} {:>6} {:>7} {:>5} {:>10} {:>10} {:>10} {:>10}",
                        "KEY", "COUNT", "HEALED", "OPEN", "MEAN", "P50", "P90", "MAX"
                    );
                    let secs = |v: Option<f64>| {
                        v.map_or_else(|| "-".to_owned(), |m| format!("{:.1}s", m / 1000.0))
                    };
                    for r in &stats.rows {
                        println!(
                            "{:<26} {:>6} {:>7} {:>5} {:>10} {:>10} {:>10} {:>10}",
                            r.key,
                            r.count,
                            r.healed,
                            r.open,
                            secs(r.mttr_mean_ms),
                            secs(r.mttr_p50_ms.map(|v| v as f64)),
                            secs(r.mttr_p90_ms.map(|v| v as f64)),
                            secs(r.mttr_max_ms.map(|v| v as f64)),
                        );
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
