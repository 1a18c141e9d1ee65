use super::*;
use crate::logverify::reference::{new_key, sig_line};
use ed25519_dalek::SigningKey;

// golang.org/x/mod, sumdb/note/note_test.go (TestNewVerifier, TestSign, TestOpen): the
// Go implementation's keys and signed notes. That they verify here shows notes signed
// in Go verify with this code, and that this code's key id is Go's.
const PETER_KEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const ENOCH_KEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                       then you don't know what your problem is.\n";
const PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

// c2sp.org/signed-note v1.1.0, its example key and note.
const C2SP_KEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const C2SP_NOTE: &str = "This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

const NAME: &str = "vidne.local/ledger";
const ROOT: &str = "3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

fn key(s: &str) -> VerifierKey {
    VerifierKey::parse(s).unwrap()
}

fn signed(text: &str, sk: &SigningKey) -> String {
    format!("{text}\n{}", sig_line(text, NAME, sk))
}

fn body(size: &str, root: &str) -> String {
    format!("{NAME}\n{size}\n{root}\n")
}

fn reason(r: Result<impl fmt::Debug, Reject>) -> String {
    r.unwrap_err().reason().to_owned()
}

#[test]
fn go_keys_parse_with_their_ids() {
    let peter = key(PETER_KEY);
    assert_eq!(
        (peter.name(), peter.id()),
        ("PeterNeumann", [0xc7, 0x4f, 0x20, 0xa3])
    );
    assert_eq!(peter.to_string(), "PeterNeumann+c74f20a3");
    assert_eq!(key(ENOCH_KEY).to_string(), "EnochRoot+af0cfe78");
    assert_eq!(key(C2SP_KEY).to_string(), "example.com/foo+530d903a");
}

#[test]
fn go_mangled_keys_are_refused() {
    // As TestNewVerifier: every proper substring, and every byte changed.
    let b = PETER_KEY.as_bytes();
    for i in 0..=b.len() {
        for j in i + 1..=b.len() {
            if (i, j) != (0, b.len()) {
                assert!(VerifierKey::parse(&PETER_KEY[i..j]).is_err(), "{i}..{j}");
            }
        }
    }
    for i in 0..b.len() {
        let mut m = b.to_vec();
        m[i] += 1;
        assert!(VerifierKey::parse(std::str::from_utf8(&m).unwrap()).is_err());
    }
    // Wrong length and unknown type, each with the key id adjusted to match. (The first
    // is refused here before its length is looked at: its base64 has trailing bits set,
    // which Go's decoder ignores and this one does not.)
    let e = VerifierKey::parse(
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
    );
    assert!(e.unwrap_err().to_string().contains("not standard base64"));
    let e =
        VerifierKey::parse("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW");
    assert!(e.unwrap_err().to_string().contains("0x65, not 0x01"));
}

#[test]
fn go_and_c2sp_notes_open() {
    let peter = key(PETER_KEY);
    let note = format!("{GO_TEXT}\n{PETER_SIG}");
    assert_eq!(open_note(&note, &peter).unwrap(), GO_TEXT);
    assert_eq!(
        open_note(C2SP_NOTE, &key(C2SP_KEY)).unwrap(),
        "This is an example message.\n"
    );
    // Doubly signed: each key finds its own line and ignores the other.
    let both = format!("{GO_TEXT}\n{PETER_SIG}{ENOCH_SIG}");
    assert_eq!(open_note(&both, &peter).unwrap(), GO_TEXT);
    assert_eq!(open_note(&both, &key(ENOCH_KEY)).unwrap(), GO_TEXT);
    // Not signed by the key asked for.
    let e = open_note(&note, &key(ENOCH_KEY)).unwrap_err();
    assert_eq!(
        e.reason(),
        "checkpoint has no signature by EnochRoot+af0cfe78 (it is signed by PeterNeumann+c74f20a3)"
    );
    assert!(!e.is_malformed());
}

