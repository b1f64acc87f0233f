#!/bin/sh
# Writes the table of configuration keys in docs/configuration.md from their declarations
# (apps/herald/src/config/keys/), between the "keys: begin" and "keys: end" markers.
# The test `the_docs_table_is_generated_from_the_declarations` checks it is up to date.
set -eu
cd "$(dirname "$0")/.."
doc=docs/configuration.md
table=$(mktemp)
trap 'rm -f "$table" "$table.md"' EXIT
cargo run -q -p herald -- --print-keys --markdown > "$table"
awk -v table="$table" '
    /<!-- keys: begin/ { print; while ((getline line < table) > 0) print line; skip = 1; next }
    /<!-- keys: end/ { skip = 0 }
    !skip { print }
' "$doc" > "$table.md"
mv "$table.md" "$doc"
echo "wrote the key table of $doc"
