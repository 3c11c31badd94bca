#!/usr/bin/env bash
# The Windows build of the crates with Windows-only code (the games' named shared-memory
# mappings), compiled for x86_64-pc-windows-gnu and tested under Wine: the tests create the
# mappings as the games do and read them through the real sources, then run the real
# pitwall-flow.exe on pipelines/windows/ac-shm-live.toml. Installs what is
# missing (Debian's wine and MinGW-w64 GCC, the Rust target) and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/setup.sh
target=x86_64-pc-windows-gnu

# Debian's `wine` brings `wine` and `wineboot` (with wine64); `wine64` alone puts neither
# on the PATH.
need=()
command -v wine >/dev/null && command -v wineboot >/dev/null || need+=(wine)
command -v x86_64-w64-mingw32-gcc >/dev/null || need+=(gcc-mingw-w64-x86-64)
apt_install "${need[@]}"
require_command wine wine
require_command wineboot wine
require_command x86_64-w64-mingw32-gcc gcc-mingw-w64-x86-64
rust_target "$target"
pip_install pyarrow pyarrow   # reads both builds' Parquet back, below

export WINEDEBUG=-all WINEPREFIX="${WINEPREFIX:-$HOME/.wine-pitwall}"
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
system32="$WINEPREFIX/drive_c/windows/system32"
if [ ! -d "$system32" ]; then
  say "creating the Wine prefix $WINEPREFIX (once per prefix, about a minute)"
  wineboot --init >"${TMPDIR:-/tmp}/pitwall-wineboot.log" 2>&1 \
    || die "wineboot --init failed for $WINEPREFIX (log: ${TMPDIR:-/tmp}/pitwall-wineboot.log); remove the prefix and run again"
  # wineboot returns before wineserver has written everything: wait for it.
  wineserver --wait 2>/dev/null || true
  [ -d "$system32" ] || die "wineboot --init made no $system32 (log: ${TMPDIR:-/tmp}/pitwall-wineboot.log)"
fi
if [ ! -f "$system32/bcryptprimitives.dll" ]; then
  # Wine 8 lacks the DLL Rust's standard library takes random bytes from.
  say "building bcryptprimitives.dll into the Wine prefix (Wine 8 lacks it)"
  x86_64-w64-mingw32-gcc -O2 -shared -o "$system32/bcryptprimitives.dll" \
    scripts/wine/bcryptprimitives.c -ladvapi32 || die "could not build bcryptprimitives.dll with MinGW-w64"
fi
cargo test --target "$target" -p pitwall-api -p pitwall-assetto -p pitwall-rfactor2 "$@"
# The real pitwall-flow.exe on the shipped Windows pipeline, with the test playing the game.
cargo test --target "$target" -p pitwall-flow --test windows_game "$@"

# The same replay recorded to Parquet by the Windows and the Linux binary, each stopping by
# itself at the end: pyarrow reads both back, and they hold the same rows.
cargo build --quiet --bin pitwall-flow
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for platform in windows linux; do
  mkdir -p "$work/$platform"
  cat > "$work/$platform/record.toml" <<TOML
[sources.f1]
type = "openf1"
session_key = 9999
cache_dir = "$PWD/pipelines/sample"
speed = 0

[sinks.parquet]
type = "parquet"
inputs = ["f1"]
path = "$work/$platform/parquet"

[runtime]
exit_when_done = true
TOML
done
RUST_LOG=warn wine "${CARGO_TARGET_DIR:-target}/$target/debug/pitwall-flow.exe" run --no-watch "$work/windows/record.toml"
RUST_LOG=warn "${CARGO_TARGET_DIR:-target}/debug/pitwall-flow" run --no-watch "$work/linux/record.toml"
python3 - "$work" <<'PY'
import pathlib, sys
import pyarrow.parquet as pq
work = pathlib.Path(sys.argv[1])
def tables(platform):
    files = sorted((work / platform / "parquet").glob("*.parquet"))
    assert files, f"{platform}: no Parquet files"
    return {f.name.split("-")[0]: pq.read_table(f) for f in files}
windows, linux = tables("windows"), tables("linux")
assert windows.keys() == linux.keys(), (windows.keys(), linux.keys())
for kind in sorted(windows):
    assert windows[kind].num_rows == linux[kind].num_rows > 0, kind
    assert windows[kind].schema == linux[kind].schema, kind
    assert windows[kind].equals(linux[kind]), f"{kind}: the rows differ"
rows = sum(t.num_rows for t in windows.values())
print(f"windows build: {len(windows)} Parquet files, {rows} rows, identical to the Linux build's")
PY
