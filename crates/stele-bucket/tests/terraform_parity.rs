//! The Terraform module and `stele bucket init` apply the same bucket policy.
//!
//! Terraform renders the policy with the module's own expressions (copied
//! from `deploy/terraform/modules/worm-bucket/main.tf` at test time, so a
//! change there is tested as it is) in a provider-less root module, which
//! `terraform init`/`apply` handle offline; the Rust renderer renders the same
//! templates; the two documents must agree statement by statement.
//!
//! Needs a `terraform` binary: `$STELE_TERRAFORM`, `terraform` on PATH, or
//! `<repo>/.tools/bin/terraform` (installed by `scripts/check-terraform.sh`,
//! which `scripts/test.sh` runs first). Without one the test fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use stele_bucket::policy::PolicyDocument;
use stele_bucket::template::{PolicyValues, render_policy};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The terraform command, or a failure that says how to get one.
fn terraform() -> Vec<String> {
    if let Ok(cmd) = std::env::var("STELE_TERRAFORM")
        && !cmd.trim().is_empty()
    {
        return cmd.split_whitespace().map(str::to_owned).collect();
    }
    let works = |cmd: &str| {
        Command::new(cmd)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works("terraform") {
        return vec!["terraform".into()];
    }
    let shim = repo().join(".tools/bin/terraform");
    if works(&shim.to_string_lossy()) {
        return vec![shim.to_string_lossy().into_owned()];
    }
    panic!(
        "no terraform binary: put one on PATH, set STELE_TERRAFORM, or run scripts/check-terraform.sh \
         (it installs one into {}); this test proves the module and `stele bucket init` render the same policy",
        shim.display()
    );
}

/// The module's `policy_base`, `policy_optional_statements` and `bucket_policy` locals, verbatim.
fn module_policy_locals() -> String {
    let path = repo().join("deploy/terraform/modules/worm-bucket/main.tf");
    let main = std::fs::read_to_string(&path).unwrap();
    let start = main.find("  policy_base = ").unwrap_or_else(|| {
        panic!(
            "{}: no `policy_base` local; update this test with the module",
            path.display()
        )
    });
    let end_marker = "  }))\n";
    let bucket_policy = main[start..].find("  bucket_policy = ").unwrap_or_else(|| {
        panic!(
            "{}: no `bucket_policy` local; update this test",
            path.display()
        )
    }) + start;
    let end = main[bucket_policy..].find(end_marker).unwrap_or_else(|| {
        panic!(
            "{}: `bucket_policy` changed shape; update this test",
            path.display()
        )
    }) + bucket_policy
        + end_marker.len();
    main[start..end].to_owned()
}

fn root_module(values: &PolicyValues) -> String {
    let policy_dir = repo().join("deploy/policy");
    let policy_dir = policy_dir.canonicalize().unwrap();
    // The module's locals read `var.restrict_uploads_to_writer`,
    // `local.policy_template_dir` and `local.policy_vars`.
    format!(
        r#"variable "restrict_uploads_to_writer" {{
  type = bool
}}

locals {{
  policy_template_dir = "{dir}"
  policy_vars = {{
    bucket_arn      = "{bucket}"
    kms_key_arn     = "{kms}"
    writer_role_arn = "{writer}"
  }}
{locals}}}

output "bucket_policy" {{
  value = local.bucket_policy
}}
"#,
        dir = policy_dir.display(),
        bucket = values.bucket_arn,
        kms = values.kms_key_arn,
        writer = values.writer_role_arn,
        locals = module_policy_locals(),
    )
}

fn run(tf: &[String], dir: &Path, args: &[&str]) -> String {
    let out = Command::new(&tf[0])
        .args(&tf[1..])
        .arg(format!("-chdir={}", dir.display()))
        .args(args)
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_IN_AUTOMATION", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "terraform {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The policy Terraform renders with the module's expressions.
fn terraform_policy(tf: &[String], values: &PolicyValues, restrict: bool) -> PolicyDocument {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.tf"), root_module(values)).unwrap();
    run(tf, dir.path(), &["init", "-input=false", "-no-color"]);
    run(
        tf,
        dir.path(),
        &[
            "apply",
            "-auto-approve",
            "-input=false",
            "-no-color",
            "-lock=false",
            &format!("-var=restrict_uploads_to_writer={restrict}"),
        ],
    );
    let outputs: serde_json::Value =
        serde_json::from_str(&run(tf, dir.path(), &["output", "-json"])).unwrap();
    let text = outputs["bucket_policy"]["value"]
        .as_str()
        .expect("bucket_policy is a string (jsonencode)");
    PolicyDocument::parse(text).unwrap()
}

fn assert_same(terraform: &PolicyDocument, rust: &PolicyDocument, case: &str) {
    assert_eq!(terraform.version, rust.version, "{case}: Version");
    assert_eq!(terraform.id, rust.id, "{case}: Id");
    let sids = |d: &PolicyDocument| -> Vec<String> {
        d.statements
            .iter()
            .map(|s| s.sid.clone().expect("every statement has a Sid"))
            .collect()
    };
    assert_eq!(
        sids(terraform),
        sids(rust),
        "{case}: the same statements in the same order"
    );
    for (sid, tf_stmt) in terraform.by_sid() {
        assert_eq!(
            Some(tf_stmt),
            rust.statement(sid),
            "{case}: statement {sid} differs"
        );
    }
}

#[test]
fn the_module_and_init_render_the_same_policy() {
    let tf = terraform();
    let cases = [
        (
            "AWS values",
            PolicyValues {
                bucket_arn: "arn:aws:s3:::stele-example-prod".into(),
                kms_key_arn:
                    "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
                        .into(),
                writer_role_arn: "arn:aws:iam::111122223333:role/stele-example-prod-writer".into(),
            },
        ),
        (
            "Ceph RGW values",
            PolicyValues {
                bucket_arn: "arn:aws:s3:::stele-test".into(),
                kms_key_arn: "stele-test-key-1".into(),
                writer_role_arn: "arn:aws:iam:::user/stele-other".into(),
            },
        ),
    ];
    for (name, values) in &cases {
        for restrict in [false, true] {
            let case = format!("{name}, restrict_uploads_to_writer = {restrict}");
            let rust =
                PolicyDocument::from_value(&render_policy(values, restrict).unwrap()).unwrap();
            let from_terraform = terraform_policy(&tf, values, restrict);
            assert_same(&from_terraform, &rust, &case);
            assert_eq!(
                rust.statements.len(),
                if restrict { 8 } else { 7 },
                "{case}"
            );
        }
    }
}
