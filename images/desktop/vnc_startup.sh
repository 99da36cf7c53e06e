#!/bin/bash
# Startup of the desktop-relay demo desktop (a Kasm-compatible stand-in).
# Runs as kasm-user (uid 1000) under tini. Starts Xvnc :1, a desktop (solid #2a6f97
# root window, twm, one xterm with keyboard focus) and websockify with Basic auth on
# ${NO_VNC_PORT:-6901} (TLS only). Exits non-zero as soon as Xvnc or websockify dies.
set -euo pipefail

export HOME="${HOME:-/home/kasm-user}"
export USER="${USER:-kasm-user}"
export DISPLAY=:1
export VNC_PW="${VNC_PW:-vncpassword}"
NO_VNC_PORT="${NO_VNC_PORT:-6901}"
VNC_COL_DEPTH="${VNC_COL_DEPTH:-24}"
VNC_RESOLUTION="${VNC_RESOLUTION:-1280x720}"
BACKGROUND="#2a6f97" # rgb(42,111,151); see README.md
BANNER="desktop-relay demo desktop"

log() { echo "$(date -u +%H:%M:%S) vnc_startup: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ "$VNC_RESOLUTION" =~ ^([0-9]{3,5})x([0-9]{3,5})$ ]] || die "VNC_RESOLUTION must be WIDTHxHEIGHT, got '$VNC_RESOLUTION'"
WIDTH=${BASH_REMATCH[1]}
HEIGHT=${BASH_REMATCH[2]}
[[ "$VNC_COL_DEPTH" =~ ^(16|24|32)$ ]] || die "VNC_COL_DEPTH must be 16, 24 or 32, got '$VNC_COL_DEPTH'"
[[ "$NO_VNC_PORT" =~ ^[0-9]+$ ]] || die "NO_VNC_PORT must be a port number, got '$NO_VNC_PORT'"

# --- TLS: a fresh self-signed key+cert in one file on every start (like Kasm) ---------
VNC_DIR="$HOME/.vnc"
if ! mkdir -p "$VNC_DIR" 2>/dev/null || [ ! -w "$VNC_DIR" ]; then
    die "$VNC_DIR is not writable by uid $(id -u): a volume mounted at $HOME must be writable by uid 1000"
fi
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=$(hostname)" -keyout "$VNC_DIR/self.key.tmp" -out "$VNC_DIR/self.crt.tmp" 2>/dev/null \
    || die "openssl could not create a certificate"
cat "$VNC_DIR/self.key.tmp" "$VNC_DIR/self.crt.tmp" > "$VNC_DIR/self.pem"
rm -f "$VNC_DIR/self.key.tmp" "$VNC_DIR/self.crt.tmp"
umask 022

# --- process supervision -----------------------------------------------------------
PIDS=()
cleanup() {
    trap - EXIT TERM INT
    kill "${PIDS[@]}" 2>/dev/null || true
}
trap cleanup EXIT
trap 'log "terminating"; cleanup; exit 0' TERM INT

wait_for() { # wait_for DESCRIPTION PID TEST...: poll TEST every 20 ms for up to 10 s
    local what=$1 pid=$2 _
    shift 2
    for _ in $(seq 500); do
        "$@" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || die "$what exited during startup"
        sleep 0.02
    done
    die "$what did not come up within 10 s"
}
tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- X server with VNC -------------------------------------------------------------
rm -f /tmp/.X1-lock /tmp/.X11-unix/X1 2>/dev/null || true
Xvnc :1 -geometry "${WIDTH}x${HEIGHT}" -depth "$VNC_COL_DEPTH" \
    -localhost -rfbport 5901 -SecurityTypes None -AlwaysShared \
    -desktop "$BANNER" -nolisten tcp -ac >&2 &
XVNC_PID=$!
PIDS+=("$XVNC_PID")
wait_for Xvnc "$XVNC_PID" test -S /tmp/.X11-unix/X1

# --- desktop: solid background, twm, one focused xterm -----------------------------
xsetroot -solid "$BACKGROUND" -cursor_name left_ptr
LC_ALL=C twm -f /etc/desktop-relay/twmrc >&2 &
PIDS+=($!)
# The xterm covers the screen centre (where Xvnc puts the pointer) so that it gets
# keyboard input even before a viewer moves the mouse; the right and bottom edges
# stay background-coloured.
COLS=$(( WIDTH * 7 / 10 / 10 ))
ROWS=$(( HEIGHT * 7 / 10 / 20 ))
(
    while :; do # keep a terminal on screen even if the user types "exit"
        xterm -geometry "${COLS}x${ROWS}+$(( WIDTH / 20 ))+$(( HEIGHT / 20 ))" \
            -fn 10x20 -bg white -fg black -cr black -title "$BANNER" -name desktop-relay \
            -e /bin/bash -c "echo '$BANNER'; cd ~; exec bash -i" >/dev/null 2>&1 || sleep 1
    done
) &
PIDS+=($!)

# --- websockify: web client + VNC over WebSocket, TLS only, Basic auth --------------
PYTHONWARNINGS=ignore websockify --ssl-only --cert "$VNC_DIR/self.pem" --web /usr/share/novnc \
    --web-auth --auth-plugin kasm_auth.KasmAuth \
    "$NO_VNC_PORT" 127.0.0.1:5901 >&2 &
WS_PID=$!
PIDS+=("$WS_PID")
wait_for websockify "$WS_PID" tcp_open "$NO_VNC_PORT"

echo "------------------ KasmVNC environment started ------------------"

# --- keep running; leave non-zero when Xvnc or websockify goes away ------------------
while :; do
    wait -n "$XVNC_PID" "$WS_PID" || true
    kill -0 "$XVNC_PID" 2>/dev/null || die "Xvnc exited"
    kill -0 "$WS_PID" 2>/dev/null || die "websockify exited"
done
