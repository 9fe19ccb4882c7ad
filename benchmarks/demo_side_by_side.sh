#!/usr/bin/env bash
# The demo (fresh events, then the night of five segments) with an older commit's code, then with the
# working tree's, one after the other, each in its own fresh workspace; prints each run's wall seconds.
#   bash benchmarks/demo_side_by_side.sh 8af14eb        # logs in ${OUT:-/tmp/demo_side_by_side}/{old,new}.log
# The old code runs from a git worktree, imported ahead of the editable install through PYTHONPATH.
set -euo pipefail
old_commit=${1:?usage: demo_side_by_side.sh OLD_COMMIT}
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/demo_side_by_side}
rm -rf "$out" && mkdir -p "$out"
git -C "$root" worktree add -q --detach "$out/old_tree" "$old_commit"
trap 'git -C "$root" worktree remove --force "$out/old_tree"' EXIT
run() {
  local name=$1 tree=$2 start
  start=$(date +%s)
  (cd "$tree" && SEGMENTS_WORKSPACE="$out/ws_$name" PYTHONPATH="$tree" "$root/.venv/bin/python" -m jobs.demo \
    > "$out/$name.log" 2>&1)
  echo "$name ($tree): $(( $(date +%s) - start )) s; $(grep -o 'done in [0-9.]*s: [0-9]* segment-nights' "$out/$name.log" | tail -1)"
}
run old "$out/old_tree"
run new "$root"
