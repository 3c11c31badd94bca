# Shared set-up steps for the scripts in scripts/: each says what it installs, and each stops
# with a message naming what is still missing instead of letting a later step fail obscurely.
# Source it; it defines functions only.

# Prints a set-up message on stderr, so that a script's own output stays clean.
say() { printf 'setup: %s\n' "$*" >&2; }

# Stops the script with a message naming what failed and how to fix it.
die() {
  printf 'setup: error: %s\n' "$*" >&2
  exit 1
}

# apt_install PACKAGE...: installs Debian packages (with sudo unless root), saying which.
apt_install() {
  [ $# -gt 0 ] || return 0
  local as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo)
  command -v apt-get >/dev/null || die "need the Debian packages $*, but this machine has no apt-get: install them by hand"
  say "installing Debian packages: $* (once per machine)"
  "${as_root[@]}" apt-get update -qq || die "apt-get update failed: check the network and /etc/apt/sources.list"
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
    || die "apt-get install $* failed (see the messages above)"
}

# require_command COMMAND PACKAGE: stops unless COMMAND is on the PATH (after installing).
require_command() {
  command -v "$1" >/dev/null || die "'$1' is still not on the PATH after installing Debian's '$2'; install it by hand (apt-get install $2)"
}

# pip_install MODULE PACKAGE: installs a Python package from PyPI unless MODULE imports.
pip_install() {
  python3 -c "import $1" 2>/dev/null && return 0
  say "installing the Python package $2 from PyPI (once per machine)"
  python3 -m pip install --quiet "$2" || die "pip could not install $2: check the network, or install it by hand (python3 -m pip install $2)"
  python3 -c "import $1" 2>/dev/null || die "python3 still cannot import $1 after installing $2"
}

# rust_target TRIPLE: adds a Rust compilation target unless it is installed.
rust_target() {
  rustup target list --installed | grep -qx "$1" && return 0
  say "adding the Rust target $1 (once per toolchain)"
  rustup target add "$1" || die "rustup could not add the target $1"
}
