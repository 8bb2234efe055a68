//! `stele demo`: the whole story on the embedded defaults, in a temporary
//! directory — append a realistic stream, prove one event offline, tamper
//! with the database the way an insider could, and watch `verify` name it.

use std::time::Instant;

use anyhow::anyhow;
use serde_json::{Value, json};
use stele_ledger::event::EventInput;
use stele_ledger::{ChainId, Keyring, Limits};
use stele_store::DbLocation;

use super::{anchor, init, proof, verify};
use crate::cli::{DemoArgs, InclusionArgs, InitArgs, ProofFormat, VerifyCommand, VerifyEventArgs};
use crate::config::Context;
use crate::error::Failure;
use crate::output;

const ACTORS: [&str; 6] = [
    "dr.chen@clinic.example",
    "j.okafor@clinic.example",
    "billing-svc@clinic.example",
    "m.rossi@clinic.example",
    "it-admin@clinic.example",
    "nurse.kim@clinic.example",
];

/// A deterministic, realistic stream: the mix of a small clinic's audit trail.
fn demo_event(i: usize) -> EventInput {
    // A small LCG keeps the stream varied but identical on every run.
    let r = (i as u64)
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407)
        >> 33;
    let actor = ACTORS[(r % ACTORS.len() as u64) as usize];
    let ip = format!("10.20.{}.{}", r % 16, r % 251);
    let (event_type, payload) = match r % 10 {
        0..=2 => (
            "user.login",
            json!({"ip": ip, "mfa": true, "user_agent": "Mozilla/5.0"}),
        ),
        3 => (
            "user.login_failed",
            json!({"ip": ip, "reason": "bad_password"}),
        ),
        4..=6 => (
            "record.viewed",
            json!({"record": format!("patient/{}", 40_000 + r % 9_000), "purpose": "treatment"}),
        ),
        7 => (
            "role.granted",
            json!({"user": ACTORS[((r / 7) % 6) as usize], "role": "billing-admin", "ticket": format!("CHG-{}", 1000 + r % 500)}),
        ),
        8 => (
            "config.changed",
            json!({"setting": "session_timeout_minutes", "old": 30, "new": 15}),
        ),
        _ => (
            "export.downloaded",
            json!({"report": "claims-2026-10.csv", "rows": 1000 + r % 2000}),
        ),
    };
    EventInput {
        event_type: event_type.into(),
        actor: Some(actor.into()),
        payload: Some(payload),
        idempotency_key: None,
    }
}

