//! `status [md]`: what the module's md-status handler would show for the store's MDs (md-core's
//! status code on the same files): a table, or the md-status JSON with -j.

use std::path::Path;

use chrono::Utc;
use md_core::status::{find_md, md_status_json, md_status_list, MdSnapshot, MdView, Renewal};
use md_core::store::MdState;

use crate::cli::Cli;
use crate::out::{CmdResult, Fail, Out};
use crate::store::{dir_of, open_read, stored_mds};

fn state_name(s: MdState) -> &'static str {
    match s {
        MdState::Unknown => "unknown",
        MdState::Incomplete => "incomplete",
        MdState::Complete => "complete",
        MdState::Error => "error",
        MdState::MissingInformation => "missing information",
    }
}

fn views<'a>(snaps: &'a [MdSnapshot], root: &Path) -> Vec<MdView<'a>> {
    snaps
        .iter()
        .map(|s| MdView {
            snap: s,
            renewal: Renewal::load(&s.record.md, root),
            ocsp: Vec::new(),
        })
        .collect()
}

/// Run `status`.
pub fn run(cli: &Cli, _out: &mut Out, md: Option<&str>) -> CmdResult {
    let root = dir_of(&cli.dir)?;
    let store = open_read(root)?;
    let now = Utc::now();
    let mut snaps: Vec<MdSnapshot> = stored_mds(&store)?
        .iter()
        .map(|r| MdSnapshot::load(&r.md, root, true))
        .collect();
    if let Some(name) = md {
        let one = find_md(&snaps, &md_core::status::index_of(&snaps), name)
            .cloned()
            .ok_or_else(|| Fail::not_found(format!("unknown Managed Domain '{name}'")))?;
        snaps = vec![one];
    }
    let vs = views(&snaps, root);
    if cli.json {
        let doc = match (md, vs.first()) {
            (Some(_), Some(v)) => md_status_json(v, now, true),
            _ => md_status_list(&vs, now),
        };
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(());
    }
    let fmt = |t: chrono::DateTime<Utc>| t.format("%Y-%m-%d %H:%M").to_string();
    let mut rows = vec![[
        "MD".to_string(),
        "STATE".into(),
        "VALID UNTIL".into(),
        "RENEW AT".into(),
        "RENEWAL".into(),
        "DOMAINS".into(),
    ]];
    for v in &vs {
        let s = v.snap;
        let renewal = match &v.renewal {
            Some(r) if r.job.finished => "staged".to_string(),
            Some(r) if r.job.errors > 0 => format!("{} error(s)", r.job.errors),
            Some(_) => "running".into(),
            None => "-".into(),
        };
        rows.push([
            s.record.md.name.clone(),
            state_name(s.record.state).into(),
            s.valid()
                .map(|v| fmt(v.until))
                .unwrap_or_else(|| "-".into()),
            if v.due(now) {
                "now".into()
            } else {
                fmt(s.renew_at(now))
            },
            renewal,
            s.record.md.domains.join(" "),
        ]);
    }
    let mut widths = [0usize; 6];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(())
}
