#!/usr/bin/env bash
# Runs the real app under Xvfb (eframe's glow renderer on Mesa's software GL)
# on a fresh embedded default and writes a PNG of each tab and of each flow
# the user guide shows:
#   tour        the first-run guided tour, over a running demo
#   replication databases workspaces dashboard activity settings
#   wizard      Configure replication
#   drill       Test failover with the last drill's report
#   failover    the failover preview: what a failover now would lose
#   recovery    writes stranded in the old primary, recovered and compared
#   failback    the failback plan
#   report      the monthly DR report's HTML page (wkhtmltoimage)
#
#   scripts/screenshot.sh [OUT_DIR]        (default: docs/screenshots)
#
# Environment: LIFEBOAT_BIN (default: builds target/debug/lifeboat),
# DEMO_SECONDS (how long the demo runs before the first picture, default 30).
# Installs what it needs with apt-get on a fresh Debian/Ubuntu machine.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/xvfb.sh
source scripts/lib/xvfb.sh
out=${1:-docs/screenshots}
demo_seconds=${DEMO_SECONDS:-30}

xvfb_install wkhtmltoimage=wkhtmltopdf
app_session
mkdir -p "$out"

lifeboat() { "$bin" --data-dir "$work/data" "$@"; }
window=""
open_app() {
    "$bin" --data-dir "$work/data" gui "$@" >"$work/app.log" 2>&1 &
    app_pid=$!
    window=$(window_of "$app_pid" "$work/app.log")
}
close_app() {
    kill "$app_pid" 2>/dev/null || true
    wait "$app_pid" 2>/dev/null || true
    app_pid=""
}
shot() {
    xdotool windowfocus --sync "$window"
    sleep 0.5
    xwd -id "$window" -silent | convert xwd:- "$out/$1.png"
    echo "$out/$1.png"
}

open_app --demo --tab replication
# A workspace over two demo databases, with a user and a rule, for the
# Workspaces tab (the app reads the control log every few seconds).
for _ in $(seq 50); do
    lifeboat db list --json 2>/dev/null | grep demo-carts >/dev/null && break
    sleep 0.2
done
lifeboat workspace create shop --db demo-orders --db demo-carts --port 16390 >/dev/null
LIFEBOAT_DEMO_PASSWORD="demo-password" lifeboat workspace user add shop app \
    --role readwrite --password-env LIFEBOAT_DEMO_PASSWORD >/dev/null
lifeboat workspace firewall allow shop 127.0.0.1 >/dev/null
echo "the demo runs for ${demo_seconds}s before the pictures" >&2
half=$(((demo_seconds + 1) / 2))
sleep "$half"
shot tour
xdotool key F1
# A drill on the replicas, for the branch table, the Dashboard's RTO and the
# drill panel (the app reads the log every 5 s). A failed drill costs only
# its pictures.
lifeboat drill --from us-east-1 --to eu-west-1 --ttl 1h >"$work/drill.log" 2>&1 ||
    { echo "warning: the drill failed; its output:" >&2; cat "$work/drill.log" >&2; }
sleep "$((demo_seconds - half > 6 ? demo_seconds - half : 6))"
tabs=(replication databases workspaces dashboard activity settings)
for i in "${!tabs[@]}"; do
    xdotool windowfocus --sync "$window"
    xdotool key "ctrl+$((i + 1))"
    sleep 1.5
    shot "${tabs[$i]}"
done
rss_kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$app_pid/status")
close_app

# The flows, each in a window opened on its panel (`gui --open`).
for panel in wizard drill failover; do
    open_app --open "$panel"
    sleep 5
    shot "$panel"
    close_app
done
# Writes that reach the primary while nothing copies them (replication of
# demo-carts paused) are stranded by the failover that follows; they are
# recovered (the app asks for a typed confirmation first, so the command
# line does it here) and the app compares them.
lifeboat group pause demo-carts >"$work/pause.log" 2>&1 ||
    { echo "error: pausing demo-carts failed; its output:" >&2; cat "$work/pause.log" >&2; exit 1; }
lifeboat workload --db demo-carts --records 300 --rate 300 >/dev/null
lifeboat failover --yes --no-serve >"$work/failover.log" 2>&1 ||
    { echo "error: the failover failed; its output:" >&2; cat "$work/failover.log" >&2; exit 1; }
lifeboat group resume demo-carts >/dev/null
for db in demo-events demo-orders demo-carts; do
    lifeboat recover --db "$db" --yes >"$work/recover-$db.log" 2>&1 ||
        { echo "error: recovering $db failed; its output:" >&2; cat "$work/recover-$db.log" >&2; exit 1; }
done
open_app --open recover
sleep 10
shot recovery
close_app
# The failback plan, once the live branches have flowed back to the primary.
open_app --tab replication
sleep 10
close_app
open_app --open failback
sleep 6
shot failback
close_app
# The app beside the engine running as a service: it shows that engine's
# view (the status bar says where it runs) and closing it leaves the
# service replicating.
"$bin" --data-dir "$work/data" serve --report-every 60s >"$work/serve.log" 2>&1 &
serve_pid=$!
sleep 3
open_app --tab replication
sleep 8
shot service
close_app
kill -0 "$serve_pid" 2>/dev/null ||
    { echo "error: closing the app stopped the service's engine; its log:" >&2; cat "$work/serve.log" >&2; exit 1; }
kill "$serve_pid"
wait "$serve_pid" 2>/dev/null || true
# The month's DR report (the demo's samples, the drill, the failover and
# the recoveries), its HTML page rendered under the same Xvfb.
lifeboat report month --out "$work/report" >"$work/report.log" 2>&1 ||
    { echo "error: the monthly report failed; its output:" >&2; cat "$work/report.log" >&2; exit 1; }
wkhtmltoimage --width 1000 --quiet "$work"/report/lifeboat-dr-*.html "$out/report.png" 2>"$work/wkhtml.log" ||
    { echo "error: rendering the report failed:" >&2; cat "$work/wkhtml.log" >&2; exit 1; }
echo "$out/report.png"
echo "{\"app_rss_mib\": $((rss_kib / 1024)), \"demo_seconds\": $demo_seconds}"
