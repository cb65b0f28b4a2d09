# The harness's one way to run a daemon (sourced by engine.sh, cluster.sh, cluster/node.sh):
# started in a session of its own, its pid and start time in $RUN/NAME.pid (so a recycled pid
# is never taken for it), its output in $LOGS/NAME.log (the previous run's kept as NAME.log.1).
# The sourcing script sets RUN and LOGS.
# shellcheck shell=bash

# `starttime PID`: the process's start time in clock ticks since boot (/proc/PID/stat field 22).
starttime() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20; }

# `pid_of NAME`: the pid of NAME if it runs (the pidfile's pid, started when the file says).
pid_of() {
  local pid since
  read -r pid since 2>/dev/null <"$RUN/$1.pid" || return 1
  [ -n "$pid" ] && [ "$(starttime "$pid")" = "$since" ] && echo "$pid"
}

alive() { pid_of "$1" >/dev/null; }

# `start NAME CMD…`: runs CMD (which may exec into the daemon: its pid stays) unless NAME runs.
start() {
  local name=$1; shift
  alive "$name" && return 0
  mkdir -p "$LOGS"
  [ -f "$LOGS/$name.log" ] && mv "$LOGS/$name.log" "$LOGS/$name.log.1"
  # not a process group leader, so setsid execs in place: $! is the program's own pid. The
  # daemon gets no descriptor of its starter's beyond the three (a lock a caller holds, e.g.
  # `flock LOCK scripts/cluster up`, would otherwise stay held for as long as it runs)
  (
    for fd in "/proc/$BASHPID/fd"/*; do
      fd=${fd##*/}
      [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-" 2>/dev/null
    done
    exec setsid "$@" </dev/null >"$LOGS/$name.log" 2>&1
  ) &
  echo "$! $(starttime $!)" >"$RUN/$name.pid"
}

# `await WHAT SECONDS NAME CMD…`: polls CMD until it succeeds; dies with NAME's log if NAME
# exits or SECONDS pass.
await() {
  local what=$1 seconds=$2 name=$3 _; shift 3
  for _ in $(seq 1 $((seconds * 2))); do
    "$@" >/dev/null 2>&1 && return 0
    alive "$name" || { tail -20 "$LOGS/$name.log" >&2; die "$name exited (log: $LOGS/$name.log)"; }
    sleep 0.5
  done
  tail -20 "$LOGS/$name.log" >&2
  die "$what: not within $seconds s (log: $LOGS/$name.log)"
}

# `stop NAME [SECONDS]`: SIGTERM to NAME, SIGKILL after SECONDS (20); its pidfile removed.
stop() {
  local pid _
  if pid=$(pid_of "$1"); then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 $((${2:-20} * 2))); do alive "$1" || break; sleep 0.5; done
    if alive "$1"; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.5; fi
    alive "$1" && die "$1 ($pid) did not stop"
  fi
  rm -f "$RUN/$1.pid"
}