/// Starts a gateway on a free loopback port over the demo ledger, sends
/// the events through it with the Rust client (what any application
/// does), and stops it. Returns its address and the time the appends took.
async fn append_over_http(
    ctx: &Context,
    dir: &std::path::Path,
    keyring: &stele_ledger::Keyring,
    inputs: &[EventInput],
) -> Result<(String, std::time::Duration), Failure> {
    use stele_server::auth::{Scope, TokenFile, Tokens};
    // The demo makes all its own input: a failure here is never the user's (3).
    let failed = |e: &dyn std::fmt::Display| Failure::Operational(anyhow!("demo gateway: {e}"));
    let store = stele_store::Store::open(&ctx.db, stele_store::StoreOptions::default()).await?;
    let token_file = TokenFile::in_dir(dir);
    let (_, token) = token_file
        .create("demo", &[Scope::Append, Scope::Read], &["*".into()], "demo")
        .map_err(|e| failed(&e))?;
    let ledger = stele_server::Ledger {
        store,
        keyring: keyring.clone(),
        signer: ctx.keys().signer()?,
        verifier_key: ctx.keys().verifier_key()?,
        tokens: Tokens::load(token_file).map_err(|e| failed(&e))?,
        anchoring: None,
        verification: None,
    };
    let config = stele_server::ServerConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        ..stele_server::ServerConfig::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (bound, address) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(stele_server::serve(
        config,
        ledger,
        async {
            let _ = stopped.await;
        },
        move |addr| {
            let _ = bound.send(addr);
        },
    ));
    let url = match address.await {
        Ok(addr) => format!("http://{addr}"),
        Err(_) => {
            let why = match server.await {
                Ok(Err(e)) => e.to_string(),
                _ => "it stopped before listening".into(),
            };
            return Err(failed(&why));
        }
    };
    let client = stele_client::Client::new(&url, &token).map_err(|e| failed(&e))?;
    let started = Instant::now();
    for batch in inputs.chunks(250) {
        client
            .append("production", batch, &stele_client::AppendOptions::default())
            .await
            .map_err(|e| failed(&e))?;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(());
    server
        .await
        .map_err(|e| failed(&e))?
        .map_err(|e| failed(&e))?;
    Ok((url, elapsed))
}

fn step(n: usize, text: &str) -> Result<(), Failure> {
    output::print(&format!("\n== {n}. {text}\n"))
}

pub fn run(args: &DemoArgs, json: bool) -> Result<(), Failure> {
    output::mute(json);
    let result = narrate(args);
    output::mute(false);
    let summary = result?;
    if json {
        output::print_json(&summary)?;
    }
    Ok(())
}

/// Runs the story; returns a summary for `--json`.
fn narrate(args: &DemoArgs) -> Result<Value, Failure> {
    if args.events < 10 {
        return Err(Failure::Input(anyhow!("--events must be at least 10")));
    }
    let temp;
    let dir = match &args.keep {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_owned()
        }
    };
    let ctx = Context {
        data_dir: dir.clone(),
        db: DbLocation::Sqlite(dir.join("ledger.db")),
        db_source: crate::config::DbSource::Default,
        limits: Limits::default(),
        json: false,
        anchor_file: None,
        server_file: None,
    };
    let chain = ChainId::new("production")?;

    step(
        1,
        &format!(
            "Initialize a ledger in {} (embedded SQLite, new keys)",
            dir.display()
        ),
    )?;
    init::run(
        &ctx,
        &InitArgs {
            log_name: "stele.demo".into(),
            max_payload_bytes: Limits::DEFAULT_MAX_PAYLOAD_BYTES,
        },
    )?;

    step(
        2,
        &format!(
            "Start the gateway and append {} audit events to chain `production` over HTTP, in batches of 250",
            args.events
        ),
    )?;
    let keyring = ctx.keys().keyring()?;
    let inputs: Vec<EventInput> = (0..args.events).map(demo_event).collect();
    let rt = super::runtime()?;
    let (gateway, elapsed) = rt.block_on(append_over_http(&ctx, &dir, &keyring, &inputs))?;
    let store = rt.block_on(stele_store::Store::open(
        &ctx.db,
        stele_store::StoreOptions::default(),
    ))?;
    let head = rt
        .block_on(store.head(&chain))?
        .ok_or_else(|| Failure::Operational(anyhow!("chain vanished")))?;
    output::print(&format!(
        "appended {} events through the gateway at {gateway} in {:.0} ms, each acknowledged after a durable commit; head event_hash {}\n",
        head.size,
        elapsed.as_secs_f64() * 1000.0,
        stele_ledger::hex_hash(&head.head_hash)
    ))?;

    step(
        3,
        "Anchor it: a signed checkpoint of the tree, written create-only where the database owner cannot rewrite it",
    )?;
    output::print(
        "(stele writes anchors to an S3 bucket with Object Lock; the demo writes them to a local directory instead, which is NOT WORM storage)\n",
    )?;
    let anchor_dir = dir.join("anchors-not-worm");
    let signer = ctx.keys().signer()?;
    let policy = stele_anchorer::AnchorPolicy::default();
    let target = stele_worm::ObjectStore::Local(stele_worm::LocalDir::new(&anchor_dir));
    // The demo makes all its own input and settings: whatever fails from
    // here on is the machine's or a bug, never the user's to fix (3).
    let mut anchorer = stele_anchorer::Anchorer::new(store, &signer, &keyring, &policy)
        .map_err(|e| Failure::Operational(e.into()))?;
    let (record, report) = rt
        .block_on(async {
            let record = anchorer
                .build(
                    &chain,
                    stele_anchor::Trigger::Manual,
                    keyring.active().id().as_str(),
                    time::OffsetDateTime::now_utc(),
                )
                .await?;
            Ok::<_, stele_anchorer::AnchorerError>((
                record,
                anchorer.upload_pending(&target).await?,
            ))
        })
        .map_err(|e| Failure::Operational(e.into()))?;
    for r in &report.uploaded {
        output::print(&anchor::describe_upload(r))?;
    }
    let anchor_file = anchor_dir.join(&record.object_key);
    let anchored = stele_anchor::Anchor::from_bytes(&record.body)
        .map_err(|e| Failure::Operational(e.into()))?;
    output::print(&format!(
        "anchor #{} covers {} events, root {}, last event_hash {}; its checkpoint:\n{}",
        anchored.anchor_seq,
        anchored.tree_size,
        anchored.root_hash,
        anchored.last_hash.as_deref().unwrap_or("-"),
        anchored.checkpoint
    ))?;

    // The event an insider will later rewrite: a patient-record view.
    let target = (args.events * 3 / 5..args.events)
        .find(|&i| demo_event(i).event_type == "record.viewed")
        .unwrap_or(args.events / 2) as u64;
    let proof_path = dir.join(format!("event-{target}.tlog-proof"));
    step(
        4,
        &format!(
            "Hand out an offline inclusion proof for seq {target} and verify it with only the public key and the anchor"
        ),
    )?;
    proof::run(
        &ctx,
        &crate::cli::ProofCommand::Inclusion(InclusionArgs {
            chain: chain.to_string(),
            seq: target,
            tree_size: None,
            format: ProofFormat::TlogProof,
            output: Some(proof_path.clone()),
        }),
    )?;
    output::print(&format!("wrote {}\n", proof_path.display()))?;
    verify::run(
        &ctx,
        &VerifyCommand::Event(VerifyEventArgs {
            proof: proof_path.clone(),
            verifier_key: None,
            verifier_key_file: None,
            anchor: Some(anchor_file.display().to_string()),
            bucket: None,
        }),
    )?;

    step(
        5,
        "Verify the whole log: recompute canonical bytes, leaves, Merkle tree and HMAC chain",
    )?;
    let clean = verify_demo(&rt, &ctx, &chain, &keyring)?;
    output::print(&verify::describe(&clean))?;
    if !clean.is_clean() {
        return Err(Failure::Operational(anyhow!(
            "the untouched demo ledger did not verify; this is a bug"
        )));
    }

    step(
        6,
        &format!(
            "Tamper: an insider with database access rewrites seq {target} (the record viewed)"
        ),
    )?;
    let forged: Value = json!({"record": "patient/00001", "purpose": "treatment"});
    let sql =
        "UPDATE audit_events SET payload = ?1 WHERE chain_id = 'production' AND chain_index = ?2";
    output::print(&format!("sqlite> {sql}  -- payload = {forged}\n"))?;
    let conn = rusqlite::Connection::open(dir.join("ledger.db"))
        .map_err(|e| Failure::Operational(e.into()))?;
    let changed = conn
        .execute(sql, rusqlite::params![forged.to_string(), target as i64])
        .map_err(|e| Failure::Operational(e.into()))?;
    drop(conn);
    if changed != 1 {
        return Err(Failure::Operational(anyhow!(
            "the demo tamper did not change a row"
        )));
    }

    step(7, "Verify again")?;
    let tampered = verify_demo(&rt, &ctx, &chain, &keyring)?;
    output::print(&verify::describe(&tampered))?;
    output::print(
        "\nThe proof handed out in step 4 still proves the original content; the database now disagrees with it:\n",
    )?;
    verify::run(
        &ctx,
        &VerifyCommand::Event(VerifyEventArgs {
            proof: proof_path,
            verifier_key: None,
            verifier_key_file: None,
            anchor: Some(anchor_file.display().to_string()),
            bucket: None,
        }),
    )?;

    if tampered.first_bad_seq != Some(target) {
        return Err(Failure::Operational(anyhow!(
            "verification did not name seq {target} (named {:?}); this is a bug",
            tampered.first_bad_seq
        )));
    }
    output::print(&format!(
        "\nDemo complete: the edit to seq {target} was detected and named. {}\n",
        if args.keep.is_some() {
            format!("The ledger is kept in {}.", dir.display())
        } else {
            "The temporary ledger has been removed (use --keep DIR to keep it).".into()
        }
    ))?;
    Ok(json!({
        "events": args.events,
        "tampered_seq": target,
        "detected": true,
        "clean_report": clean,
        "tampered_report": tampered,
        "anchor": stele_anchorer::record_json(&record),
        "kept_in": args.keep,
    }))
}

/// Verifies the demo chain from a read-only store of its own.
fn verify_demo(
    rt: &tokio::runtime::Runtime,
    ctx: &Context,
    chain: &ChainId,
    keyring: &Keyring,
) -> Result<stele_ledger::verify::VerifyReport, Failure> {
    rt.block_on(async {
        let store = super::open_shared_read_only(ctx).await?;
        verify::verify_one(&store, chain, Some(keyring), false).await
    })
}
