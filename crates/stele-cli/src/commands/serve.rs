//! `stele serve` (the gateway) and `stele token`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::anyhow;
use serde_json::json;
use stele_server::auth::{AuthError, Scope, TokenFile, Tokens};
use stele_server::{ApiLimits, Ledger, ServeError, ServerConfig};
use stele_store::{Store, StoreOptions};

use super::check_writable;
use crate::cli::{ServeArgs, TokenCommand, TokenCreateArgs};
use crate::config::{Context, ServerFile};
use crate::error::Failure;
use crate::output;

pub fn run(ctx: &Context, args: &ServeArgs) -> Result<(), Failure> {
    // `stele serve` with no flags on a fresh machine: the embedded defaults
    // (the default data directory's SQLite ledger) are created first. A
    // ledger named with --db, or a directory with a config, is never
    // initialized here.
    if !ctx.config_path().exists() && ctx.db_source == crate::config::DbSource::Default {
        let made = super::init::initialize(
            ctx,
            &crate::cli::InitArgs {
                log_name: "stele.local".into(),
                max_payload_bytes: stele_ledger::Limits::DEFAULT_MAX_PAYLOAD_BYTES,
            },
        )?;
        eprintln!(
            "initialized a new ledger in {} (SQLite); verifier key, for auditors:\n  {}",
            ctx.data_dir.display(),
            made.verifier_key
        );
    }
    check_writable(ctx)?;
    let file = ctx.server_file.clone().unwrap_or_default();
    let config = server_config(ctx, args, &file)?;
    let keys = ctx.keys();
    let keyring = keys.keyring()?;
    let signer = keys.signer()?;
    let verifier_key = keys.verifier_key()?;
    let token_file = TokenFile::in_dir(&ctx.data_dir);
    // The first start makes one token (append and read on every chain) and
    // shows it once; after that, tokens are only made by `stele token create`.
    let first_token = if token_file.path().exists() {
        None
    } else {
        let (record, token) = token_file
            .create(
                "first-token",
                &[Scope::Append, Scope::Read],
                &["*".into()],
                &now_text(),
            )
            .map_err(token_failure)?;
        // Into a file only its owner can read, never onto stderr: a
        // server's stderr is its log, and secrets stay out of logs.
        let path = ctx.data_dir.join("first-token");
        write_private(&path, &format!("{token}\n"))?;
        eprintln!(
            "created {} (append and read on every chain) in {} (mode 0600); `stele token revoke {}` retires it",
            record.id,
            path.display(),
            record.id
        );
        Some(format!("$(cat {})", path.display()))
    };
    let tokens = Tokens::load(token_file).map_err(token_failure)?;
    let active_tokens = tokens.active();
    let options = StoreOptions {
        queue_capacity: file
            .commit_queue
            .unwrap_or(StoreOptions::default().queue_capacity),
        ..StoreOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Operational(anyhow!("cannot start the server runtime: {e}")))?;
    let keys = ctx.keys();
    let keyring_source: stele_server::anchoring::KeyringSource =
        std::sync::Arc::new(move || keys.keyring().map_err(|e| e.to_string()));
    let anchor_setup = anchor_target_setup(ctx)?;
    let anchoring = anchoring_setup(ctx, &runtime, keyring_source.clone(), &anchor_setup)?;
    let verification = verification_setup(ctx, &file, &runtime, keyring_source, &anchor_setup)?;
    let json_output = ctx.json;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let location = ctx.db.to_string();
    runtime.block_on(async move {
        let store = Store::open(&ctx.db, options).await?;
        let ledger = Ledger {
            store,
            keyring,
            signer,
            verifier_key,
            tokens,
            anchoring: Some(anchoring),
            verification: Some(verification),
        };
        let served = stele_server::serve(config, ledger, shutdown_signal(), |addr| {
            announce(
                scheme,
                addr,
                &location,
                active_tokens,
                first_token.as_deref(),
                json_output,
            );
        })
        .await;
        served.map_err(|e| match e {
            ServeError::Refused(_) => Failure::Input(e.into()),
            ServeError::Io { .. } => Failure::Operational(e.into()),
        })
    })?;
    eprintln!("stele gateway stopped: every acknowledged append is committed");
    Ok(())
}

