// Command verify_tlog_proof checks a stele receipt's C2SP tlog-proof
// (c2sp.org/tlog-proof) with Go's golang.org/x/mod/sumdb/note and
// sumdb/tlog: an implementation of signed notes and RFC 6962 proofs written
// independently of stele's, so a proof that passes here is not only
// self-consistent with stele's own code.
//
// Usage:
//
//	verify_tlog_proof [-origin ORIGIN] PROOF_FILE VERIFIER_KEY_FILE
//
// It checks, in order: the proof's text format (strictly, per
// c2sp.org/tlog-proof and c2sp.org/tlog-checkpoint), the checkpoint's
// signature under the verifier key (a signed-note "name+hash+base64" key),
// the origin when -origin is given, that the RFC 6962 record hash of the
// `extra` bytes (the event's canonical bytes, stele's leaf) is at `index`
// in the signed tree, and that the event carries that index as its seq.
//
// Exit status: 0 and one OK line when everything holds; 1 and a FAIL line
// on stderr naming what does not; 2 for usage errors and unreadable files.
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const header = "c2sp.org/tlog-proof@v1"

// maxProofBytes bounds what is read, as `stele verify event` does.
const maxProofBytes = 1 << 20

// proof is a parsed tlog-proof; nothing in it is checked yet.
type proof struct {
	extra      []byte
	index      int64
	hashes     tlog.RecordProof
	checkpoint []byte
}

// checkpoint is a signed checkpoint's body.
type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

var strictBase64 = base64.StdEncoding.Strict()

func main() {
	origin := flag.String("origin", "", "the checkpoint origin the proof must carry (default: any)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [-origin ORIGIN] PROOF_FILE VERIFIER_KEY_FILE\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 2 {
		flag.Usage()
		os.Exit(2)
	}
	text, err := readBounded(flag.Arg(0), maxProofBytes)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot read the proof: %v\n", err)
		os.Exit(2)
	}
	vkey, err := readBounded(flag.Arg(1), 4096)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot read the verifier key: %v\n", err)
		os.Exit(2)
	}
	cp, index, err := verify(text, strings.TrimSpace(string(vkey)), *origin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("OK index %d is in %s at tree size %d, root %s\n", index, cp.origin, cp.size, cp.root)
}

func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}

// verify checks everything the proof claims; it returns the verified
// checkpoint and the event's index.
func verify(text []byte, vkey, wantOrigin string) (checkpoint, int64, error) {
	p, err := parseProof(text)
	if err != nil {
		return checkpoint{}, 0, fmt.Errorf("malformed tlog-proof: %w", err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return checkpoint{}, 0, fmt.Errorf("malformed verifier key: %w", err)
	}
	n, err := note.Open(p.checkpoint, note.VerifierList(verifier))
	if err != nil {
		return checkpoint{}, 0, fmt.Errorf("checkpoint signature does not verify with the verifier key: %w", err)
	}
	cp, err := parseCheckpoint(n.Text)
	if err != nil {
		return checkpoint{}, 0, fmt.Errorf("malformed checkpoint: %w", err)
	}
	if wantOrigin != "" && cp.origin != wantOrigin {
		return checkpoint{}, 0, fmt.Errorf("checkpoint origin is %q, not %q", cp.origin, wantOrigin)
	}
	if p.extra == nil {
		return checkpoint{}, 0, errors.New("the proof has no extra line: the event's bytes, which are the leaf, are missing")
	}
	if p.index >= cp.size {
		return checkpoint{}, 0, fmt.Errorf("index %d is not in a tree of size %d", p.index, cp.size)
	}
	leaf := tlog.RecordHash(p.extra)
	if err := tlog.CheckRecord(p.hashes, cp.size, cp.root, p.index, leaf); err != nil {
		return checkpoint{}, 0, fmt.Errorf("inclusion proof of the event at index %d does not verify against the signed root: %w", p.index, err)
	}
	if err := checkSeq(p.extra, p.index); err != nil {
		return checkpoint{}, 0, err
	}
	return cp, p.index, nil
}

// parseProof reads the c2sp.org/tlog-proof text format.
func parseProof(text []byte) (proof, error) {
	split := bytes.Index(text, []byte("\n\n"))
	if split < 0 {
		return proof{}, errors.New("no empty line before the checkpoint")
	}
	lines := strings.Split(string(text[:split]), "\n")
	p := proof{checkpoint: text[split+2:]}
	if lines[0] != header {
		return proof{}, fmt.Errorf("first line is not %s", header)
	}
	lines = lines[1:]
	if len(lines) > 0 && strings.HasPrefix(lines[0], "extra ") {
		extra, err := strictBase64.DecodeString(strings.TrimPrefix(lines[0], "extra "))
		if err != nil {
			return proof{}, errors.New("extra is not base64")
		}
		p.extra = extra
		lines = lines[1:]
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "index ") {
		return proof{}, errors.New("missing `index N` line")
	}
	index, err := parseDecimal(strings.TrimPrefix(lines[0], "index "))
	if err != nil {
		return proof{}, fmt.Errorf("index: %w", err)
	}
	p.index = index
	for _, line := range lines[1:] {
		h, err := parseHash(line)
		if err != nil {
			return proof{}, fmt.Errorf("proof line %q: %w", line, err)
		}
		p.hashes = append(p.hashes, h)
	}
	return p, nil
}

// parseCheckpoint reads a c2sp.org/tlog-checkpoint body: origin, size,
// root, then optional extension lines.
func parseCheckpoint(text string) (checkpoint, error) {
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return checkpoint{}, errors.New("fewer than three lines (origin, size, root)")
	}
	for _, l := range lines {
		if l == "" {
			return checkpoint{}, errors.New("empty line in the body")
		}
	}
	size, err := parseDecimal(lines[1])
	if err != nil {
		return checkpoint{}, fmt.Errorf("tree size: %w", err)
	}
	root, err := parseHash(lines[2])
	if err != nil {
		return checkpoint{}, fmt.Errorf("root: %w", err)
	}
	return checkpoint{origin: lines[0], size: size, root: root}, nil
}

// parseDecimal reads an ASCII decimal with no sign and no leading zeroes
// (except 0 itself), as both specifications require.
func parseDecimal(s string) (int64, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("%q is not a decimal without leading zeroes", s)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is out of range", s)
	}
	return n, nil
}

// parseHash reads one base64 SHA-256 hash; tlog.ParseHash would also
// take non-canonical base64.
func parseHash(s string) (tlog.Hash, error) {
	data, err := strictBase64.DecodeString(s)
	if err != nil || len(data) != tlog.HashSize {
		return tlog.Hash{}, errors.New("not a base64 SHA-256 hash")
	}
	var h tlog.Hash
	copy(h[:], data)
	return h, nil
}

// checkSeq checks that the logged event says it is at the index the proof
// places it: stele's leaf index is the event's seq.
func checkSeq(extra []byte, index int64) error {
	// A map, not a struct: encoding/json would match a struct field's name
	// case-insensitively, and only the key "seq" is the seq.
	var event map[string]json.RawMessage
	if err := json.Unmarshal(extra, &event); err != nil {
		return fmt.Errorf("the event bytes are not a JSON object: %v", err)
	}
	seq, ok := event["seq"]
	if !ok {
		return fmt.Errorf("the event at index %d carries no seq", index)
	}
	if string(seq) != strconv.FormatInt(index, 10) {
		return fmt.Errorf("the proof places its event at index %d, but the event carries seq %s", index, seq)
	}
	return nil
}
