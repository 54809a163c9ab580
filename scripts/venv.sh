# Sourced by scripts/run and scripts/test: moto (the AWS API emulator, with
# boto3) in one venv kept beside the build. Exports MOTO_SERVER and VENV.
VENV="$HOME/.cache/healer/venv"
moto_version="5.2.5"
if [ ! -x "$VENV/bin/moto_server" ] || ! "$VENV/bin/python" -c "import moto, boto3, sys; sys.exit(moto.__version__ != '$moto_version')" 2>/dev/null; then
    echo "== installing moto $moto_version into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server,dynamodb]==$moto_version" >&2
fi
export VENV
export MOTO_SERVER="$VENV/bin/moto_server"
