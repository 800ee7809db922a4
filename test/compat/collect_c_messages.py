#!/usr/bin/env python3
"""Record what the C mod_md prints for every config case it rejects.

Runs ``apache2 -t`` with Debian's C module for each case of test_config_compat.py and writes
compat/c_reject_messages.json:  case id -> {"conf", "message", "output"}
  * message: the error text after httpd's "Syntax error on line N of F:" (what the Rust module
    must print to match; test_reject_wording_matches_c compares against it),
  * output:  the whole normalized output (server dir replaced by <DIR>).
Also prints every case where the C verdict differs from the case table (exit code 1 then).

Run it with the newest C module (lib/cversion.py): the texts are what ours must print; an
older C module's differences are the cases' `older=` entries.

Usage: python3 test/compat/collect_c_messages.py [--check]   (--check: don't write the file)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TEST_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TEST_DIR))

from lib.httpd import module_by_name, syntax_error_message  # noqa: E402
from test_config_compat import CASES, REJECT, normalized_output, run_case  # noqa: E402

OUT_FILE = Path(__file__).resolve().parent / "c_reject_messages.json"


def main() -> int:
    check_only = "--check" in sys.argv[1:]
    c = module_by_name("c")
    records, problems = {}, []
    for case in CASES:
        rc, out, srv = run_case(c, case)
        try:
            out = normalized_output(out, srv)
        finally:
            srv.cleanup()
        verdict = "accept" if rc == 0 and "Syntax OK" in out else "reject"
        if verdict != case.verdict_for("c"):
            problems.append(f"{case.id}: table says {case.verdict_for('c')}, C does {verdict}: "
                            f"{out.strip()!r}")
        elif verdict == REJECT and case.msg_for("c") not in out:
            problems.append(f"{case.id}: C text {out.strip()!r} lacks {case.msg_for('c')!r}")
        if verdict == REJECT and verdict == case.verdict:  # the newest C module's texts
            records[case.id] = {
                "conf": case.conf,
                "message": syntax_error_message(out),
                "output": out.strip().splitlines(),
            }
    for p in problems:
        print("MISMATCH", p)
    if not check_only:
        OUT_FILE.write_text(json.dumps(records, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {len(records)} reject messages to {OUT_FILE}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
