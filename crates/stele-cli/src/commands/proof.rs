//! `stele proof inclusion|consistency` and `stele checkpoint`.

use anyhow::Context as _;
use serde_json::json;
use signed_note::Signer as _;
use stele_anchorer::{CheckedRoot, RootWanted, TreeChecker};
use stele_ledger::canonical::event_canonical_bytes;
use stele_ledger::checkpoint::{self, TlogProof};
use stele_ledger::hashing::leaf_hash;
use stele_ledger::{ChainId, hex_hash};
use stele_store::Store;

use super::{chain_id, open_shared_read_only};
use crate::cli::{CheckpointArgs, ConsistencyArgs, InclusionArgs, ProofCommand, ProofFormat};
use crate::config::Context;
use crate::error::Failure;
use crate::output;

pub fn run(ctx: &Context, cmd: &ProofCommand) -> Result<(), Failure> {
    match cmd {
        ProofCommand::Inclusion(args) => inclusion(ctx, args),
        ProofCommand::Consistency(args) => consistency(ctx, args),
    }
}

/// A checked root of `chain` (`stele_anchorer::TreeChecker`: the events
/// since the last anchor this ledger's key signed are recomputed first,
/// with the HMAC keys), so nothing rewritten in the database is signed.
async fn checked_root(
    ctx: &Context,
    store: &Store,
    chain: &ChainId,
    wanted: RootWanted,
) -> Result<CheckedRoot, Failure> {
    let keys = ctx.keys();
    let checker = TreeChecker::new(store.clone(), keys.keyring()?, keys.verifier_key()?);
    Ok(checker.root(chain, wanted).await?)
}

/// Signs a checkpoint of `chain` over a checked root with this data dir's
/// signing key.
fn signed_checkpoint(
    ctx: &Context,
    chain: &ChainId,
    checked: CheckedRoot,
) -> Result<String, Failure> {
    let signer = ctx.keys().signer()?;
    let origin = checkpoint::origin(signer.name(), chain);
    // The origin, size and root come from the ledger and the key from
    // `keys()`, all already checked: a signing failure is not the user's.
    checkpoint::sign(&origin, checked.size(), checked.root(), &signer)
        .map_err(|e| Failure::Operational(e.into()))
}

fn inclusion(ctx: &Context, args: &InclusionArgs) -> Result<(), Failure> {
    let chain = chain_id(&args.chain)?;
    let (root, proof, event) = super::runtime()?.block_on(async {
        let store = open_shared_read_only(ctx).await?;
        let wanted = args
            .tree_size
            .map_or(RootWanted::Holding(args.seq), RootWanted::Size);
        let root = checked_root(ctx, &store, &chain, wanted).await?;
        // The proof and the event it proves, from one snapshot.
        let mut snapshot = store.read_snapshot().await?;
        let (_, _, proof) = snapshot
            .inclusion_proof(&chain, args.seq, Some(root.size()))
            .await?;
        let event = snapshot.event(&chain, args.seq).await?;
        snapshot.end().await?;
        Ok::<_, Failure>((root, proof, event))
    })?;
    let canonical = event_canonical_bytes(&event)?;
    let leaf = leaf_hash(&canonical);
    root.check_inclusion(&chain, args.seq, leaf, &proof)?;
    let (size, checkpoint) = (root.size(), signed_checkpoint(ctx, &chain, root)?);
    let text = match args.format {
        ProofFormat::TlogProof => TlogProof {
            extra: Some(canonical),
            index: args.seq,
            hashes: proof,
            checkpoint,
        }
        .to_text(),
        ProofFormat::Json => {
            let body = json!({
                "chain_id": chain.as_str(),
                "seq": args.seq,
                "tree_size": size,
                "root_hash": hex_hash(&root.root()),
                "leaf_hash": hex_hash(&leaf),
                "proof": proof.iter().map(hex_hash).collect::<Vec<_>>(),
                "canonical_event": String::from_utf8_lossy(&canonical),
                "event": event,
                "checkpoint": checkpoint,
            });
            format!(
                "{}\n",
                serde_json::to_string_pretty(&body).map_err(|e| Failure::Operational(e.into()))?
            )
        }
    };
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))
            .map_err(Failure::Operational),
        None => output::print(&text),
    }
}

fn consistency(ctx: &Context, args: &ConsistencyArgs) -> Result<(), Failure> {
    let chain = chain_id(&args.chain)?;
    let (from_root, to_root, proof) = super::runtime()?.block_on(async {
        let store = open_shared_read_only(ctx).await?;
        Ok::<_, Failure>(store.consistency_proof(&chain, args.from, args.to).await?)
    })?;
    let body = json!({
        "chain_id": chain.as_str(),
        "from_size": args.from,
        "from_root": hex_hash(&from_root),
        "to_size": args.to,
        "to_root": hex_hash(&to_root),
        "proof": proof.iter().map(hex_hash).collect::<Vec<_>>(),
    });
    // The proof is only meaningful as data, so it is JSON with or without --json.
    output::print(&format!(
        "{}\n",
        serde_json::to_string_pretty(&body).map_err(|e| Failure::Operational(e.into()))?
    ))
}

pub fn checkpoint(ctx: &Context, args: &CheckpointArgs) -> Result<(), Failure> {
    let chain = chain_id(&args.chain)?;
    let checked = super::runtime()?.block_on(async {
        let store = open_shared_read_only(ctx).await?;
        let wanted = args.tree_size.map_or(RootWanted::Head, RootWanted::Size);
        checked_root(ctx, &store, &chain, wanted).await
    })?;
    let (size, root) = (checked.size(), checked.root());
    let note = signed_checkpoint(ctx, &chain, checked)?;
    if ctx.json {
        let signer = ctx.keys().signer()?;
        output::print_json(&json!({
            "origin": checkpoint::origin(signer.name(), &chain),
            "tree_size": size,
            "root_hash": hex_hash(&root),
            "checkpoint": note,
        }))
    } else {
        output::print(&note)
    }
}
