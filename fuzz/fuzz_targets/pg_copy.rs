//! PostgreSQL binary `COPY` output, as a scan reads it from the server (a
//! compromised or impersonated server controls every byte). Parsing must
//! never panic or over-read; how the bytes are split into protocol messages
//! must not change what is parsed; and rows it accepts survive being
//! written back out and parsed again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stele_store::pg_copy::{OwnedCopyRow, parse_copy_output};

/// The rows written back in binary COPY form, with the end-of-data marker.
fn encode(rows: &[OwnedCopyRow]) -> Vec<u8> {
    let mut out = b"PGCOPY\n\xff\r\n\0".to_vec();
    out.extend_from_slice(&[0; 8]);
    for (_, fields) in rows {
        let count = i16::try_from(fields.len()).expect("field count fits");
        out.extend_from_slice(&count.to_be_bytes());
        for field in fields {
            match field {
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(bytes) => {
                    let len = i32::try_from(bytes.len()).expect("field length fits");
                    out.extend_from_slice(&len.to_be_bytes());
                    out.extend_from_slice(bytes);
                }
            }
        }
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let whole = parse_copy_output(&[body]);
    let size = usize::from(split.max(1));
    let chunks: Vec<&[u8]> = body.chunks(size).collect();
    let split_up = parse_copy_output(&chunks);
    match (&whole, &split_up) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "chunking changed the rows"),
        (Err(_), Err(_)) => {}
        _ => panic!("chunking changed the outcome: {whole:?} vs {split_up:?}"),
    }
    if let Ok(rows) = whole {
        let again = parse_copy_output(&[&encode(&rows)]).expect("re-encoded rows parse");
        assert_eq!(again, rows, "round trip");
    }
});
