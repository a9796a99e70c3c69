# Shared by scripts/screenshot.sh and packaging/test: a private X server and
# a wait for the app's window. Source it; the caller sets `work` (a temp dir)
# and kills "$xvfb_pid" when done.
#
#   xvfb_install [CMD=PKG...]  installs Xvfb, xdotool, the run-time libraries
#                         and each CMD missing (from PKG)
#   xvfb_start            starts Xvfb on a free display and exports DISPLAY
#   window_of PID LOG     prints the id of PID's window named Lifeboat, or
#                         fails with LOG (the app's output) after 60 s
#   app_session           for a script that runs the app: sets `bin`
#                         (LIFEBOAT_BIN, or a debug build), a fresh `work`
#                         removed on exit with the app and Xvfb, a fresh
#                         XDG_DATA_HOME (a first run), and starts Xvfb

xvfb_install() {
    local need=() lib
    command -v Xvfb >/dev/null || need+=(xvfb)
    command -v xwd >/dev/null || need+=(x11-apps)
    # ImageMagick itself: some machines put a stand-in named convert on the
    # PATH that reads only PNG, and xwd's pictures are not PNG.
    convert -version 2>/dev/null | grep ImageMagick >/dev/null || need+=(imagemagick)
    command -v xdotool >/dev/null || need+=(xdotool)
    # What else the caller needs (screenshot.sh: wkhtmltoimage for the
    # monthly report's page), as COMMAND=PACKAGE words.
    local extra
    for extra in "$@"; do
        command -v "${extra%%=*}" >/dev/null || need+=("${extra#*=}")
    done
    # Mesa's software GL and the libraries winit and glow load at run time
    # (grep without -q: under pipefail an early exit would fail the pipe).
    for lib in libGL.so.1 libEGL.so.1 libxkbcommon-x11.so.0 libXcursor.so.1 libXi.so.6 libXrandr.so.2; do
        ldconfig -p | grep "$lib" >/dev/null || need+=(libgl1 libegl1 libgl1-mesa-dri libxkbcommon-x11-0 libxcursor1 libxi6 libxrandr2)
    done
    compgen -G '/usr/lib/*/dri/swrast_dri.so' >/dev/null || need+=(libgl1-mesa-dri)
    if ((${#need[@]})); then
        local sudo=""
        [[ $(id -u) -eq 0 ]] || sudo="sudo"
        echo "installing: ${need[*]}" >&2
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
    fi
}

xvfb_start() {
    # Xvfb picks a free display and writes its number to fd 3 once it
    # accepts connections (a socket file alone can appear before that; on a
    # loaded machine the first start, which compiles the keymap, takes
    # seconds). -noreset: the app is often its only client, and a server
    # resetting as it leaves refuses the next one for a moment.
    Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp -noreset 3>"$work/display" >"$work/xvfb.log" 2>&1 &
    xvfb_pid=$!
    local display="" _
    for _ in $(seq 600); do
        display=$(tr -d '[:space:]' <"$work/display")
        [[ -n $display ]] && break
        if ! kill -0 "$xvfb_pid" 2>/dev/null; then
            echo "error: Xvfb exited before it took connections; its log:" >&2
            cat "$work/xvfb.log" >&2
            return 1
        fi
        sleep 0.1
    done
    if [[ -z $display ]]; then
        echo "error: Xvfb took no connections within 60 s; its log:" >&2
        cat "$work/xvfb.log" >&2
        return 1
    fi
    export DISPLAY=":$display" XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
}

window_of() {
    local pid=$1 log=$2 window="" _
    for _ in $(seq 300); do
        window=$(xdotool search --name '^Lifeboat$' 2>/dev/null | head -1 || true)
        if [[ -n $window ]]; then
            echo "$window"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "error: the app exited before its window opened; its log:" >&2
            cat "$log" >&2
            return 1
        fi
        sleep 0.2
    done
    echo "error: no Lifeboat window appeared within 60 s; the app's log:" >&2
    cat "$log" >&2
    return 1
}

app_session() {
    bin=${LIFEBOAT_BIN:-}
    if [[ -z $bin ]]; then
        cargo build --locked --quiet
        bin=target/debug/lifeboat
    fi
    work=$(mktemp -d)
    app_pid=""
    xvfb_pid=""
    trap app_session_end EXIT
    # eframe keeps the window's state and the app's prefs under
    # XDG_DATA_HOME: a fresh one makes this a first run (the tour opens),
    # whatever ran before.
    export XDG_DATA_HOME="$work/xdg"
    xvfb_start
}

app_session_end() {
    # Every job the script started (the app, Xvfb, a `serve`), so that the
    # wait below cannot hang on one left running by a failed step.
    local jobs
    jobs=$(jobs -p)
    [[ -n $jobs ]] && kill $jobs 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
