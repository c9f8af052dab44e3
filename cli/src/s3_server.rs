//! `pulseboard s3-server`: the s3s-fs S3 server (a real S3 protocol implementation over a
//! directory, checking SigV4 signatures), built into the `pulseboard` binary from the
//! `s3s-fs` library crate instead of a separate `cargo install`. It is the same server the
//! `s3s-fs` binary runs (its `main` is these lines), so the local stack and the tests need
//! nothing but the workspace build; `serve --local` and `scripts/local-stack.sh` start it as
//! a child process.

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use std::path::PathBuf;

/// Serves `root` on `host:port` until Ctrl-C or SIGTERM; requests must be signed with
/// `access_key`/`secret_key`.
pub async fn run(
    root: PathBuf,
    host: &str,
    port: u16,
    access_key: String,
    secret_key: String,
) -> Result<(), String> {
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let fs = s3s_fs::FileSystem::new(&root).map_err(|e| format!("{}: {e:?}", root.display()))?;
    let service = {
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(access_key, secret_key));
        builder.build()
    };
    let listener = tokio::net::TcpListener::bind((host, port))
        .await
        .map_err(|e| format!("cannot listen on {host}:{port}: {e}"))?;
    eprintln!(
        "s3s-fs serving {} on http://{}",
        root.display(),
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let http = ConnBuilder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut stop = std::pin::pin!(crate::stop_signal());
    loop {
        let socket = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection");
                    continue;
                }
            },
            _ = stop.as_mut() => break,
        };
        let conn = http.serve_connection(TokioIo::new(socket), service.clone());
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
    }
    Ok(())
}
