//! `pulseboard`: every function's routes on one port (a local API Gateway), the table's
//! stream and the scheduler's tick delivered to the report worker (as Lambda does), an
//! embedded DynamoDB Local and S3 server with `--local`, `bootstrap` and `create-table`.

mod alert_bench;
mod bench_support;
mod cold_bench;
mod cost;
mod delay_bench;
mod local;
mod push_bench;
mod report_bench;
mod write_bench;

use clap::{Parser, Subcommand};
use platform::bootstrap::{bootstrap, NewCompany};
use platform::AppState;

#[derive(Parser)]
#[command(name = "pulseboard", about = "Pulseboard: KPI dashboards API", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every function's routes on 127.0.0.1:$PORT (default 3000).
    Serve {
        /// Also start DynamoDB Local and s3s-fs with data under .pulseboard/ and a local SES
        /// inbox (aws-ses-v2-local), create the table and bucket, and bootstrap a demo
        /// company on first start.
        #[arg(long)]
        local: bool,
        #[arg(long, env = "PORT", default_value_t = 3000)]
        port: u16,
        /// Seconds between the scheduler ticks sent to the report worker.
        #[arg(long, default_value_t = 60)]
        tick_seconds: u64,
    },
    /// Create a company with an admin user and an API key.
    Bootstrap {
        #[arg(long)]
        company: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: String,
        #[arg(long, default_value = "standard")]
        plan: String,
        #[arg(long)]
        daily_limit: Option<u64>,
        #[arg(long)]
        per_second_limit: Option<u64>,
        /// Print {"company_id","user_id","email","api_key"}.
        #[arg(long)]
        json: bool,
        /// Use the local stack a running `pulseboard serve --local` started (found through
        /// .pulseboard/stack.json) instead of the AWS SDK's environment.
        #[arg(long)]
        local: bool,
        /// Create the table and bucket when they are missing. Without it, bootstrap creates
        /// nothing against real AWS (deploy with sam); a local endpoint is always set up.
        #[arg(long)]
        create_storage: bool,
    },
    /// Create the table and bucket exactly as template.yaml defines them.
    CreateTable,
    /// Serve an S3-protocol store over a directory (the s3s-fs server, built in), as the
    /// local stack's S3; requests must be signed with the given key pair.
    S3Server {
        /// The directory that holds the buckets (one subdirectory each).
        #[arg(long)]
        root: std::path::PathBuf,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long)]
        port: u16,
        #[arg(long)]
        access_key: String,
        #[arg(long)]
        secret_key: String,
    },
    /// Measure an authenticated, rate-limited read against one DynamoDB round trip, the
    /// report worker's work for 6 Klips over 100,000 rows, data pushes under a mixed load,
    /// round trips under an injected delay, a write's admission in one round trip or two, and a
    /// function's cold start.
    Bench {
        #[arg(long, default_value_t = 300)]
        requests: usize,
        /// Seconds of mixed load per source size in the push part (0 skips it).
        #[arg(long, default_value_t = 20)]
        push_seconds: u64,
        /// Run only these parts (local, report, push, delay, writes, alerts, cold); all when not
        /// given.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
}

fn main() {
    // A debug build's async frames are large (each layer's future laid out on the stack
    // while polled): room beyond the 2 MiB default, which costs nothing until used.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 << 20)
        .build()
        .expect("a tokio runtime");
    runtime.block_on(start());
}

async fn start() {
    platform::memory::configure();
    let cli = Cli::parse();
    // A benchmark's servers would log a line per request: warnings only there. The local
    // stack's first start finds no table or bucket and DynamoDB Local has no backups: the
    // warm-up's and create-table's lines about that (info) are expected there, not news;
    // `ensure_storage` says what it does in words instead.
    platform::init_tracing_at(match cli.command {
        Command::Bench { .. } => "warn",
        Command::Serve { local: true, .. } => "info,platform::store=warn,platform::table=warn",
        _ => "info",
    });
    if let Err(message) = run(cli).await {
        eprintln!("pulseboard: {message}");
        std::process::exit(1);
    }
}

/// Creates the table and bucket when missing, saying so in one line each.
async fn ensure_storage(state: &AppState) -> Result<(), String> {
    use std::io::Write;
    if !state.store.table_exists().await? {
        eprint!("creating table {}… ", state.store.table());
        let _ = std::io::stderr().flush();
        state.store.create_table().await?;
        eprintln!("done");
    }
    if state.store.create_bucket().await? {
        eprintln!("created bucket {}", state.store.bucket());
    }
    Ok(())
}

