//! IAM wildcard matching (`*`, `?`) of live policy actions and resources:
//! the first line is the pattern, the rest the text. Must never panic and
//! must stay fast (libFuzzer's -timeout catches backtracking blow-ups), and
//! agrees with the obvious facts: `*` matches everything, a pattern without
//! wildcards matches only itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stele_bucket::policy::glob_match;

fuzz_target!(|data: &[u8]| {
    let Some(text) = stele_fuzz::text(data) else {
        return;
    };
    let (pattern, subject) = text.split_once('\n').unwrap_or((text, ""));
    for case_insensitive in [false, true] {
        let _ = glob_match(pattern, subject, case_insensitive);
        assert!(glob_match("*", subject, case_insensitive));
    }
    if !pattern.contains(['*', '?']) {
        assert_eq!(glob_match(pattern, subject, false), pattern == subject);
    }
    assert!(glob_match(subject, subject, false) || subject.contains(['*', '?']));
});
