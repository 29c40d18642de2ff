# Shell helpers shared by the benchmark scripts (sourced, not run).

# broker_address LOG: waits (10 s at most) for the broker writing its output
# to LOG to say where it listens, and prints that address; on a timeout
# prints the log to stderr and fails.
broker_address() {
  local log=$1 addr=""
  for _ in $(seq 1 100); do
    addr=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$log" | head -n1)
    if [ -n "$addr" ]; then
      echo "$addr"
      return 0
    fi
    sleep 0.1
  done
  echo "the broker did not start:" >&2
  cat "$log" >&2
  return 1
}