/// SIGINT (Ctrl-C, or `kill -INT` of this process alone) and SIGTERM, listened to from the
/// start: a signal during start-up stops the local stack as cleanly as one later. Answers
/// how many have arrived so far, as a watch.
fn stop_signals() -> Result<tokio::sync::watch::Receiver<u32>, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| format!("listening for SIGINT: {e}"))?;
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| format!("listening for SIGTERM: {e}"))?;
    let (tx, rx) = tokio::sync::watch::channel(0u32);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            tx.send_modify(|n| *n += 1);
        }
    });
    Ok(rx)
}

/// Resolves once `signals` has counted `n` signals.
async fn signalled(mut signals: tokio::sync::watch::Receiver<u32>, n: u32) {
    let _ = signals.wait_for(|count| *count >= n).await;
}

/// What `serve --local` prints once it answers: where, who, and where it all lives.
fn started_block(url: &str, stack: &local::LocalStack, demo: &local::Demo) -> String {
    let data = stack.dir().display();
    let pid = std::process::id();
    format!(
        "
────────────────────────────────────────────────────────────────────────
 Pulseboard is running: {url}
 admin login  {email} / {password}   (POST {url}auth/login)
 API key      {key}   (header kf-api-key)
 try          curl -H 'kf-api-key: {key}' {url}profile
 mail         {inbox}   (local SES inbox; sent mail as JSON: GET {inbox}store)
 data         {data}/ (DynamoDB Local, S3 files, their logs; make clean-local deletes it)
 demo company {company}; its id, email and API key are kept in {file}
 stop         Ctrl-C, or kill -INT {pid} (or -TERM): stops DynamoDB Local, S3 and SES too
────────────────────────────────────────────────────────────────────────
",
        email = demo.email,
        password = demo.password,
        key = demo.api_key,
        company = demo.company_id,
        file = demo.file.display(),
        inbox = stack.inbox_url(),
    )
}

/// `serve`: the API on `port` until a signal (with `local`, the local stack around it), the
/// table's stream and the scheduler's tick delivered to the report worker meanwhile.
async fn serve_command(local: bool, port: u16, tick_seconds: u64) -> Result<(), String> {
    let signals = stop_signals()?;
    let stopped = || signalled(signals.clone(), 1);
    // Start-up, unless a signal comes first: then whatever has started is stopped
    // (a half-started stack's children are killed as its handles drop).
    let started = tokio::select! {
        started = start_serving(local, port) => started?,
        _ = stopped() => {
            eprintln!("stopped while starting");
            return Ok(());
        }
    };
    let (state, stack, listener, block) = started;
    if let Some(block) = block {
        eprintln!("{block}");
    }
    // The event-driven half, as Lambda delivers it on AWS: the table's stream and
    // the scheduler's tick, to the report worker.
    let stream = tokio::spawn(pulseboard_cli::events::deliver_stream(state.clone()));
    let ticks = tokio::spawn(pulseboard_cli::events::tick_every(
        state.clone(),
        std::time::Duration::from_secs(tick_seconds.max(1)),
    ));
    let served = serve(state, listener, signals).await;
    stream.abort();
    ticks.abort();
    if let Some(stack) = stack {
        stack.stop().await;
    }
    served
}

/// Where `bootstrap` creates its company and how it answers: `--json`, `--local`,
/// `--create-storage`.
struct BootstrapOptions {
    json: bool,
    local: bool,
    create_storage: bool,
}

/// `bootstrap`: creates `company` (with its admin and API key) and prints them.
async fn bootstrap_command(company: NewCompany, options: BootstrapOptions) -> Result<(), String> {
    if options.local {
        let stack = local::running_stack().ok_or(
            "no local stack is running here: start one with `make run` (pulseboard serve --local) in this directory",
        )?;
        local::use_stack(&stack);
    }
    let state = AppState::from_env().await?;
    let local_endpoint = std::env::var_os("AWS_ENDPOINT_URL_DYNAMODB").is_some();
    if local_endpoint || options.create_storage {
        ensure_storage(&state).await?;
    } else if !state.store.table_exists().await? {
        return Err(format!(
            "table {} does not exist in this AWS account and region; deploy the stack (sam deploy), pass --local to use `make run`'s local stack, or --create-storage to create it here",
            state.store.table()
        ));
    }
    let made = bootstrap(&state, company)
        .await
        .map_err(|e| e.to_string())?;
    if options.json {
        println!(
            "{}",
            serde_json::to_string(&made).map_err(|e| e.to_string())?
        );
    } else {
        println!(
            "company {}\nuser    {} ({})\napi key {}",
            made.company_id, made.user_id, made.email, made.api_key
        );
    }
    Ok(())
}

