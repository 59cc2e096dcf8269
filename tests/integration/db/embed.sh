#!/usr/bin/env bash
# embed.sh - common/sf_db_embed.cmake: numeric (not lexical) order, byte-exact
# embedding of awkward SQL text, refusal of bad names and duplicate versions.
#   embed.sh SOURCE_DIR WORK_DIR
set -euo pipefail
src=$1
work=$2
fail() { echo "FAIL: $*" >&2; exit 1; }
rm -rf "$work" && mkdir -p "$work/m"
embed() { cmake -DMIGRATIONS_DIR="$work/m" -DOUT="$work/out.c" -P "$src/common/sf_db_embed.cmake"; }

printf 'SELECT 1;\n' > "$work/m/10_ten.sql"
printf 'SELECT 2;\n' > "$work/m/2_two.sql"
# Quotes, backslashes, a C comment opener, a trigraph and non-ASCII text.
printf "SELECT '\\\\x', \"q\", '/* ??= */', 'héllo';\n" > "$work/m/001_one.sql"
embed || fail "embedding valid files failed"
order=$(grep -o '{[0-9]*, "[^"]*"' "$work/out.c" | tr -d '{"' | tr '\n' ' ')
[ "$order" = "1, 001_one 2, 2_two 10, 10_ten " ] || fail "wrong order: $order"

# The embedded bytes are exactly the file's bytes.
cat > "$work/main.c" <<'C'
#include <stdio.h>
#include <string.h>
#include "sf_db.h"
int main(void)
{
    size_t n;
    const sf_db_migration *m = sf_db_migrations(&n);
    fputs(m[0].sql, stdout);
    return n == 3 ? 0 : 1;
}
C
cc -std=c11 -I"$src/common" $(pkg-config --cflags libpq) -o "$work/dump" "$work/main.c" "$work/out.c" \
    || fail "generated source does not compile"
"$work/dump" > "$work/dumped.sql" || fail "wrong migration count"
cmp "$work/dumped.sql" "$work/m/001_one.sql" || fail "embedded text differs from the file"

printf 'SELECT 3;\n' > "$work/m/02_dup.sql"
if embed 2>/dev/null; then fail "duplicate version 2 accepted"; fi
rm "$work/m/02_dup.sql"
printf 'SELECT 4;\n' > "$work/m/bad-name.sql"
if embed 2>/dev/null; then fail "bad file name accepted"; fi
rm "$work/m/bad-name.sql"

# No migrations at all is valid (count 0).
rm "$work"/m/*.sql
embed || fail "empty directory failed"
grep -q '\*count = 0;' "$work/out.c" || fail "empty directory should embed 0 migrations"
echo "embed: ok"
