#!/usr/bin/env bash
# The Windows build of the crates with Windows-only code (the games' named shared-memory
# mappings), compiled for x86_64-pc-windows-gnu and tested under Wine: the tests create the
# mappings as the games do and read them through the real sources, then run the real
# pitwall-flow.exe on pipelines/windows/ac-shm-live.toml. Installs what is
# missing (Debian's wine64 and MinGW-w64 GCC, the Rust target).
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-pc-windows-gnu

need=()
command -v wine >/dev/null || need+=(wine64)
command -v x86_64-w64-mingw32-gcc >/dev/null || need+=(gcc-mingw-w64-x86-64)
if [ ${#need[@]} -gt 0 ]; then
  as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo)
  "${as_root[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"

export WINEDEBUG=-all WINEPREFIX="${WINEPREFIX:-$HOME/.wine-pitwall}"
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
if [ ! -f "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" ]; then
  wineboot --init >/dev/null 2>&1 || true
  # Wine 8 lacks the DLL Rust's standard library takes random bytes from.
  x86_64-w64-mingw32-gcc -O2 -shared -o "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" \
    scripts/wine/bcryptprimitives.c -ladvapi32
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
