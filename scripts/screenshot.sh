#!/usr/bin/env bash
# Runs the real app under Xvfb (eframe's glow renderer on Mesa's software GL)
# with a seeded demo (three databases written to and replicated between the
# two local regions of the embedded default) and writes a PNG of each tab.
#
#   scripts/screenshot.sh [OUT_DIR]        (default: docs/screenshots)
#
# Environment: LIFEBOAT_BIN (default: builds target/debug/lifeboat),
# DEMO_SECONDS (how long the demo runs before the first picture, default 30).
# Installs what it needs with apt-get on a fresh Debian/Ubuntu machine.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/screenshots}
demo_seconds=${DEMO_SECONDS:-30}

need=()
command -v Xvfb >/dev/null || need+=(xvfb)
command -v xwd >/dev/null || need+=(x11-apps)
command -v convert >/dev/null || need+=(imagemagick)
command -v xdotool >/dev/null || need+=(xdotool)
# Mesa's software GL and the libraries winit and glow load at run time
# (grep without -q: under pipefail an early exit would fail the pipe).
for lib in libGL.so.1 libEGL.so.1 libxkbcommon-x11.so.0 libXcursor.so.1 libXi.so.6 libXrandr.so.2; do
    ldconfig -p | grep "$lib" >/dev/null || need+=(libgl1 libegl1 libgl1-mesa-dri libxkbcommon-x11-0 libxcursor1 libxi6 libxrandr2)
done
compgen -G '/usr/lib/*/dri/swrast_dri.so' >/dev/null || need+=(libgl1-mesa-dri)
if ((${#need[@]})); then
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    echo "installing: ${need[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

bin=${LIFEBOAT_BIN:-}
if [[ -z $bin ]]; then
    cargo build --locked --quiet
    bin=target/debug/lifeboat
fi

work=$(mktemp -d)
app_pid=""
xvfb_pid=""
cleanup() {
    [[ -n $app_pid ]] && kill "$app_pid" 2>/dev/null || true
    [[ -n $xvfb_pid ]] && kill "$xvfb_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Xvfb picks a free display and writes its number to fd 3 once it accepts
# connections (a socket file alone can appear before that; on a loaded
# machine the first start, which compiles the keymap, takes seconds).
Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3>"$work/display" >"$work/xvfb.log" 2>&1 &
xvfb_pid=$!
display=""
for _ in $(seq 600); do
    display=$(tr -d '[:space:]' <"$work/display")
    [[ -n $display ]] && break
    if ! kill -0 "$xvfb_pid" 2>/dev/null; then
        echo "error: Xvfb exited before it took connections; its log:" >&2
        cat "$work/xvfb.log" >&2
        exit 1
    fi
    sleep 0.1
done
if [[ -z $display ]]; then
    echo "error: Xvfb took no connections within 60 s; its log:" >&2
    cat "$work/xvfb.log" >&2
    exit 1
fi
export DISPLAY=":$display" XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}

"$bin" --data-dir "$work/data" gui --demo --tab replication >"$work/app.log" 2>&1 &
app_pid=$!
window=""
for _ in $(seq 300); do
    window=$(xdotool search --name '^Lifeboat$' 2>/dev/null | head -1 || true)
    [[ -n $window ]] && break
    if ! kill -0 "$app_pid" 2>/dev/null; then
        echo "error: the app exited before its window opened; its log:" >&2
        cat "$work/app.log" >&2
        exit 1
    fi
    sleep 0.2
done
if [[ -z $window ]]; then
    echo "error: no Lifeboat window appeared within 60 s; the app's log:" >&2
    cat "$work/app.log" >&2
    exit 1
fi
# A workspace over two demo databases, with a user and a rule, for the
# Workspaces tab (the app reads the control log every few seconds).
for _ in $(seq 50); do
    "$bin" --data-dir "$work/data" db list --json 2>/dev/null | grep demo-carts >/dev/null && break
    sleep 0.2
done
"$bin" --data-dir "$work/data" workspace create shop --db demo-orders --db demo-carts --port 16390 >/dev/null
LIFEBOAT_DEMO_PASSWORD="demo-password" "$bin" --data-dir "$work/data" workspace user add shop app \
    --role readwrite --password-env LIFEBOAT_DEMO_PASSWORD >/dev/null
"$bin" --data-dir "$work/data" workspace firewall allow shop 127.0.0.1 >/dev/null
echo "the demo runs for ${demo_seconds}s before the pictures" >&2
half=$(( (demo_seconds + 1) / 2 ))
sleep "$half"
# A drill on the replicas, for the branch table and the Dashboard's RTO
# (the app reads the log every 5 s). A failed drill costs only its picture.
"$bin" --data-dir "$work/data" drill --from us-east-1 --to eu-west-1 --ttl 1h >"$work/drill.log" 2>&1 ||
    { echo "warning: the drill failed; its output:" >&2; cat "$work/drill.log" >&2; }
sleep "$(( demo_seconds - half > 6 ? demo_seconds - half : 6 ))"

mkdir -p "$out"
tabs=(replication databases workspaces dashboard activity settings)
for i in "${!tabs[@]}"; do
    xdotool windowfocus --sync "$window"
    xdotool key "ctrl+$((i + 1))"
    sleep 1.5
    xwd -id "$window" -silent | convert xwd:- "$out/${tabs[$i]}.png"
    echo "$out/${tabs[$i]}.png"
done
rss_kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$app_pid/status")
echo "{\"app_rss_mib\": $((rss_kib / 1024)), \"demo_seconds\": $demo_seconds}"