#[test]
fn go_altered_notes_are_refused() {
    let peter = key(PETER_KEY);
    let edited = format!("{GO_TEXT}\n{PETER_SIG}").replace("cryptography", "cryptographY");
    let e = open_note(&edited, &peter).unwrap_err();
    assert_eq!(
        e.reason(),
        "checkpoint signature does not verify with key PeterNeumann+c74f20a3"
    );
    let longer = format!("{GO_TEXT}\n{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
    assert!(!open_note(&longer, &peter).unwrap_err().is_malformed());
    // TestOpen's malformed messages (the one that is not UTF-8 cannot be a &str).
    let malformed = [
        GO_TEXT.to_owned(),
        format!("{GO_TEXT}\n"),
        format!("{GO_TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
        format!("\x01{GO_TEXT}\n{PETER_SIG}"),
        format!("{GO_TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="),
        format!("{GO_TEXT}\n{PETER_SIG}Unexpected line.\n"),
        format!("{GO_TEXT}\n{}", PETER_SIG.repeat(101)),
    ];
    for m in malformed {
        assert!(open_note(&m, &peter).unwrap_err().is_malformed(), "{m:?}");
    }
    // 100 signatures are read.
    let many = format!("{GO_TEXT}\n{}", PETER_SIG.repeat(100));
    assert_eq!(open_note(&many, &peter).unwrap(), GO_TEXT);
}

#[test]
fn a_checkpoint_verifies_and_reads() {
    let (sk, vkey) = new_key(NAME);
    let note = signed(&body("42", ROOT), &sk);
    let cp = verify_checkpoint(&note, &key(&vkey)).unwrap();
    assert_eq!(cp.origin, NAME);
    assert_eq!(cp.tree_size, 42);
    assert_eq!(cp.root.0[..4], [0xde, 0xad, 0xbe, 0xef]);
    let empty_root = STANDARD.encode(Sha256::digest(b""));
    let empty = signed(&body("0", &empty_root), &sk);
    assert_eq!(verify_checkpoint(&empty, &key(&vkey)).unwrap().tree_size, 0);
    let not_empty = signed(&body("0", ROOT), &sk);
    assert!(reason(verify_checkpoint(&not_empty, &key(&vkey)))
        .starts_with("the checkpoint is of the empty tree, whose root is e3b0c442"));
    let max = signed(&body("18446744073709551615", ROOT), &sk);
    assert_eq!(
        verify_checkpoint(&max, &key(&vkey)).unwrap().tree_size,
        u64::MAX
    );
}

#[test]
fn other_signatures_are_ignored_but_ours_must_all_verify() {
    let (sk, vkey) = new_key(NAME);
    let (witness, wkey) = new_key("witness.example/w1");
    let text = body("7", ROOT);
    let ours = sig_line(&text, NAME, &sk);
    let theirs = sig_line(&text, "witness.example/w1", &witness);
    let k = key(&vkey);
    verify_checkpoint(&format!("{text}\n{theirs}{ours}"), &k).unwrap();
    // Another key's line need not verify: it is not checked.
    let bogus = sig_line("other text\n", "witness.example/w1", &witness);
    verify_checkpoint(&format!("{text}\n{ours}{bogus}"), &k).unwrap();
    // A second line by our key that does not verify condemns the note.
    let bad = sig_line("other text\n", NAME, &sk);
    let e = reason(verify_checkpoint(&format!("{text}\n{ours}{bad}"), &k));
    assert_eq!(
        e,
        format!("checkpoint signature does not verify with key {k}")
    );
    // Signed by another name only.
    let e = reason(verify_checkpoint(&format!("{text}\n{theirs}"), &k));
    assert_eq!(
        e,
        format!(
            "checkpoint has no signature by {k} (it is signed by {})",
            key(&wkey)
        )
    );
}

#[test]
fn wrong_key_and_edits_are_refused() {
    let (sk, vkey) = new_key(NAME);
    let (_, other) = new_key(NAME);
    let note = signed(&body("42", ROOT), &sk);
    let (k, k2) = (key(&vkey), key(&other));
    let e = reason(verify_checkpoint(&note, &k2));
    assert_eq!(
        e,
        format!("checkpoint has no signature by {k2} (it is signed by {k})")
    );
    let does_not_verify = format!("checkpoint signature does not verify with key {k}");
    let root2 = "3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE=";
    for edited in [
        note.replace("\n42\n", "\n43\n"),
        note.replace("\n42\n", "\n042\n"),
        note.replace(ROOT, root2),
        note.replacen(NAME, "vidne.local/ledgex", 1),
    ] {
        assert_ne!(edited, note);
        assert_eq!(reason(verify_checkpoint(&edited, &k)), does_not_verify);
    }
    // The signature line itself, renamed: then it is no longer ours.
    let renamed = note.replace(&format!("— {NAME} "), "— vidne.local/other ");
    assert!(reason(verify_checkpoint(&renamed, &k)).starts_with("checkpoint has no signature by"));
}

#[test]
fn malformed_notes_are_told_apart() {
    let (sk, vkey) = new_key(NAME);
    let k = key(&vkey);
    let text = body("42", ROOT);
    let note = signed(&text, &sk);
    let hyphen = note.replace("— ", "- ");
    let e = verify_checkpoint(&hyphen, &k).unwrap_err();
    assert!(e.is_malformed());
    assert!(e
        .reason()
        .ends_with("does not begin with an em dash (U+2014) and a space"));
    for (bad, why) in [
        (text.clone(), "no blank line"),
        (format!("{text}\n"), "no signature lines"),
        (note.trim_end().to_owned(), "does not end in a newline"),
        (note.replacen("— ", "—  ", 1), "the key name is empty"),
        (note.replace('=', ""), "not standard base64"),
        (note.replace("\n42\n", "\n4\t2\n"), "control character"),
        (
            format!("{}{note}", " ".repeat(MAX_NOTE_BYTES)),
            "more than the",
        ),
    ] {
        let e = verify_checkpoint(&bad, &k).unwrap_err();
        assert!(e.is_malformed() && e.reason().contains(why), "{why}: {e}");
    }
}

#[test]
fn signed_bodies_that_are_not_checkpoints_are_refused() {
    let (sk, vkey) = new_key(NAME);
    let k = key(&vkey);
    let check = |text: &str| reason(verify_checkpoint(&signed(text, &sk), &k));
    for size in ["01", "00", "", "+1", "-1", "1.0", "1e3", " 1", "٣"] {
        assert_eq!(
            check(&body(size, ROOT)),
            format!(
                "tree size line {size:?} is not a decimal integer (digits only, no leading zeros)"
            )
        );
    }
    assert_eq!(
        check(&body("18446744073709551616", ROOT)),
        "tree size line \"18446744073709551616\" is larger than 2^64 - 1"
    );
    let short = STANDARD.encode([7u8; 31]);
    let long = STANDARD.encode([7u8; 33]);
    let unpadded = ROOT.trim_end_matches('=');
    let hex_root = "de".repeat(32);
    // Trailing bits set where the padding makes them zero in the canonical form.
    let loose = "3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=";
    for root in [&short[..], &long, unpadded, &hex_root, loose, ""] {
        assert_eq!(
            check(&body("1", root)),
            format!("the root {root:?} is not 32 bytes of standard base64")
        );
    }
    assert_eq!(
        check(&format!("example.com/log\n1\n{ROOT}\n")),
        "the checkpoint's origin \"example.com/log\" is not the key's name \"vidne.local/ledger\""
    );
    assert_eq!(
        check(&format!("{}extension\n", body("1", ROOT))),
        "the checkpoint text has 4 lines, not 3 (origin, tree size, root)"
    );
    assert_eq!(
        check(&format!("{NAME}\n1\n")),
        "the checkpoint text has 2 lines, not 3 (origin, tree size, root)"
    );
}

#[test]
fn key_strings_are_checked() {
    let (_, vkey) = new_key(NAME);
    let (id, b64) = vkey[NAME.len() + 1..].split_once('+').unwrap();
    let cases = [
        (
            PETER_KEY.replace("c74f20a3", "C74F20A3"),
            "not 8 lowercase hex digits",
        ),
        (format!("vidne ledger+{id}+{b64}"), "white space"),
        (format!("+{id}+{b64}"), "the name is empty"),
        (format!("{NAME}+{id}"), "is not <name>+<key id>+<key>"),
        (
            format!("{NAME}+00000000+{b64}"),
            "the key id is not the one",
        ),
        (format!("{NAME}+{id}+{b64}="), "not standard base64"),
        (
            format!("other.name+{id}+{b64}"),
            "the key id is not the one",
        ),
    ];
    for (s, why) in cases {
        let e = VerifierKey::parse(&s).unwrap_err().to_string();
        assert!(e.contains(why), "{s}: {e}");
    }
    // With the key id right: a key of 31 bytes, and a small-order point (the identity).
    let with_id = |typed: &[u8]| {
        let id = &Sha256::digest([NAME.as_bytes(), &b"\n"[..], typed].concat())[..4];
        format!("{NAME}+{}+{}", hex::encode(id), STANDARD.encode(typed))
    };
    let short = with_id(&[1; 32]);
    assert!(VerifierKey::parse(&short)
        .unwrap_err()
        .to_string()
        .contains("is 31 bytes, not 32"));
    let mut identity = vec![0x01, 1];
    identity.extend_from_slice(&[0; 31]);
    let weak = with_id(&identity);
    assert!(VerifierKey::parse(&weak)
        .unwrap_err()
        .to_string()
        .contains("small order"));
}
