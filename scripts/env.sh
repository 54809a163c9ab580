# Sourced by the scripts: one persistent build directory outside the clone, so
# repeated runs (and CI on the same machine) reuse the build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/healer/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install rustup from your package manager first" >&2
    exit 1
fi
# rust-toolchain.toml pins the compiler and lists wasm32-wasip2; this installs
# both on a fresh machine (rustup does it on first use; older rustups need the nudge).
rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
