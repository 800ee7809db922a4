#!/usr/bin/env bash
# Install the built mod_md-rs into the httpd found by apxs (run as root, after
# `cargo build --release`). The .so is installed under its own name next to the
# other modules (never over Debian's mod_md.so), atomically (new inode: running
# httpd processes keep their mapping), plus Debian-style md_rs.load/md_rs.conf.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
so="${1:-$repo/target/release/libmod_md.so}"
apxs="${APXS:-apxs}"
[ -f "$so" ] || { echo "install: $so not found; run 'cargo build --release' first" >&2; exit 1; }
libexec="$("$apxs" -q LIBEXECDIR)"
sysconf="$("$apxs" -q SYSCONFDIR)"
install -m 644 "$so" "$libexec/.mod_md_rs.so.new"
mv -f "$libexec/.mod_md_rs.so.new" "$libexec/mod_md_rs.so"
echo "installed $libexec/mod_md_rs.so"
if [ -d "$sysconf/mods-available" ]; then
    sed "s|/usr/lib/apache2/modules/mod_md_rs.so|$libexec/mod_md_rs.so|" \
        "$here/debian/md.load" > "$sysconf/mods-available/md_rs.load"
    [ -e "$sysconf/mods-available/md_rs.conf" ] || \
        install -m 644 "$here/debian/md.conf" "$sysconf/mods-available/md_rs.conf"
    echo "installed $sysconf/mods-available/md_rs.load and md_rs.conf"
    echo "enable with: a2dismod -q md; a2enmod ssl md_rs && apachectl -t && apachectl graceful"
else
    echo "add to httpd.conf: LoadModule md_module $libexec/mod_md_rs.so"
fi
