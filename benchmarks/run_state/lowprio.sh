#!/usr/bin/env bash
# lowprio.sh END NICE PATTERN: until END (epoch seconds) keep every thread of the processes whose
# command line matches PATTERN (pgrep -f) at nice NICE, so that the short runs finish first
# without leaving a core idle. Linux nices per thread, hence every task. Used this way:
#   ./lowprio.sh END 19 "train_dir full(_dense)?/"   # slots A and B
#   ./lowprio.sh END 10 "train_dir s10_seed"          # slot N
until [ "$(date +%s)" -ge "$1" ]; do
  for p in $(pgrep -f "$3"); do
    for t in /proc/$p/task/*; do renice -n "$2" -p "${t##*/}" >/dev/null 2>&1; done
  done
  sleep 30
done
