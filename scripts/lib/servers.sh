# Shared by scripts/s3-servers and scripts/emulators: the test servers each
# script starts leave their process ids in $RUN/*.pid.

# Stops the servers whose pid files are in $1, if their command line still
# matches $2 (after a reboot a number may be another process's).
stop_servers() {
  local run=$1 pattern=$2 pidfile pid
  for pidfile in "$run"/*.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if grep -qaE "$pattern" "/proc/$pid/cmdline" 2>/dev/null &&
      kill "$pid" 2>/dev/null; then
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
}
