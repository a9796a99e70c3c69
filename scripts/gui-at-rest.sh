#!/usr/bin/env bash
# What the desktop app costs when nobody touches it: the real app under
# Xvfb (eframe's glow renderer on Mesa's software GL, as scripts/screenshot.sh
# runs it), left alone on a tab, its CPU time read from /proc over a window
# after it settled. Prints one JSON object: per case, the share of one core
# (target: at most 2%, issue 21).
#
#   scripts/gui-at-rest.sh                 empty default and demo, Dashboard
#   SECONDS_MEASURED=20 TABS="dashboard replication" scripts/gui-at-rest.sh
#
# Cases: `empty` (the embedded default, nothing set up) and `demo` (three
# demo databases taking writes and replicating: the screen changes every
# second). Environment: LIFEBOAT_BIN (default: builds target/debug/lifeboat),
# SETTLE (seconds before measuring, default 15).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/xvfb.sh
source scripts/lib/xvfb.sh
measured=${SECONDS_MEASURED:-20}
settle=${SETTLE:-15}
tabs=(${TABS:-dashboard})

xvfb_install
app_session

# CPU ticks of the process, and of its drawing alone: the main thread (egui
# and the GL calls) and Mesa's rasterizer threads (llvmpipe-N). The rest is
# the embedded engine (replication, the demo's writers).
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
drawing_ticks() {
    local pid=$1 total=0 task comm
    for task in /proc/"$pid"/task/*; do
        comm=$(cat "$task/comm" 2>/dev/null || true)
        if [[ ${task##*/} == "$pid" || $comm == llvmpipe* ]]; then
            total=$((total + $(awk '{print $14 + $15}' "$task/stat" 2>/dev/null || echo 0)))
        fi
    done
    echo "$total"
}
hz=$(getconf CLK_TCK)
results=()
for case in empty demo; do
    for tab in "${tabs[@]}"; do
        data="$work/data-$case"
        args=(--tab "$tab")
        [[ $case == demo ]] && args+=(--demo)
        RUST_LOG=warn,lifeboat::gui::frames=trace "$bin" --data-dir "$data" gui "${args[@]}" >"$work/app.log" 2>&1 &
        app_pid=$!
        window_of "$app_pid" "$work/app.log" >/dev/null
        sleep "$settle"
        frames() { grep -c 'TRACE' "$work/app.log" || true; }
        before=$(ticks "$app_pid")
        drawing_before=$(drawing_ticks "$app_pid")
        frames_before=$(frames)
        sleep "$measured"
        after=$(ticks "$app_pid")
        drawing_after=$(drawing_ticks "$app_pid")
        frames_drawn=$(($(frames) - frames_before))
        percent() { awk -v t="$1" -v hz="$hz" -v s="$measured" 'BEGIN { printf "%.1f", 100 * t / hz / s }'; }
        pct=$(percent $((after - before)))
        drawing=$(percent $((drawing_after - drawing_before)))
        echo "$case on $tab: $pct% of a core, drawing $drawing%, $frames_drawn frames in ${measured}s" >&2
        results+=("{\"case\":\"$case\",\"tab\":\"$tab\",\"cpu_percent\":$pct,\"drawing_percent\":$drawing,\"frames\":$frames_drawn}")
        kill "$app_pid" 2>/dev/null || true
        wait "$app_pid" 2>/dev/null || true
        app_pid=""
    done
done
joined=$(IFS=,; echo "${results[*]}")
echo "{\"seconds_measured\":$measured,\"binary\":\"$bin\",\"target_percent\":2,\"cases\":[$joined]}"