/// `bench`: the parts named in `only` (all when empty), in their order.
async fn bench_command(requests: usize, push_seconds: u64, only: &[String]) -> Result<(), String> {
    const PARTS: [&str; 7] = [
        "local", "report", "push", "delay", "writes", "alerts", "cold",
    ];
    if let Some(unknown) = only.iter().find(|p| !PARTS.contains(&p.as_str())) {
        return Err(format!(
            "--only {unknown}: the parts are {}",
            PARTS.join(", ")
        ));
    }
    let part = |name: &str| only.is_empty() || only.iter().any(|p| p == name);
    if part("local") {
        local::bench(requests).await?;
    }
    if part("report") {
        report_bench::run()?;
    }
    if part("push") && push_seconds > 0 {
        push_bench::run(push_seconds).await?;
    }
    if part("delay") {
        delay_bench::run().await?;
    }
    if part("writes") {
        write_bench::run().await?;
    }
    if part("alerts") {
        alert_bench::run().await?;
    }
    if part("cold") {
        cold_bench::run().await?;
    }
    Ok(())
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve {
            local,
            port,
            tick_seconds,
        } => serve_command(local, port, tick_seconds).await,
        Command::Bootstrap {
            company,
            email,
            password,
            plan,
            daily_limit,
            per_second_limit,
            json,
            local,
            create_storage,
        } => {
            let company = NewCompany {
                company,
                email,
                password,
                plan,
                daily_limit,
                per_second_limit,
            };
            let options = BootstrapOptions {
                json,
                local,
                create_storage,
            };
            bootstrap_command(company, options).await
        }
        Command::S3Server {
            root,
            host,
            port,
            access_key,
            secret_key,
        } => pulseboard_cli::s3_server::run(root, &host, port, access_key, secret_key).await,
        Command::CreateTable => {
            let state = AppState::from_env().await?;
            ensure_storage(&state).await
        }
        Command::Bench {
            requests,
            push_seconds,
            only,
        } => bench_command(requests, push_seconds, &only).await,
    }
}

type Started = (
    AppState,
    Option<local::LocalStack>,
    pulseboard_cli::listener::JsonErrorListener,
    Option<String>,
);

/// `serve`'s start-up: the local stack (with `--local`), the state, the table, bucket and
/// demo company (local), and the listener; with `--local` also the block to print.
async fn start_serving(local: bool, port: u16) -> Result<Started, String> {
    let stack = if local {
        Some(local::LocalStack::start().await?)
    } else {
        None
    };
    // From here on an error stops the stack before it is answered.
    let rest = async {
        let state = AppState::from_env().await?;
        let demo = match &stack {
            Some(stack) => {
                ensure_storage(&state).await?;
                Some(stack.demo_company(&state).await?)
            }
            None => None,
        };
        let listener = pulseboard_cli::listener::JsonErrorListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
        Ok::<_, String>((state, demo, listener))
    };
    match rest.await {
        Ok((state, demo, listener)) => {
            let url = format!("http://127.0.0.1:{port}/api/v1/");
            eprintln!("pulseboard listening on {url}");
            let block = match (&stack, &demo) {
                (Some(stack), Some(demo)) => Some(started_block(&url, stack, demo)),
                _ => None,
            };
            Ok((state, stack, listener, block))
        }
        Err(e) => {
            if let Some(stack) = stack {
                stack.stop().await;
            }
            Err(e)
        }
    }
}

/// Serves until the first signal, then lets requests in flight finish; a second signal, or
/// 10 s, stops it without waiting for them.
async fn serve(
    state: AppState,
    listener: pulseboard_cli::listener::JsonErrorListener,
    signals: tokio::sync::watch::Receiver<u32>,
) -> Result<(), String> {
    let first = signalled(signals.clone(), 1);
    let server =
        axum::serve(listener, pulseboard_cli::all_routes(state)).with_graceful_shutdown(async {
            first.await;
            eprintln!("stopping");
        });
    let server = std::future::IntoFuture::into_future(server);
    let impatient = async {
        signalled(signals.clone(), 1).await;
        tokio::select! {
            _ = signalled(signals, 2) => eprintln!("a second signal: stopping now"),
            _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => {
                eprintln!("requests still open after 10 s: stopping now")
            }
        }
    };
    tokio::select! {
        served = server => served.map_err(|e| e.to_string()),
        _ = impatient => Ok(()),
    }
}
