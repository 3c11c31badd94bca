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
