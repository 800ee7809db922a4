//! Fast checks of the command line: parsing, output lines, JSON shape, exit codes, errors.
//! (Against a CA: test/test_a2md.py.)

use std::process::{Command, Output};

fn a2md(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_a2md"))
        .args(args)
        .output()
        .expect("run a2md")
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

#[test]
fn version_and_usage_errors() {
    let o = a2md(&["-V"]);
    assert!(o.status.success());
    assert!(text(&o.stdout).starts_with("version: "));
    let o = a2md(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    let o = a2md(&["list"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("no store directory given"));
    let o = a2md(&["-d", "/nonexistent/a2md-store", "list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("does not exist"));
}

#[test]
fn add_list_json_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("md");
    let st = st.to_str().unwrap();
    let o = a2md(&[
        "-d",
        st,
        "add",
        "Example.org",
        "www.example.org",
        "example.org",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        "md: example.org [example.org, www.example.org]\n"
    );
    for (d, ok) in [
        ("*.w.test", true),
        ("xn--bcher-kva.example", true),
        ("a_b.test", false),
        ("nodot", false),
        ("x.*.test", false),
        ("-a.test", false),
        ("a-.test", false),
        ("www.example.org", false), // overlap
        ("x.w.test", false),        // overlap with the wildcard
    ] {
        let o = a2md(&["-d", st, "add", "--", d]);
        assert_eq!(o.status.success(), ok, "{d}: {}", text(&o.stderr));
        if !ok {
            assert_eq!(o.status.code(), Some(1), "{d}");
            assert_eq!(text(&o.stderr).lines().count(), 1, "{d}");
        }
    }
    let o = a2md(&["-d", st, "-j", "list"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], 0);
    let names: Vec<&str> = v["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["*.w.test", "example.org", "xn--bcher-kva.example"]);
    assert_eq!(v["output"][0]["renew"], true);
    let o = a2md(&["-d", st, "-j", "update", "nope.test", "contacts", "a@b"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], 2);
    assert_eq!(v["description"], "No such file or directory");
}

#[test]
fn man_page_is_current() {
    let o = a2md(&["--man"]);
    assert!(o.status.success());
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/a2md.1")).unwrap();
    assert_eq!(
        text(&o.stdout),
        shipped,
        "crates/a2md/a2md.1 is stale: a2md --man > crates/a2md/a2md.1"
    );
}