/// Anchoring as `stele anchor run` would do it, inside the server: to the
/// configured bucket, else to `anchors/` in the data directory — which is
/// NOT WORM storage, and said so.
fn anchoring_setup(
    ctx: &Context,
    runtime: &tokio::runtime::Runtime,
    keyring: stele_server::anchoring::KeyringSource,
    setup: &crate::config::AnchorSetup,
) -> Result<stele_server::anchoring::AnchoringSetup, Failure> {
    let target = super::anchor::open_target(runtime, setup)?;
    Ok(stele_server::anchoring::AnchoringSetup {
        target,
        policy: setup.policy.clone(),
        chains: setup.chain.clone().map(|c| vec![c]),
        signer: ctx.keys().signer()?,
        keyring,
        lease_owner: Some(node_id(ctx)?),
    })
}

/// This data directory's node id (made once, kept in `node-id`): a gateway
/// restarted after a crash resumes the outbox leases its predecessor held
/// instead of waiting for them to expire.
fn node_id(ctx: &Context) -> Result<String, Failure> {
    let path = ctx.data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(format!("node-{}", id.trim())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Failure::Operational(anyhow!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    }
    let id = format!("{:016x}", rand::random::<u64>());
    std::fs::write(&path, format!("{id}\n"))
        .map_err(|e| Failure::Operational(anyhow!("cannot write {}: {e}", path.display())))?;
    Ok(format!("node-{id}"))
}

/// The anchor settings, with a local directory in place of a missing bucket.
fn anchor_target_setup(ctx: &Context) -> Result<crate::config::AnchorSetup, Failure> {
    let mut setup = ctx.anchor_setup(None, None)?;
    if setup.target.is_none() {
        let dir = ctx.data_dir.join("anchors");
        eprintln!(
            "warning: no anchor bucket configured: anchors go to {}, which is NOT WORM storage (set AUDIT_ANCHOR_BUCKET for an S3 bucket with Object Lock)",
            dir.display()
        );
        setup.target = Some(crate::config::AnchorTarget::Local(dir));
    }
    Ok(setup)
}

/// The scheduled verification: its interval, the anchor store to read the
/// newest anchors back from, and the signed webhook (a URL without a key is
/// refused: an unsigned result could be forged on the way).
fn verification_setup(
    ctx: &Context,
    file: &ServerFile,
    runtime: &tokio::runtime::Runtime,
    keyring: stele_server::anchoring::KeyringSource,
    anchors: &crate::config::AnchorSetup,
) -> Result<stele_server::verification::VerificationSetup, Failure> {
    let interval = Duration::from_secs(file.verify_interval_secs.unwrap_or(3600).max(1));
    let webhook = match &file.webhook_url {
        None => None,
        Some(url) => {
            let secret = match (
                std::env::var("STELE_WEBHOOK_SECRET")
                    .ok()
                    .filter(|s| !s.is_empty()),
                &file.webhook_secret_file,
            ) {
                (Some(secret), _) => secret.into_bytes(),
                (None, Some(path)) => {
                    let path = ctx.data_dir.join(path);
                    stele_keys::read_secret(&path)
                        .map_err(Failure::from)?
                        .trim()
                        .as_bytes()
                        .to_vec()
                }
                (None, None) => {
                    return Err(Failure::Input(anyhow!(
                        "[server] webhook_url is set but no key signs the results: set STELE_WEBHOOK_SECRET or webhook_secret_file"
                    )));
                }
            };
            Some(stele_server::verification::Webhook {
                url: url.clone(),
                secret,
            })
        }
    };
    // A second handle on the anchor store, for reading anchors back (its
    // checks and warnings were given when anchoring opened it).
    let anchor_store = match &anchors.target {
        Some(crate::config::AnchorTarget::S3(config)) => Some(stele_worm::ObjectStore::S3(
            runtime
                .block_on(stele_worm::S3Worm::connect(config.clone()))
                .map_err(|e| Failure::worm(e, crate::error::BucketSetting::Anchors))?,
        )),
        Some(crate::config::AnchorTarget::Local(dir)) => Some(stele_worm::ObjectStore::Local(
            stele_worm::LocalDir::new(dir),
        )),
        None => None,
    };
    Ok(stele_server::verification::VerificationSetup {
        db: ctx.db.clone(),
        interval,
        keyring,
        verifier_key: ctx.keys().verifier_key()?,
        anchor_store,
        anchor_prefix: anchors.policy.prefix.clone(),
        webhook,
    })
}

fn server_config(
    ctx: &Context,
    args: &ServeArgs,
    file: &ServerFile,
) -> Result<ServerConfig, Failure> {
    let listen_text = args
        .listen
        .clone()
        .or_else(|| file.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:7070".into());
    let listen: SocketAddr = listen_text.parse().map_err(|_| {
        Failure::Input(anyhow!(
            "listen address {listen_text:?} is not an address and port, e.g. 127.0.0.1:7070"
        ))
    })?;
    let defaults = ApiLimits::default();
    let limits = ApiLimits {
        max_request_bytes: file.max_request_bytes.unwrap_or(defaults.max_request_bytes),
        max_events_per_request: file
            .max_events_per_request
            .unwrap_or(defaults.max_events_per_request),
        event: ctx.limits,
        request_timeout: file
            .request_timeout_secs
            .map_or(defaults.request_timeout, Duration::from_secs),
        max_in_flight_appends: file
            .max_in_flight_appends
            .unwrap_or(defaults.max_in_flight_appends),
        max_in_flight_body_bytes: file
            .max_in_flight_body_bytes
            .unwrap_or(defaults.max_in_flight_body_bytes),
        max_anchor_backlog: file
            .max_anchor_backlog
            .unwrap_or(defaults.max_anchor_backlog),
        ..defaults
    };
    if limits.max_request_bytes == 0
        || limits.max_events_per_request == 0
        || limits.max_in_flight_appends == 0
        || limits.request_timeout < Duration::from_secs(3)
    {
        return Err(Failure::Input(anyhow!(
            "[server] max_request_bytes, max_events_per_request and max_in_flight_appends must be above 0, and request_timeout_secs at least 3"
        )));
    }
    // Else the largest body allowed could only be served alone.
    if limits.max_in_flight_body_bytes < limits.max_request_bytes {
        return Err(Failure::Input(anyhow!(
            "[server] max_in_flight_body_bytes ({}) is below max_request_bytes ({}): raise it, or lower max_request_bytes",
            limits.max_in_flight_body_bytes,
            limits.max_request_bytes
        )));
    }
    let tls = match (
        args.tls_cert.clone().or_else(|| file.tls_cert.clone()),
        args.tls_key.clone().or_else(|| file.tls_key.clone()),
    ) {
        (Some(cert), Some(key)) => Some(stele_server::TlsFiles {
            cert: ctx.data_dir.join(cert),
            key: ctx.data_dir.join(key),
        }),
        (None, None) => None,
        _ => {
            return Err(Failure::Input(anyhow!(
                "TLS needs both a certificate and its key (--tls-cert and --tls-key, or tls_cert and tls_key in [server])"
            )));
        }
    };
    Ok(ServerConfig {
        listen,
        allow_plain_http: args.allow_plain_http || file.allow_plain_http.unwrap_or(false),
        limits,
        tls,
    })
}

/// Says where the gateway listens and how to use it: on stderr for
/// people (with a ready-to-paste `curl`), one JSON line on stdout with `--json`.
fn announce(
    scheme: &str,
    addr: SocketAddr,
    location: &str,
    active_tokens: usize,
    first_token: Option<&str>,
    json_output: bool,
) {
    if json_output {
        let _ = output::print_json(&json!({
            "listening": format!("{scheme}://{addr}"),
            "ledger": location,
            "active_tokens": active_tokens,
        }));
    }
    let mut text = format!("stele gateway listening on {scheme}://{addr} (ledger {location})\n");
    if active_tokens == 0 {
        text.push_str(
            "no tokens yet: every request will get 401. Create one:\n  \
             export STELE_TOKEN=$(stele token create --name demo --scope append,read --chain '*')\n",
        );
    }
    let bearer = first_token.unwrap_or("$STELE_TOKEN");
    text.push_str(&format!(
        "append an event and get its proof:\n  curl -s -H \"Authorization: Bearer {bearer}\" \
         -H 'Content-Type: application/json' \\\n    -d '{{\"type\":\"user.login\",\"actor\":\"alice@example.com\",\"payload\":{{\"ip\":\"10.0.0.7\"}}}}' \\\n    \
         '{scheme}://{addr}/v1/chains/default/events?proof=true'\n"
    ));
    eprint!("{}", output::escape(&text));
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    eprintln!("stele gateway: stopping (finishing requests in progress)");
}

pub fn token(ctx: &Context, cmd: &TokenCommand) -> Result<(), Failure> {
    if !ctx.config_path().exists() {
        return Err(Failure::Input(anyhow!(
            "{} is not initialized: run `stele init` (or pass --data-dir)",
            ctx.data_dir.display()
        )));
    }
    let file = TokenFile::in_dir(&ctx.data_dir);
    let now = now_text();
    match cmd {
        TokenCommand::Create(args) => create(ctx, &file, args, &now),
        TokenCommand::List => {
            let records = file.list().map_err(token_failure)?;
            if ctx.json {
                return output::print_json(&json!({ "tokens": records }));
            }
            let mut text = String::new();
            for r in &records {
                text.push_str(&format!(
                    "{}  {:<24} scopes {:<18} chains {:<20} created {}{}\n",
                    r.id,
                    r.name,
                    r.scopes
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    r.chains.join(","),
                    r.created_at,
                    r.revoked_at
                        .as_ref()
                        .map(|t| format!("  REVOKED {t}"))
                        .unwrap_or_default()
                ));
            }
            if records.is_empty() {
                text.push_str("no tokens; `stele token create` makes one\n");
            }
            output::print_human(&text)
        }
        TokenCommand::Revoke(args) => {
            let record = file.revoke(&args.id, &now).map_err(token_failure)?;
            if ctx.json {
                return output::print_json(&json!({ "revoked": record }));
            }
            output::print_human(&format!(
                "revoked {} ({}); a running gateway refuses it within a second\n",
                record.id, record.name
            ))
        }
    }
}

fn create(
    ctx: &Context,
    file: &TokenFile,
    args: &TokenCreateArgs,
    now: &str,
) -> Result<(), Failure> {
    let scopes = args
        .scope
        .iter()
        .map(|s| Scope::parse(s.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(token_failure)?;
    let (record, token) = file
        .create(&args.name, &scopes, &args.chain, now)
        .map_err(token_failure)?;
    if ctx.json {
        return output::print_json(&json!({ "token": token, "record": record }));
    }
    eprintln!(
        "created {} ({}); the token is shown once, below, and only its hash is kept",
        record.id, record.name
    );
    output::print(&format!("{token}\n"))
}

/// Writes `text` to a new file only its owner can read.
fn write_private(path: &std::path::Path, text: &str) -> Result<(), Failure> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    options
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| Failure::Operational(anyhow!("cannot write {}: {e}", path.display())))
}

fn token_failure(e: AuthError) -> Failure {
    match e {
        AuthError::Invalid(_) | AuthError::UnknownId(_) => Failure::Input(e.into()),
        AuthError::File { .. } => Failure::Operational(e.into()),
    }
}

fn now_text() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
